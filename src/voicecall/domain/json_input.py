"""JSON from outside, parsed with limits: a bad document is the sender's error, never a crash.

``json.loads`` recurses once per nesting level: a body of 100,000 ``[`` raises
``RecursionError``, which no ``except ValueError`` catches, and a handler turns it into a 500.
Every JSON the gateway takes from a client or a carrier goes through :func:`parse_json`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from voicecall.domain.errors import CallerError

__all__ = ["MAX_JSON_DEPTH", "InvalidJson", "parse_json"]

MAX_JSON_DEPTH: Final = 64


class InvalidJson(CallerError):
    """Not JSON, or nested deeper than the limit (``invalid_request``)."""


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``data`` parsed, or ``InvalidJson`` saying why not."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidJson(f"the body is not JSON: {err}") from None
    if _depth_exceeds(value, max_depth):
        raise InvalidJson(f"JSON nested deeper than {max_depth} levels")
    return value


def _depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative: the check itself must not recurse.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
