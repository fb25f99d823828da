"""What Plivo XML we serve a call: one document per turn, built with the plivo SDK's elements.

The rules each document follows (Plivo XML reference):

* ``<Speak>`` plays text to the caller and the next element runs when it is done
  (https://plivo.com/docs/voice/xml/speak). Plivo does not tell us when a ``<Speak>`` ended, so
  each document holds at most one line not yet played, followed by a ``<Redirect>`` back to us
  whose URL names that line: Plivo asking for it is the news that the line was played.
* ``<GetInput inputType="speech">`` listens; a ``<Speak>`` nested in it is the prompt, and the
  caller may answer over it. Speech goes to ``action``; "If the user fails to provide input
  within the timeout period, the next element in the response will be processed. This duration
  is counted after nested Play/Speak elements have ended"
  (https://plivo.com/docs/voice/xml/getinput). So a ``<Redirect>`` after it is reached only on
  silence, and nothing queued is ever stranded behind a listen.
* ``<Redirect>`` fetches the next document; "any elements after <Redirect> are not processed"
  (https://docs.plivo.com/docs/voice/xml/redirect).
* ``<Wait length>`` keeps the line open and silent (https://plivo.com/docs/voice/xml/wait);
  a document that runs out of elements ends the call ("End Of XML Instructions",
  https://docs.plivo.com/docs/voice/troubleshooting/hangup-causes), so every document we
  serve ends in a ``<Redirect>`` or a ``<Hangup>``.
* ``<Hangup reason="rejected"/>`` refuses an inbound call (https://plivo.com/docs/voice/xml/hangup).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from plivo.xml import (
    DialElement,
    GetInputElement,
    HangupElement,
    NumberElement,
    RedirectElement,
    ResponseElement,
    SpeakElement,
    WaitElement,
)

__all__ = [
    "EMPTY_XML",
    "PLIVO_VOICES",
    "dial",
    "hangup",
    "hold_then_hangup",
    "listen",
    "native_voice",
    "park",
    "speak_then_redirect",
    "with_query",
]

EMPTY_XML: Final = b"<Response/>"

PLIVO_VOICES: Final[Mapping[str, str]] = {
    # OpenAI voice -> the Amazon Polly voice Plivo's <Speak> offers that sounds closest.
    "alloy": "Polly.Joanna",
    "ash": "Polly.Matthew",
    "ballad": "Polly.Brian",
    "coral": "Polly.Salli",
    "echo": "Polly.Joey",
    "fable": "Polly.Brian",
    "nova": "Polly.Kimberly",
    "onyx": "Polly.Matthew",
    "sage": "Polly.Kendra",
    "shimmer": "Polly.Kendra",
    "verse": "Polly.Joey",
}


def native_voice(voice: str | None) -> str | None:
    """The Plivo ``<Speak voice>`` for an OpenAI voice name; None keeps Plivo's default.

    A name that already looks native (``WOMAN``, ``MAN``, ``Polly.*``) is passed through.
    """
    if not voice:
        return None
    if voice in ("WOMAN", "MAN") or voice.startswith("Polly."):
        return voice
    return PLIVO_VOICES.get(voice.lower())


def with_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


DEFAULT_LANGUAGE: Final = "en-US"


def _speak(text: str, voice: str | None, language: str) -> SpeakElement:
    # The mapped Polly voices are English; another language speaks with Plivo's voice for it.
    # en-US is Plivo's own default, so it is left unsaid.
    if not language.lower().startswith("en"):
        return SpeakElement(text, language=language)
    return SpeakElement(
        text,
        voice=native_voice(voice),
        language=language if language != DEFAULT_LANGUAGE else None,
    )


def speak_then_redirect(
    text: str, voice: str | None, next_url: str, language: str = DEFAULT_LANGUAGE
) -> bytes:
    """One line, then back to us: the fetch of ``next_url`` says the line was played."""
    doc = ResponseElement()
    doc.add(_speak(text, voice, language))
    doc.add(RedirectElement(next_url, method="POST"))
    return _xml(doc)


def listen(
    action_url: str,
    on_silence_url: str,
    timeout_s: int,
    prompt: tuple[str, str | None] | None = None,
    language: str = DEFAULT_LANGUAGE,
) -> bytes:
    """Listen for speech (with the prompt nested, so the caller can answer over it).

    Speech goes to ``action_url``; silence falls through to the ``<Redirect>``.
    """
    doc = ResponseElement()
    gather = GetInputElement(
        action=action_url,
        method="POST",
        input_type="speech",
        execution_timeout=timeout_s,
        redirect=True,
        language=language if language != DEFAULT_LANGUAGE else None,
    )
    if prompt is not None:
        text, voice = prompt
        gather.add(_speak(text, voice, language))
    doc.add(gather)
    doc.add(RedirectElement(on_silence_url, method="POST"))
    return _xml(doc)


def park(keepalive_s: int, next_url: str) -> bytes:
    """Nothing to say: keep the line open and silent, then ask us again."""
    doc = ResponseElement()
    doc.add(WaitElement(length=keepalive_s))
    doc.add(RedirectElement(next_url, method="POST"))
    return _xml(doc)


def hold_then_hangup(hold_s: float) -> bytes:
    """Notify: the message was heard; hold ``hold_s`` (whole seconds, at least 1), hang up."""
    doc = ResponseElement()
    if hold_s > 0:
        doc.add(WaitElement(length=max(math.ceil(hold_s), 1)))
    doc.add(HangupElement())
    return _xml(doc)


def dial(to: str, caller_id: str | None) -> bytes:
    """Hand the caller to ``to``: ``<Dial><Number>`` bridges them
    (https://www.plivo.com/docs/voice/xml/dial)."""
    element = DialElement(caller_id=caller_id) if caller_id else DialElement()
    return _xml(ResponseElement().add(element.add(NumberElement(to))))


def hangup(*, rejected: bool = False) -> bytes:
    return _xml(ResponseElement().add(HangupElement(reason="rejected" if rejected else None)))


def _xml(response: ResponseElement) -> bytes:
    return str(response.to_string(pretty=False)).encode("utf-8")
