from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from voicecall.domain.spoken_text import EmptySpeech, normalise_speech, split_speech


def test_everything_xml_cannot_carry_is_removed() -> None:
    text = "".join(chr(c) for c in range(0x20)) + "ok\x7f\x85\ud800\ufffe\uffff"
    clean = normalise_speech(text)
    assert clean == "ok"
    # The result parses inside an XML document.
    assert ET.fromstring(f"<Say>{clean}</Say>").text == "ok"


def test_whitespace_is_collapsed_and_unicode_kept() -> None:
    assert normalise_speech("  Grüße\t\n aus   Köln 🙂 ") == "Grüße aus Köln 🙂"


def test_empty_after_normalising_is_refused_as_invalid_request() -> None:
    with pytest.raises(EmptySpeech) as refused:
        split_speech("\x00 \x1b\x0b")
    assert refused.value.code == "invalid_request"


def test_split_prefers_sentence_ends_then_spaces() -> None:
    text = "First sentence here. Second one is longer than the rest of it."
    assert split_speech(text, limit=30) == [
        "First sentence here.",
        "Second one is longer than the",
        "rest of it.",
    ]


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_speech("x" * 25, limit=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_short_text_is_one_utterance() -> None:
    assert split_speech("Hello.") == ["Hello."]
