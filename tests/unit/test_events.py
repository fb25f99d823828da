"""Normalised events and their dedupe keys."""

from __future__ import annotations

import pytest

from voicecall.domain.call import CallState
from voicecall.domain.events import CallAnswered, CallEnded, CallSpeech


def test_carrier_key_wins() -> None:
    assert CallAnswered(provider_call_id="p", dedupe_key="evt-1").key() == "evt-1"


def test_derived_key_is_stable_and_content_sensitive() -> None:
    a = CallSpeech(provider_call_id="p", transcript="hello")
    assert a.key() == CallSpeech(provider_call_id="p", transcript="hello").key()
    assert a.key() != CallSpeech(provider_call_id="p", transcript="hello!").key()
    assert a.key() != CallSpeech(provider_call_id="q", transcript="hello").key()
    assert CallAnswered(provider_call_id="p").key() != CallSpeech(provider_call_id="p").key()


def test_ended_needs_a_terminal_reason() -> None:
    with pytest.raises(ValueError, match="terminal"):
        CallEnded(provider_call_id="p", reason=CallState.LISTENING)
    assert CallEnded(provider_call_id="p", reason=CallState.BUSY).reason is CallState.BUSY


def test_derived_key_spells_every_field_by_name_in_a_fixed_form() -> None:
    # The key is written to the store (seen_events) and read back after a restart, so the same
    # event must give the same text from one release to the next.
    speech = CallSpeech(call_id="c1", provider_call_id="p", transcript="two, at seven")
    assert speech.key() == (
        "call.speech|call_id='c1',confidence=None,heard_after=None,is_final=True,"
        "provider_call_id='p',started_at=None,transcript='two, at seven'"
    )
    ended = CallEnded(provider_call_id="p", reason=CallState.BUSY)
    assert ended.key() == (
        "call.ended|call_id=None,detail=None,provider_call_id='p',reason=<CallState.BUSY: 'busy'>"
    )
