"""The gateway's bearer token: configured, from the environment, or made once and saved."""

from __future__ import annotations

import secrets
from pathlib import Path

from voicecall.adapters.store.files import write_private
from voicecall.config import AppConfig

__all__ = ["ensure_gateway_token", "read_gateway_token", "token_path"]

_FILE_NAME = "gateway-token"


def token_path(config: AppConfig) -> Path:
    return config.voice.store_path / _FILE_NAME


def read_gateway_token(config: AppConfig) -> str | None:
    """The token a client should send: the configured one, else the one the gateway saved."""
    if config.gateway.auth.token:
        return config.gateway.auth.token
    try:
        return token_path(config).read_text().strip() or None
    except OSError:
        return None


def ensure_gateway_token(config: AppConfig) -> str:
    """The configured token, else the saved one, else a new one saved with mode 0600."""
    existing = read_gateway_token(config)
    if existing:
        return existing
    path = token_path(config)
    token = secrets.token_urlsafe(32)
    # Created 0600 from the first byte (in a 0700 directory), never readable by others.
    write_private(path, (token + "\n").encode())
    return token
