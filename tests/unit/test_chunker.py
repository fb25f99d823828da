"""The speech chunker, property-based (issue 10)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicecall.domain.chunker import SpeechChunker, chunk_text

WORDS = st.sampled_from(
    ["hello", "the", "table", "is", "booked", "Mr.", "Dr.", "e.g.", "etc.", "3.5", "1,000",
     "$12.99", "7", "p.m.", "https://example.com/a.b?c=1", "555", "0100", "Nguyen", "U.S.",
     "J.", "No.", "it's", "(really)", "\u201cyes\u201d"]
)  # fmt: skip
ENDINGS = st.sampled_from([".", "!", "?", ",", ";", ":", ""])
TOKEN = st.tuples(WORDS, ENDINGS).map("".join)
TEXT = st.lists(TOKEN, min_size=1, max_size=80).map(" ".join)
PIECES = st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=200)


def feed_in_pieces(text: str, sizes: list[int], max_chars: int = 60) -> list[str]:
    chunker = SpeechChunker(max_chars)
    chunks: list[str] = []
    at = 0
    index = 0
    while at < len(text):
        size = sizes[index % len(sizes)]
        chunks += chunker.feed(text[at : at + size])
        at += size
        index += 1
    return chunks + chunker.flush()


def cut_points(chunks: list[str]) -> list[int]:
    points, at = [], 0
    for chunk in chunks[:-1]:
        at += len(chunk)
        points.append(at)
    return points


@settings(max_examples=300, deadline=None)
@given(TEXT, PIECES)
def test_chunks_concatenate_to_the_input(text: str, sizes: list[int]) -> None:
    assert "".join(feed_in_pieces(text, sizes)) == text
    assert "".join(chunk_text(text)) == text


@settings(max_examples=300, deadline=None)
@given(TEXT, PIECES)
def test_no_chunk_ends_inside_a_token(text: str, sizes: list[int]) -> None:
    """Cuts fall only after whitespace, so never inside a number, decimal, URL or
    abbreviation, and never between the digit groups of a number read out ("555 0100")."""
    chunks = feed_in_pieces(text, sizes)
    for point in cut_points(chunks):
        assert text[point - 1].isspace()
        before = text[: point - 1]
        assert not (before and before[-1].isdigit() and text[point : point + 1].isdigit())
        last = before.split(" ")[-1] if before else ""
        assert last.lower() not in {"mr.", "dr.", "e.g.", "p.m.", "u.s.", "j.", "no."}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["Hello there", "It is 3.5 degrees", "Call Dr. Nguyen now",
                                 "See https://example.com/a.b for more"]), min_size=2, max_size=6),
       PIECES)  # fmt: skip
def test_the_first_chunk_comes_within_one_sentence(sentences: list[str], sizes: list[int]) -> None:
    text = ". ".join(sentences) + "."
    first_end = len(sentences[0]) + 2  # the sentence, its full stop and the space
    chunker = SpeechChunker(60)
    fed = 0
    emitted: list[str] = []
    index = 0
    while not emitted and fed < len(text):
        size = sizes[index % len(sizes)]
        emitted = chunker.feed(text[fed : fed + size])
        fed += size
        index += 1
    assert emitted, "no chunk before the end of the text"
    assert len(emitted[0]) <= first_end
    # It is out as soon as the character after the first sentence's space has arrived.
    assert fed <= first_end + max(sizes)


def test_examples() -> None:
    assert chunk_text("Hi Mr. Smith. Your table for 2 is at 7.30 p.m. on Jan. 5. Bye!") == [
        "Hi Mr. Smith. ",
        "Your table for 2 is at 7.30 p.m. on Jan. 5. ",
        "Bye!",
    ]
    long = "one, two, three, four, five, six, seven, eight, nine, ten"
    assert chunk_text(long, 30) == ["one, two, three, four, five, ", "six, seven, eight, nine, ten"]
    assert chunk_text("Call 555 0100. Thanks.") == ["Call 555 0100. ", "Thanks."]
    # A sentence that ends on an abbreviation is not cut there: better late than mid-name.
    assert chunk_text("It is 3 p.m. Then we go.") == ["It is 3 p.m. Then we go."]


def test_every_terminator_ends_a_sentence_not_only_the_full_stop() -> None:
    assert chunk_text("Hello! How are you? Fine\u2026 Yes.") == [
        "Hello! ",
        "How are you? ",
        "Fine\u2026 ",
        "Yes.",
    ]


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        # An abbreviation after an opening bracket is still an abbreviation.
        ("Ask (Dr. Smith) now. Bye.", ["Ask (Dr. Smith) now. ", "Bye."]),
        # So is an initial, whatever the letter.
        ("Ask for X. Smith at the desk. Bye.", ["Ask for X. Smith at the desk. ", "Bye."]),
        # Dotted forms of short pieces: one letter, or two.
        ("Made in the U.S.A. today. Bye.", ["Made in the U.S.A. today. ", "Bye."]),
        ("Flying to N.Y. tomorrow. Bye.", ["Flying to N.Y. tomorrow. ", "Bye."]),
        ("She went to U.Va. last year. Bye.", ["She went to U.Va. last year. ", "Bye."]),
        # Longer pieces, or an empty one, are a word that ends the sentence.
        ("Visit www.bbc.com. Bye.", ["Visit www.bbc.com. ", "Bye."]),
        ("The site ends in .uk. Then we go.", ["The site ends in .uk. ", "Then we go."]),
    ],
)
def test_which_full_stops_end_a_sentence(text: str, chunks: list[str]) -> None:
    assert chunk_text(text) == chunks


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        # Past twice max_chars (8) the cut is at the last space not inside a number.
        ("word 12345 abcdefghijklmnop", ["word 12345 ", "abcdefghijklmnop"]),
        ("abcdefghij 123456789", ["abcdefghij ", "123456789"]),
        ("123456789 abcdefghij", ["123456789 ", "abcdefghij"]),
        ("1234567a 1bcdefghij", ["1234567a ", "1bcdefghij"]),
        # A space between two digits is a number read in groups: never cut there.
        ("1 234567890123456789", ["1 234567890123456789"]),
        ("abcdefg1 2bcdefghij", ["abcdefg1 2bcdefghij"]),
        ("abcdefghijklmn1 2", ["abcdefghijklmn1 2"]),
    ],
)
def test_a_long_run_is_cut_at_a_space_but_never_inside_a_number(
    text: str, chunks: list[str]
) -> None:
    assert chunk_text(text, 8) == chunks


def test_a_chunk_cut_at_a_clause_holds_at_most_120_characters_by_default() -> None:
    colours = (
        "white, blue, orange, red, green, grey, green, white, pink, red, grey, yellow, red, "
        "green, orange, orange, green, yellow, green, grey, orange, red, pink, green, yellow, "
        "pink, red, pink, pink, orange."
    )
    chunks = chunk_text(colours)
    assert [len(chunk) for chunk in chunks] == [113, 85]
    assert chunks[0].endswith("green, ")


def test_flush_hands_back_the_rest_once_and_then_nothing() -> None:
    chunker = SpeechChunker()
    assert chunker.flush() == []
    assert chunker.feed("Hi there") == []
    assert chunker.flush() == ["Hi there"]
    assert chunker.flush() == []
    assert chunker.feed("Bye. ") == ["Bye. "]


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        # A sentence end behind a closing quote or bracket still ends the sentence.
        ('She said "Yes." Then she left.', ['She said "Yes." ', "Then she left."]),
        # A terminator at the very start of the buffer is a (short) sentence of its own.
        ("Done. ! Next.", ["Done. ", "! ", "Next."]),
    ],
)
def test_sentence_ends_behind_closers_and_at_the_start(text: str, chunks: list[str]) -> None:
    assert chunk_text(text) == chunks


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        # A sentence cut yields at most max_chars (8) characters, its space included...
        ("abcdef. xyz", ["abcdef. ", "xyz"]),
        # ...so a sentence end whose space is the ninth character waits for a later cut.
        ("abcdefg. xyz", ["abcdefg. xyz"]),
        # Text no longer than max_chars is never cut at a clause.
        ("ab, cdef", ["ab, cdef"]),
        # Past max_chars, the last clause boundary within max_chars is the cut, even the
        # last possible one or the very first.
        ("abcdef, xyz", ["abcdef, ", "xyz"]),
        (", abcdefgh", [", ", "abcdefgh"]),
        # Up to twice max_chars without a sentence or clause end, nothing is cut...
        ("abcdefg hijklmno", ["abcdefg hijklmno"]),
        # ...past it, the last space within twice max_chars is, even the last or first one.
        ("abcdefghijklmno pq", ["abcdefghijklmno ", "pq"]),
        ("a bcdefghijklmnopq", ["a ", "bcdefghijklmnopq"]),
    ],
)
def test_where_cuts_may_fall_relative_to_max_chars(text: str, chunks: list[str]) -> None:
    assert chunk_text(text, 8) == chunks


def test_max_chars_is_120_by_default_and_at_least_8() -> None:
    chunker = SpeechChunker()
    assert chunker.max_chars == 120
    assert SpeechChunker(8).max_chars == 8
    with pytest.raises(ValueError) as refused:
        SpeechChunker(7)
    assert str(refused.value) == "max_chars must be at least 8"
