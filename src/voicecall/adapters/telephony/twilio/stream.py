"""How Twilio's media stream speaks: the JSON on a bidirectional ``<Connect><Stream>`` socket.

Message reference: https://www.twilio.com/docs/voice/media-streams/websocket-messages.

* Twilio → us: ``connected`` (first, names the protocol; nothing to act on), ``start``
  (``start.streamSid``, ``start.callSid``, ``start.customParameters``, ``start.mediaFormat``,
  also ``streamSid`` at the top level), ``media`` (``media.track``, ``media.payload``: base64
  μ-law 8 kHz mono), ``dtmf`` (``dtmf.digit``, bidirectional streams only), ``mark``
  (``mark.name``: a mark of ours whose audio has been played) and ``stop``.
* us → Twilio: ``media`` (``{"event", "streamSid", "media": {"payload"}}``), ``mark``
  (``{"event", "streamSid", "mark": {"name"}}``) and ``clear`` (``{"event", "streamSid"}``).

**The stream token.** The ``<Stream url>`` "does not support query string parameters"
(https://www.twilio.com/docs/voice/twiml/stream#custom-parameters): Twilio drops them. Custom
key/value pairs travel as ``<Parameter name value>`` nouns inside ``<Stream>`` and arrive in the
``start`` message's ``start.customParameters``. So the token is ``<Parameter name="token">``
and is read from there; Twilio sends no header of ours on the WebSocket upgrade.

**Marks and clear.** "Send a mark event message after sending a media event message to be
notified when the audio that you have sent has been completed. Twilio sends back a mark event
with a matching name when the audio ends." A ``clear`` "empties all buffered audio and causes
any mark messages to be sent back": marks whose audio was dropped come back too, right after
the clear, so a mark seen after a clear does not prove its audio was heard (the media service
ignores marks of lines it has already cut).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from voicecall.adapters.telephony.stream_message import dumps, read_event
from voicecall.domain.media import (
    StreamClosed,
    StreamDtmf,
    StreamMark,
    StreamMedia,
    StreamMessage,
    StreamStart,
)

__all__ = ["TOKEN_PARAMETER", "TwilioStreamDialect"]

TOKEN_PARAMETER: Final = "token"
"""The ``<Parameter name>`` that carries our stream token (``start.customParameters``)."""

# start.mediaFormat: "encoding ... Value is always audio/x-mulaw", sampleRate 8000, channels 1.
_ENCODING: Final = "audio/x-mulaw"
_SAMPLE_RATE: Final = 8000


class TwilioStreamDialect:
    """One Twilio stream's messages, parsed and built. It learns the ``streamSid`` from
    ``start``; every message we send names it."""

    def __init__(self) -> None:
        self.stream_id: str | None = None

    def parse(self, message: str) -> list[StreamMessage]:
        event, data = read_event(message)
        if event == "start":
            return [self._start(data)]
        if event not in ("media", "mark", "dtmf", "stop"):
            # "connected" and anything Twilio adds later carry nothing we act on.
            return []
        sid = data.get("streamSid")
        if self.stream_id is not None and sid is not None and sid != self.stream_id:
            raise ValueError(f"a message for another stream ({sid!r})")
        if event == "media":
            return self._media(_object(data, "media"))
        if event == "mark":
            name = _object(data, "mark").get("name")
            if not isinstance(name, str):
                raise ValueError("mark without mark.name")
            return [StreamMark(name=name)]
        if event == "dtmf":
            digit = _object(data, "dtmf").get("digit")
            if not isinstance(digit, str) or not digit:
                raise ValueError("dtmf without dtmf.digit")
            return [StreamDtmf(digits=digit)]
        return [StreamClosed(reason="stop")]

    def _start(self, data: dict[str, Any]) -> StreamStart:
        start = _object(data, "start")
        sid = start.get("streamSid", data.get("streamSid"))
        if not isinstance(sid, str) or not sid:
            raise ValueError("start without streamSid")
        media_format = start.get("mediaFormat")
        if isinstance(media_format, dict):
            encoding = media_format.get("encoding", _ENCODING)
            rate = media_format.get("sampleRate", _SAMPLE_RATE)
            if encoding != _ENCODING or rate != _SAMPLE_RATE:
                raise ValueError(f"unsupported media format {encoding!r} at {rate!r} Hz")
        parameters = start.get("customParameters")
        token = parameters.get(TOKEN_PARAMETER) if isinstance(parameters, dict) else None
        call_sid = start.get("callSid")
        self.stream_id = sid
        return StreamStart(
            stream_id=sid,
            provider_call_id=call_sid if isinstance(call_sid, str) and call_sid else None,
            token=token if isinstance(token, str) else None,
        )

    def _media(self, media: dict[str, Any]) -> list[StreamMessage]:
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise ValueError("media without media.payload")
        try:
            audio = base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise ValueError("media payload is not base64") from None
        # A bidirectional stream carries the caller ("inbound"); an "outbound" track (what
        # the call plays, only with track="both_tracks") is not the caller's voice.
        if media.get("track", "inbound") != "inbound":
            return []
        return [StreamMedia(payload=audio)]

    def media(self, payload: bytes) -> str:
        return dumps(
            {
                "event": "media",
                "streamSid": self._sid(),
                "media": {"payload": base64.b64encode(payload).decode("ascii")},
            }
        )

    def mark(self, name: str) -> str:
        return dumps({"event": "mark", "streamSid": self._sid(), "mark": {"name": name}})

    def clear(self) -> str:
        return dumps({"event": "clear", "streamSid": self._sid()})

    def _sid(self) -> str:
        if self.stream_id is None:
            raise RuntimeError("no start message yet: the streamSid is unknown")
        return self.stream_id


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{data.get('event')} without a {key} object")
    return value
