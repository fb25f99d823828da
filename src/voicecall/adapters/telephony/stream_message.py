"""What every carrier's media-stream message is at the top: a JSON object with an ``event``.

The four dialects (``mock_stream``, ``twilio/stream``, ``telnyx/stream``, ``plivo/stream``)
share this first step and differ only in the fields under it. orjson parses (50 messages a
second each way per call) and refuses absurd nesting itself, so a hostile frame is a
``ValueError``, never a ``RecursionError``.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "read_event"]


def read_event(message: str) -> tuple[str, dict[str, Any]]:
    """The message's event name and its object; ``ValueError`` when it is not one."""
    try:
        data = orjson.loads(message)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    event = data.get("event")
    if not isinstance(event, str):
        raise ValueError("a message without an event")
    return event, data


def dumps(message: dict[str, Any]) -> str:
    """A message to the carrier, as compact JSON text."""
    return orjson.dumps(message).decode()
