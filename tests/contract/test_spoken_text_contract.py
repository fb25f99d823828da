"""Text a carrier cannot carry: control characters and over-long lines, on every carrier.

A ``\\x00``, ``\\x07``, ``\\x1b`` or ``\\x0b`` inside TwiML or Plivo XML makes the document
unparseable (the call goes silent, or building it fails); on Telnyx it reaches ``speak``.
The service normalises at the domain boundary, so every carrier speaks the clean words.
"""

from __future__ import annotations

import pytest

from voicecall.domain.call import CallState
from voicecall.domain.errors import CallerError
from voicecall.domain.spoken_text import MAX_UTTERANCE_CHARS

from .conftest import CALLEE, Line

DIRTY = "The\x00 build\x07 is\x1b green\x0b.\x7f"


async def test_control_characters_are_stripped_before_the_carrier(line: Line) -> None:
    call = await line.service.initiate(CALLEE, DIRTY, "notify")
    final = await line.wait_state(call.call_id, CallState.COMPLETED)
    assert line.harness.heard(final) == ["The build is green."]
    assert [t.text for t in final.transcript] == ["The build is green."]


async def test_speak_with_control_characters_is_heard_clean(line: Line) -> None:
    call = await line.service.initiate(CALLEE, "Hello.", "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING)
    await line.service.speak(call.call_id, "One\x00 more\x1b[31m thing.")
    await line.wait_for(lambda: len(line.harness.heard(call)) >= 2)
    assert line.harness.heard(call)[1] == "One more[31m thing."
    await line.service.end(call.call_id)


async def test_only_control_characters_is_an_invalid_request(line: Line) -> None:
    with pytest.raises(CallerError) as refused:
        await line.service.initiate(CALLEE, "\x00\x07\x1b", "notify")
    assert refused.value.code == "invalid_request"
    assert await line.service.list_calls() == []


async def test_text_over_the_carrier_limit_is_split_into_utterances(line: Line) -> None:
    sentence = "This sentence is part of a very long announcement. "
    text = (sentence * (MAX_UTTERANCE_CHARS // len(sentence) + 5)).strip()
    call = await line.service.initiate(CALLEE, "Hello.", "conversation")
    await line.wait_state(call.call_id, CallState.LISTENING)
    await line.service.speak(call.call_id, text)
    live = await line.service.get(call.call_id)
    assert live is not None
    queued = [u.text for u in live.speech][1:]
    assert len(queued) == 2
    assert all(len(part) <= MAX_UTTERANCE_CHARS for part in queued)
    assert " ".join(queued) == text
    await line.service.end(call.call_id)
