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


def test_what_is_not_text_normalises_to_nothing_and_is_refused() -> None:
    assert normalise_speech(None) == ""
    assert normalise_speech(42) == ""
    with pytest.raises(EmptySpeech) as refused:
        split_speech(None)
    assert str(refused.value) == (
        "the message has nothing to speak once control characters are removed"
    )


@pytest.mark.parametrize(
    ("text", "limit", "parts"),
    [
        # Exactly the limit is one utterance.
        ("abcd efghi", 10, ["abcd efghi"]),
        # A sentence end exactly at the limit is used, not an earlier one.
        ("abcdefgh. jk. more words", 13, ["abcdefgh. jk.", "more words"]),
        # A sentence end at two thirds of the limit (6 of 10) is used...
        ("abcde. fg hijk", 10, ["abcde.", "fg hijk"]),
        # ...one before it is not: the last space is.
        ("abcd. efg hij", 10, ["abcd. efg", "hij"]),
        ("ab. cdefg hij", 10, ["ab. cdefg", "hij"]),
        # A space just past the limit is out of reach: the cut is at an earlier one.
        ("aaaaa bbbbb ccc", 10, ["aaaaa", "bbbbb ccc"]),
        # A one-letter word before the only space is cut there, not hard.
        ("a bbbbbbbbbbbbb", 10, ["a", "bbbbbbbbbb", "bbb"]),
    ],
)
def test_split_points(text: str, limit: int, parts: list[str]) -> None:
    assert split_speech(text, limit) == parts
    assert all(len(part) <= limit for part in parts)
