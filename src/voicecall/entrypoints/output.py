"""How the CLI shows what the gateway answered: text for people, JSON for scripts.

Like ``gh``, the CLI writes human-readable text when stdout is a terminal and JSON when it is
piped or ``--json`` is given. The JSON is exactly the RPC payload (the documented fields), one
document per command, and one compact object per line for ``tail``; the text is a table for
``list``, one line per event for ``tail`` and a short summary for ``status``.

Only the standard library is imported: this runs in every CLI command's start-up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

__all__ = [
    "COMPLETED_REASONS",
    "dump_json",
    "format_call",
    "format_call_table",
    "format_event",
    "format_pairing",
    "format_payload",
    "wants_json",
]

# Ends that count as a call that went through (``call --follow`` exits 0 for these).
COMPLETED_REASONS = frozenset({"completed", "hangup-bot", "hangup-user"})


def wants_json(flag: bool, stream: TextIO) -> bool:
    """JSON when asked for, or when ``stream`` is not a terminal (piped, redirected)."""
    if flag:
        return True
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def _clock(at: Any) -> str:
    if not isinstance(at, (int, float)):
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(at))


def _when(at: Any) -> str:
    if not isinstance(at, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _duration(call: Mapping[str, Any]) -> str:
    start = call.get("answeredAt")
    end = call.get("endedAt")
    if not isinstance(start, (int, float)):
        return "-"
    if not isinstance(end, (int, float)):
        return "live"
    return f"{max(0.0, end - start):.0f}s"


def _state(call: Mapping[str, Any]) -> str:
    state = str(call.get("state", "?"))
    reason = call.get("endReason")
    if reason and reason != state:
        return f"{state} ({reason})"
    return state


def format_call_table(calls: Sequence[Mapping[str, Any]]) -> str:
    """``list`` as a table, newest first as the gateway sent them."""
    if not calls:
        return "no calls\n"
    header = ("CALL ID", "DIR", "STATE", "FROM", "TO", "STARTED", "TALKED")
    rows = [header] + [
        (
            str(call.get("callId", "")),
            "out" if call.get("direction") == "outbound" else "in",
            _state(call),
            str(call.get("from") or "-"),
            str(call.get("to") or "-"),
            _when(call.get("startedAt")),
            _duration(call),
        )
        for call in calls
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def format_call(call: Mapping[str, Any]) -> str:
    """One call as ``status`` shows it: who, what state, and the transcript."""
    direction = "outbound" if call.get("direction") == "outbound" else "inbound"
    lines = [
        f"call {call.get('callId')}  {direction}  {call.get('from') or '-'} -> "
        f"{call.get('to') or '-'}",
        f"  state     {_state(call)}",
        f"  carrier   {call.get('provider')} {call.get('providerCallId') or ''}".rstrip(),
        f"  mode      {call.get('mode')}",
        f"  started   {_when(call.get('startedAt'))}",
    ]
    if call.get("answeredAt") is not None:
        lines.append(f"  answered  {_when(call.get('answeredAt'))}")
    if call.get("endedAt") is not None:
        lines.append(f"  ended     {_when(call.get('endedAt'))}  after {_duration(call)}")
    if call.get("endDetail"):
        lines.append(f"  detail    {call.get('endDetail')}")
    transcript = call.get("transcript") or []
    if transcript:
        lines.append("  transcript")
        for entry in transcript:
            cut = " [cut]" if entry.get("cut") else ""
            lines.append(
                f"    {_clock(entry.get('at'))}  {entry.get('speaker', '?'):>4}: "
                f"{entry.get('text', '')}{cut}"
            )
    return "\n".join(lines) + "\n"


def _event_detail(kind: str, data: Mapping[str, Any]) -> str:
    if kind == "call.state":
        detail = str(data.get("state", ""))
        if data.get("endReason"):
            detail += f" ({data['endReason']})"
        if data.get("endDetail"):
            detail += f": {data['endDetail']}"
        return detail
    if kind == "call.transcript":
        cut = " [cut]" if data.get("cut") else ""
        return f"{data.get('speaker', '?')}: {data.get('text', '')}{cut}"
    if kind == "call.created":
        call = data.get("call")
        if isinstance(call, Mapping):
            return f"{call.get('direction')} {call.get('from') or '-'} -> {call.get('to') or '-'}"
    if kind == "call.speech":
        return f"(hearing) {data.get('transcript', '')}"
    if kind.startswith("speech."):
        return str(data.get("text", ""))
    if kind == "call.error":
        return str(data.get("error", ""))
    if kind == "call.dtmf":
        return str(data.get("digits", ""))
    return " ".join(f"{key}={value}" for key, value in data.items() if not isinstance(value, dict))


def format_event(event: Mapping[str, Any]) -> str:
    """One event of ``tail`` as one line: time, sequence, call, type, what happened."""
    data = event.get("data")
    detail = _event_detail(str(event.get("type", "")), data if isinstance(data, Mapping) else {})
    line = (
        f"{_clock(event.get('at'))}  #{event.get('seq', '?')}  {event.get('callId', '?')}  "
        f"{event.get('type', '?')}"
    )
    return f"{line}  {detail}".rstrip() + "\n"


def _generic(payload: Mapping[str, Any]) -> str:
    lines = []
    for key, value in payload.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def format_pairing(payload: Mapping[str, Any]) -> str:
    """``pairing list``: the codes waiting for the operator, then the approved numbers."""
    pending = payload.get("pending") or []
    approved = payload.get("approved") or []
    lines = []
    if payload.get("inboundPolicy") not in (None, "pairing"):
        policy = payload["inboundPolicy"]
        lines.append(f"(inboundPolicy is {policy}: callers are not offered codes)")
    if pending:
        lines.append("pending")
        for request in pending:
            lines.append(
                f"  {request.get('code')}  {request.get('from')}  asked "
                f"{_when(request.get('issuedAt'))}  expires {_clock(request.get('expiresAt'))}"
            )
    else:
        lines.append("no pending pairing requests")
    if approved:
        lines.append("approved")
        for number in approved:
            lines.append(f"  {number.get('number')}  since {_when(number.get('approvedAt'))}")
    return "\n".join(lines) + "\n"


def format_payload(command: str, payload: Mapping[str, Any]) -> str:
    """The text a person sees for one command's answer."""
    if command == "pairing":
        request = payload.get("request")
        if "pending" in payload:
            return format_pairing(payload)
        if isinstance(request, Mapping) and payload.get("approved"):
            return f"approved {request.get('from')} (code {request.get('code')})\n"
        if isinstance(request, Mapping) and payload.get("denied"):
            return f"denied {request.get('from')} (code {request.get('code')})\n"
        if payload.get("revoked"):
            return f"revoked {payload.get('number')}\n"
    if command == "list":
        return format_call_table(payload.get("calls") or [])
    if command == "status":
        call = payload.get("call")
        if not payload.get("found") or not isinstance(call, Mapping):
            return "no such call\n"
        return format_call(call)
    if command == "call" and "callId" in payload:
        return f"call {payload['callId']} placed\n"
    if command == "continue" and "transcript" in payload:
        return f"{payload.get('transcript')}\n"
    if command in ("speak", "end") and "success" in payload:
        return "done\n" if payload["success"] else "not done\n"
    return _generic(payload)


def dump_json(payload: Any, *, compact: bool = False) -> str:
    """JSON as the CLI has always printed it: indented documents, compact event lines."""
    if compact:
        return json.dumps(payload) + "\n"
    return json.dumps(payload, indent=2) + "\n"
