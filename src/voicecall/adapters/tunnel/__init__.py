"""Tunnels that expose the webhook listener to the carrier."""
