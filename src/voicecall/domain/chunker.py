"""Cutting a streamed reply into speakable chunks (issue 10).

A model writes its answer a few characters at a time; the caller should hear the first sentence
while the rest is still being written. The chunker cuts at sentence ends, or at a clause
boundary once a sentence runs long, and only ever at whitespace, so a chunk never ends inside a
number, a decimal, a URL or an abbreviation. Its chunks concatenate to exactly the text fed in.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SpeechChunker", "chunk_text"]

# Words that end in a full stop without ending the sentence. Lower-case, without the final dot.
_ABBREVIATIONS: Final = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m",
        "p.m", "no", "nos", "approx", "inc", "ltd", "co", "corp", "mt", "ft", "dept", "est",
        "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
        "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun", "ave", "blvd", "rd", "apt",
        "tel", "ext", "min", "max", "gov", "u.s", "u.k", "ph.d", "cf", "al",
    }
)  # fmt: skip
_SENTENCE_END: Final = frozenset(".!?…")
_CLAUSE_END: Final = frozenset(",;:")
_CLOSERS: Final = frozenset("\"')]}\u201d\u2019")


def _word_before(text: str, end: int) -> str:
    """The whitespace-delimited token ending just before ``end``."""
    start = end
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:end]


def _ends_sentence(text: str, at: int) -> bool:
    """Whether ``text[at]`` (a terminator, followed by whitespace) ends a sentence."""
    char = text[at]
    if char != ".":
        return True
    word = _word_before(text, at + 1)
    bare = word.rstrip(".").lstrip("\"'([{\u201c\u2018").lower()
    if bare in _ABBREVIATIONS:
        return False
    if len(bare) == 1 and bare.isalpha():
        return False  # an initial: "J. Smith"
    # Dotted forms like "U.S.A." or "e.g.": short pieces joined by dots.
    pieces = bare.split(".")
    return not (len(pieces) > 1 and all(0 < len(p) <= 2 for p in pieces))


def _between_digits(text: str, at: int) -> bool:
    """Whitespace at ``at`` sits between two digits ("555 0100"): a number read in groups."""
    return at > 0 and at + 1 < len(text) and text[at - 1].isdigit() and text[at + 1].isdigit()


class SpeechChunker:
    """Feed it text as it streams; it hands back each speakable chunk once it is complete.

    Args:
        max_chars: past this many characters without a sentence end, a chunk is cut at the
            last clause boundary (comma, semicolon, colon); past twice this, at the last
            space that is not inside a number.
    """

    def __init__(self, max_chars: int = 120) -> None:
        if max_chars < 8:
            raise ValueError("max_chars must be at least 8")
        self.max_chars = max_chars
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        """Add streamed text; returns the chunks it completed (possibly none)."""
        self._buffer += text
        chunks: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return chunks
            chunks.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]

    def flush(self) -> list[str]:
        """The stream ended: whatever is left is the last chunk."""
        rest, self._buffer = self._buffer, ""
        return [rest] if rest else []

    def _next_cut(self) -> int | None:
        text = self._buffer
        # A sentence end needs the whitespace after it, or "3." could still become "3.5".
        for index, char in enumerate(text):
            if char.isspace() and index > 0:
                end = index - 1
                while end >= 0 and text[end] in _CLOSERS:
                    end -= 1
                if end >= 0 and text[end] in _SENTENCE_END and _ends_sentence(text, end):
                    if text[:index].strip():
                        return index + 1
            if index + 1 >= self.max_chars:
                break
        if len(text) <= self.max_chars:
            return None
        window = text[: self.max_chars]
        for index in range(len(window) - 1, 0, -1):
            if window[index].isspace() and window[index - 1] in _CLAUSE_END:
                if not _between_digits(text, index) and window[:index].strip():
                    return index + 1
        if len(text) <= 2 * self.max_chars:
            return None
        for index in range(2 * self.max_chars - 1, 0, -1):
            if text[index].isspace() and not _between_digits(text, index):
                if text[:index].strip():
                    return index + 1
        return None


def chunk_text(text: str, max_chars: int = 120) -> list[str]:
    """The chunks of a whole text, as the streaming chunker would cut it."""
    chunker = SpeechChunker(max_chars)
    return chunker.feed(text) + chunker.flush()
