"""Test doubles shipped with the package, so users can rehearse offline too."""
