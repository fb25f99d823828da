"""Calls to and from plain JSON-able dicts, for the stores."""

from __future__ import annotations

from typing import Any

import cattrs

from voicecall.domain.call import Call

__all__ = ["call_from_dict", "call_to_record"]

_converter = cattrs.Converter(forbid_extra_keys=False)


def call_to_record(call: Call) -> dict[str, Any]:
    record: dict[str, Any] = _converter.unstructure(call)
    return record


def call_from_dict(data: dict[str, Any]) -> Call:
    return _converter.structure(data, Call)
