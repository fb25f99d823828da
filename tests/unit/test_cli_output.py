"""Snapshots of what the CLI shows: text on a terminal, the JSON payload when piped (issue 12)."""

from __future__ import annotations

import io
import json
import time

import pytest

from voicecall.entrypoints.output import (
    dump_json,
    format_call_table,
    format_event,
    format_payload,
    wants_json,
)

AT = 1_700_000_000.0


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def day(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


CALL = {
    "callId": "c-1",
    "provider": "mock",
    "providerCallId": "mock-1",
    "direction": "outbound",
    "state": "completed",
    "from": "+15550100000",
    "to": "+15557654321",
    "mode": "notify",
    "startedAt": AT,
    "answeredAt": AT + 1,
    "endedAt": AT + 13,
    "endReason": "completed",
    "endDetail": None,
    "transcript": [
        {"speaker": "bot", "text": "Your order shipped.", "at": AT + 2},
        {"speaker": "user", "text": "Thanks!", "at": AT + 5, "cut": True},
    ],
}


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_when_piped_or_asked_text_on_a_terminal() -> None:
    assert wants_json(False, io.StringIO()) is True
    assert wants_json(False, Tty()) is False
    assert wants_json(True, Tty()) is True


def test_list_is_a_table() -> None:
    live = CALL | {
        "callId": "c-2",
        "direction": "inbound",
        "state": "listening",
        "endReason": None,
        "endedAt": None,
    }
    assert format_call_table([live, CALL]) == (
        f"CALL ID  DIR  STATE      FROM          TO            STARTED              TALKED\n"
        f"c-2      in   listening  +15550100000  +15557654321  {day(AT)}  live\n"
        f"c-1      out  completed  +15550100000  +15557654321  {day(AT)}  12s\n"
    )
    assert format_call_table([]) == "no calls\n"


def test_status_is_a_summary_with_the_transcript() -> None:
    assert format_payload("status", {"found": True, "call": CALL}) == (
        "call c-1  outbound  +15550100000 -> +15557654321\n"
        "  state     completed\n"
        "  carrier   mock mock-1\n"
        "  mode      notify\n"
        f"  started   {day(AT)}\n"
        f"  answered  {day(AT + 1)}\n"
        f"  ended     {day(AT + 13)}  after 12s\n"
        "  transcript\n"
        f"    {clock(AT + 2)}   bot: Your order shipped.\n"
        f"    {clock(AT + 5)}  user: Thanks! [cut]\n"
    )
    assert format_payload("status", {"found": False, "call": None}) == "no such call\n"


@pytest.mark.parametrize(
    ("event_type", "data", "detail"),
    [
        ("call.state", {"state": "completed", "endReason": "completed"}, "completed (completed)"),
        ("call.transcript", {"speaker": "bot", "text": "Hi"}, "bot: Hi"),
        ("call.dtmf", {"digits": "12#"}, "12#"),
        ("call.error", {"error": "boom", "retryable": False}, "boom"),
        ("call.dialled", {"providerCallId": "CA1"}, "providerCallId=CA1"),
    ],
)
def test_tail_is_one_line_per_event(event_type: str, data: dict[str, object], detail: str) -> None:
    event = {"seq": 7, "callId": "c-1", "type": event_type, "at": AT, "data": data}
    assert format_event(event) == f"{clock(AT)}  #7  c-1  {event_type}  {detail}\n"


def test_json_keeps_the_documented_payload() -> None:
    payload = {"found": True, "call": CALL}
    assert json.loads(dump_json(payload)) == payload
    event = {"seq": 1, "callId": "c-1", "type": "call.state", "at": AT, "data": {}}
    line = dump_json(event, compact=True)
    assert line.count("\n") == 1 and json.loads(line) == event
