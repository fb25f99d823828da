"""What TwiML we hand Twilio: one document per turn, composed so Twilio itself keeps the order.

Twilio runs a TwiML document verb by verb and tells us nothing about a ``<Say>`` it played;
the only news is its next request for TwiML. So each document carries **at most one** line
that has not been heard yet, and ends in a way that comes straight back to us once it has
been said (TwiML reference: https://www.twilio.com/docs/voice/twiml):

* a line followed by listening:
  ``<Gather input="speech" action="…?u=ID&turn=T" actionOnEmptyResult="true"><Say>…</Say>
  </Gather>``. The Say is nested so the caller may answer over it
  (https://www.twilio.com/docs/voice/twiml/gather, "Nest other verbs"); with an ``action``
  Twilio requests it when the Gather ends and never runs a verb after the Gather, and with
  ``actionOnEmptyResult="true"`` it does so on silence too, so nothing may follow it;
* any other line: ``<Say>…</Say><Redirect>…?u=ID</Redirect>``
  (https://www.twilio.com/docs/voice/twiml/redirect): the Redirect is fetched once the Say
  has been said (https://www.twilio.com/docs/voice/twiml/say), which marks the line played;
* the call's media stream: ``<Connect><Stream url><Parameter name="token" value/></Stream>
  </Connect><Redirect>…hook=stream</Redirect>``. A ``<Connect><Stream>`` is bidirectional and
  holds the call until the WebSocket ends; only then does Twilio run the next verb ("This TwiML
  instruction is unreachable unless the Stream is ended by your WebSocket server",
  https://www.twilio.com/docs/voice/twiml/stream; without an ``action``, "<Connect> will
  finish and Twilio will move on to the next TwiML verb", https://www.twilio.com/docs/voice/
  twiml/connect). That Redirect's fetch is how we learn the stream ended while the call
  lives. The stream URL carries no query (Twilio drops it), so the token is a ``<Parameter>``;
* nothing left to say: listen (an empty Gather), hold and hang up
  (``<Pause length="N"/><Hangup/>``, https://www.twilio.com/docs/voice/twiml/pause,
  https://www.twilio.com/docs/voice/twiml/hangup), or park (``<Pause>`` then
  ``<Redirect>``: a document that runs out ends the call).

Every URL carries our call id, what it is for (``hook``) and a fresh token, all signed by
Twilio with the rest of the URL; the token keeps the replay guard from taking a later
request for a repeat.
"""

from __future__ import annotations

import enum
import math
import uuid
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
from twilio.twiml.voice_response import VoiceResponse

from voicecall.adapters.telephony.twilio.stream import TOKEN_PARAMETER
from voicecall.domain.speech import SpokenLine
from voicecall.domain.webhook import WebhookResponse

__all__ = [
    "EMPTY_TWIML",
    "OPENAI_TO_TWILIO_VOICE",
    "Hook",
    "WebhookUrls",
    "connect_stream",
    "hang_up",
    "hold_then_hang_up",
    "listen",
    "new_token",
    "park",
    "reject",
    "say_then_listen",
    "say_then_return",
    "twilio_voice",
    "twiml",
]

# OpenAI voice names (what ``tts.openai.voice`` holds) to comparable Amazon Polly voices that
# Twilio's <Say> speaks natively.
OPENAI_TO_TWILIO_VOICE: Final[dict[str, str]] = {
    "alloy": "Polly.Joanna",
    "echo": "Polly.Matthew",
    "fable": "Polly.Amy",
    "onyx": "Polly.Brian",
    "nova": "Polly.Salli",
    "shimmer": "Polly.Kimberly",
}
# Names Twilio's <Say> already understands are passed through untouched.
_NATIVE_VOICE_PREFIXES: Final = ("Polly.", "Google.", "alice", "man", "woman")


def twilio_voice(voice: str | None) -> str | None:
    """The ``<Say voice>`` for an OpenAI voice name; native names pass through, others None."""
    if not voice:
        return None
    mapped = OPENAI_TO_TWILIO_VOICE.get(voice.lower())
    if mapped is not None:
        return mapped
    if voice.startswith(_NATIVE_VOICE_PREFIXES):
        return voice
    return None


class Hook(enum.StrEnum):
    """Which of our URLs Twilio requested; carried in the ``hook`` query parameter."""

    ANSWER = "answer"  # the dial's Url: fetched when the callee picks up
    STATUS = "status"  # StatusCallback: call progress, answered with an empty <Response/>
    GATHER = "gather"  # a <Gather action>: the caller's speech (or silence)
    WAIT = "wait"  # a <Redirect>: after a line (``u``) was said, or a parked call's round trip
    STREAM = "stream"  # the Redirect after <Connect><Stream>: the media stream ended
    VOICE = "voice"  # no hook: the number's voice URL, i.e. an inbound call


def new_token() -> str:
    return uuid.uuid4().hex[:12]


