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
