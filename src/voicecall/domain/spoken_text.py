"""Text bound for a carrier's document or a TTS request, made safe to send.

Whatever a model or an RPC client hands us ends up inside TwiML, Plivo XML, a Telnyx
``speak`` payload or a TTS request. XML 1.0 cannot carry most control characters at all
(NUL, BEL, ESC, VT…: a document containing them does not parse, and the call goes silent),
and every carrier caps the text of one spoken element. So text is normalised once, here at
the domain boundary, before it is queued:

* characters XML 1.0 cannot carry (C0 controls other than tab/newline/return, lone
  surrogates, U+FFFE/U+FFFF) and the C1 controls are removed;
* runs of whitespace become one space (speech has no layout);
* text longer than :data:`MAX_UTTERANCE_CHARS` is split into several utterances, at a
  sentence end where one is near, else at a space, else hard.

Only text that is empty after this is refused.
"""

from __future__ import annotations

import re
from typing import Final

from voicecall.domain.errors import CallerError

__all__ = ["MAX_UTTERANCE_CHARS", "EmptySpeech", "normalise_speech", "split_speech"]

# The tightest per-element cap among the carriers' voices: Twilio's Polly voices take 3,000
# characters in one <Say> (basic voices 4,096; https://www.twilio.com/docs/api/errors/13521),
# and Telnyx's speak and Plivo's <Speak> document 3,000 as well.
MAX_UTTERANCE_CHARS: Final = 3000

# XML 1.0 Char production: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
# [#x10000-#x10FFFF]; C1 controls (#x7F-#x9F) are legal but "discouraged", and no voice
# speaks them.
_NOT_SPEAKABLE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_SPACES: Final = re.compile(r"\s+")
_SENTENCE_END: Final = re.compile("[.!?;:\u2026\u3002\uff01\uff1f](?=\\s)")


class EmptySpeech(CallerError):
    """Nothing speakable is left of a message once it is normalised."""


def normalise_speech(text: object) -> str:
    """``text`` without the characters a carrier document cannot carry, spaces collapsed."""
    if not isinstance(text, str):
        return ""
    return _SPACES.sub(" ", _NOT_SPEAKABLE.sub("", text)).strip()


def split_speech(text: object, limit: int = MAX_UTTERANCE_CHARS) -> list[str]:
    """Normalise ``text`` and cut it into utterances of at most ``limit`` characters.

    Raises:
        EmptySpeech: nothing speakable remains (``invalid_request``).
    """
    clean = normalise_speech(text)
    if not clean:
        raise EmptySpeech("the message has nothing to speak once control characters are removed")
    parts: list[str] = []
    while len(clean) > limit:
        cut = _cut_point(clean, limit)
        parts.append(clean[:cut].rstrip())
        clean = clean[cut:].lstrip()
    if clean:
        parts.append(clean)
    return parts


def _cut_point(text: str, limit: int) -> int:
    window = text[: limit + 1]
    # A sentence end in the last third of the window reads naturally; otherwise a space.
    ends = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit]
    if ends and ends[-1] >= limit * 2 // 3:
        return ends[-1]
    space = window.rfind(" ")
    if space > 0:
        return space
    return limit
