"""``python -m voicecall`` runs the CLI."""

from __future__ import annotations

from voicecall.entrypoints.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