@attrs.frozen
class WebhookUrls:
    """Builds our webhook URLs from ``publicUrl`` (the exact URL Twilio calls and signs)."""

    public_url: str

    def url(self, hook: Hook, call_id: str | None, **extra: str) -> str:
        parts = urlsplit(self.public_url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if call_id:
            query.append(("callId", call_id))
        query.append(("hook", hook.value))
        query.extend(extra.items())
        return urlunsplit(parts._replace(query=urlencode(query)))

    def gather(self, call_id: str | None, heard_after: str | None) -> str:
        """A Gather's action: the line it goes with (``u``) and its turn token."""
        extra = {"u": heard_after} if heard_after else {}
        return self.url(Hook.GATHER, call_id, **extra, turn=new_token())

    def back(self, call_id: str | None, played: str | None = None) -> str:
        """A Redirect back to us; ``played`` is the line whose end the fetch reports."""
        extra = {"u": played} if played else {}
        return self.url(Hook.WAIT, call_id, **extra, n=new_token())

    def stream_ended(self, call_id: str | None) -> str:
        """The Redirect after a ``<Connect><Stream>``; its token names that stream's end."""
        return self.url(Hook.STREAM, call_id, turn=new_token())


DEFAULT_LANGUAGE: Final = "en-US"


def _say(parent: VoiceResponse, line: SpokenLine, language: str) -> None:
    # The mapped Polly voices are English ones; another language speaks with Twilio's voice
    # for that language (<Say language>, https://www.twilio.com/docs/voice/twiml/say).
    # en-US is Twilio's own default for <Say> and <Gather>, so it is left unsaid.
    voice = twilio_voice(line.voice) if language.lower().startswith("en") else None
    extra = {"language": language} if language != DEFAULT_LANGUAGE else {}
    if voice:
        parent.say(line.text, voice=voice, **extra)
    else:
        parent.say(line.text, **extra)


def _gather(response: VoiceResponse, action: str, language: str) -> VoiceResponse:
    extra = {"language": language} if language != DEFAULT_LANGUAGE else {}
    gather: VoiceResponse = response.gather(
        input="speech",
        speech_timeout="auto",
        action_on_empty_result=True,
        action=action,
        method="POST",
        **extra,
    )
    return gather


def say_then_listen(
    urls: WebhookUrls, call_id: str | None, line: SpokenLine, language: str = DEFAULT_LANGUAGE
) -> VoiceResponse:
    """The line inside a Gather; nothing after it (it would be unreachable)."""
    response = VoiceResponse()
    gather = _gather(response, urls.gather(call_id, line.utterance_id), language)
    _say(gather, line, language)
    return response


def say_then_return(
    urls: WebhookUrls, call_id: str | None, line: SpokenLine, language: str = DEFAULT_LANGUAGE
) -> VoiceResponse:
    """The line, then straight back to us: that fetch says it was played."""
    response = VoiceResponse()
    _say(response, line, language)
    response.redirect(urls.back(call_id, line.utterance_id), method="POST")
    return response


def listen(
    urls: WebhookUrls,
    call_id: str | None,
    heard_after: str | None,
    language: str = DEFAULT_LANGUAGE,
) -> VoiceResponse:
    """An empty Gather: listen again after ``heard_after``, the last line said."""
    response = VoiceResponse()
    _gather(response, urls.gather(call_id, heard_after), language)
    return response


def hold_then_hang_up(hold_s: float) -> VoiceResponse:
    """Notify's end: ``<Pause length>`` takes whole seconds, so the hold is rounded up (the
    service's own timer hangs up on time in any case)."""
    response = VoiceResponse()
    if hold_s > 0:
        response.pause(length=max(1, math.ceil(hold_s)))
    response.hangup()
    return response


def park(urls: WebhookUrls, call_id: str | None, pause_s: int) -> VoiceResponse:
    """Nothing to say: keep the call open; a live update replaces this at once."""
    response = VoiceResponse()
    response.pause(length=pause_s)
    response.redirect(urls.back(call_id), method="POST")
    return response


def connect_stream(
    urls: WebhookUrls, call_id: str | None, stream_url: str, token: str
) -> VoiceResponse:
    """Open the call's bidirectional media stream; come back to us when it ends."""
    response = VoiceResponse()
    connect = response.connect()
    stream = connect.stream(url=stream_url)
    stream.parameter(name=TOKEN_PARAMETER, value=token)
    response.redirect(urls.stream_ended(call_id), method="POST")
    return response


def dial(to: str, caller_id: str | None) -> VoiceResponse:
    """Hand the caller to ``to``: ``<Dial>`` bridges them; the document ends after it
    (https://www.twilio.com/docs/voice/twiml/dial)."""
    response = VoiceResponse()
    response.dial(to, caller_id=caller_id)
    return response


def play_digits(urls: WebhookUrls, call_id: str | None, digits: str) -> VoiceResponse:
    """DTMF into the call (``<Play digits>``, ``w`` is a half-second pause), then back to us
    for what comes next (https://www.twilio.com/docs/voice/twiml/play#attributes-digits)."""
    response = VoiceResponse()
    response.play(digits=digits)
    response.redirect(urls.back(call_id), method="POST")
    return response


def hang_up() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup()
    return response


def reject() -> VoiceResponse:
    response = VoiceResponse()
    response.reject(reason="rejected")
    return response


def twiml(response: VoiceResponse) -> WebhookResponse:
    return WebhookResponse(200, str(response).encode(), "text/xml")


EMPTY_TWIML: Final = twiml(VoiceResponse())
