"""How Plivo's audio stream speaks: the ``<Stream>`` we serve and its WebSocket messages.

Wire facts (Plivo "Stream Event Protocol",
https://plivo.com/docs/voice/audio-streaming/audio-streaming, and the ``<Stream>`` element,
https://plivo.com/docs/voice/xml/audio-streaming and
https://docs.plivo.com/docs/voice/xml/audiostream):

* Plivo → us: ``start`` (once, first: ``start.streamId``, ``start.callId`` (the CallUUID),
  ``start.mediaFormat`` and, top level, ``extra_headers``: the ``<Stream extraHeaders>``
  string), ``media`` (``media.payload`` base64 audio in the ``contentType`` we asked for,
  ``media.track`` ``"inbound"`` for the caller), ``dtmf`` (``dtmf.digit``), ``playedStream``
  (``name``: a checkpoint we sent was reached) and ``clearedAudio`` (our ``clearAudio`` was
  done). The protocol page lists no ``stop`` message (the socket simply closes when the call
  ends or the stream stops); one is read as the end of the stream all the same.
* us → Plivo: ``playAudio`` ``{"media": {"contentType", "sampleRate", "payload"}}``,
  ``checkpoint`` ``{"streamId", "name"}`` and ``clearAudio`` ``{"streamId"}``.

**The stream token.** Plivo hands a ``<Stream extraHeaders>`` value to the WebSocket service
in the ``start`` message (``extra_headers``); the XML page allows "Key-value pairs ... Example:
test1=12,test2=123. Max length: 512 bytes. Only characters [A-Z], [a-z], [0-9] allowed". Our
token carries ``-``, ``_`` and ``.``, so it travels hex-encoded as ``voicecallToken=<hex>``
(about 270 characters) and is decoded here. We do not rely on the URL's query string: the docs
promise nothing about it, and a header value is not written to access logs.

**Marks.** A ``checkpoint`` is our mark: "Plivo will respond with playedStream, indicating that
audio events buffered before the Checkpoint were successfully played out to the end user.
playedStream will only be emitted if the preceding events were played successfully"
(https://plivo.com/docs/voice/xml/the-stream-element/checkpoint-event). So a checkpoint whose
audio was cleared is never echoed. ``clearAudio`` "clears all the buffered audio"
(https://docs.plivo.com/docs/voice/xml/audiostream/stream-events-to-plivo/clear-audio-stream)
and is acknowledged with ``clearedAudio``, which changes nothing for us.

**keepCallAlive.** With ``keepCallAlive="true"`` the ``<Stream>`` "runs alone. Subsequent XML
elements execute only after the stream disconnects" (audiostream page). So the ``<Redirect>``
after it is Plivo telling us the stream ended while the call goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Final

from plivo.xml import RedirectElement, ResponseElement, StreamElement

from voicecall.adapters.telephony.stream_message import read_event
from voicecall.domain.media import (
    StreamClosed,
    StreamDtmf,
    StreamMark,
    StreamMedia,
    StreamMessage,
    StreamStart,
)

__all__ = [
    "CONTENT_TYPE",
    "TOKEN_HEADER",
    "PlivoStreamDialect",
    "decode_token",
    "encode_token",
    "fits_extra_headers",
    "read_extra_headers",
    "stream_document",
]

CONTENT_TYPE: Final = "audio/x-mulaw;rate=8000"
TOKEN_HEADER: Final = "voicecallToken"
_MAX_EXTRA_HEADERS: Final = 512
_SAFE: Final = re.compile(r"[A-Za-z0-9]+")


def encode_token(token: str) -> str:
    """The stream token in the only characters ``extraHeaders`` allows: hex of its ASCII."""
    return token.encode("ascii").hex()


def decode_token(value: str) -> str | None:
    """The token from its hex form; None when it is not one of ours."""
    try:
        return bytes.fromhex(value).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None


def fits_extra_headers(token: str) -> bool:
    """Whether ``token`` fits ``extraHeaders`` (512 bytes at most) once encoded."""
    return len(_token_header(token)) <= _MAX_EXTRA_HEADERS


def _token_header(token: str) -> str:
    return f"{TOKEN_HEADER}={encode_token(token)}"


def read_extra_headers(raw: Any) -> dict[str, str]:
    """``extra_headers`` as key/value pairs.

    The XML page writes them ``test1=12,test2=123`` and the protocol page's example
    ``userId=12345;sessionId=abc-xyz``, so both separators are accepted; a JSON object is
    taken as it is.
    """
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items() if isinstance(v, str | int)}
    if not isinstance(raw, str):
        return {}
    text = raw.strip()
    if text.startswith("{"):
        try:
            return read_extra_headers(json.loads(text))
        except (ValueError, RecursionError):
            return {}
    pairs: dict[str, str] = {}
    for part in re.split(r"[,;]", text):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            pairs.setdefault(key.strip(), value.strip())
    return pairs


def stream_document(url: str, token: str, after_url: str) -> bytes:
    """Open a two-way μ-law stream to ``url`` carrying ``token``; ``after_url`` is fetched
    once the stream has ended while the call is still up."""
    headers = _token_header(token)
    if not fits_extra_headers(token):
        raise ValueError("the stream token does not fit Plivo's 512-byte extraHeaders")
    doc = ResponseElement()
    doc.add(
        StreamElement(
            url,
            bidirectional=True,
            keepCallAlive=True,
            contentType=CONTENT_TYPE,
            extraHeaders=headers,
        )
    )
    doc.add(RedirectElement(after_url, method="POST"))
    return str(doc.to_string(pretty=False)).encode("utf-8")


class PlivoStreamDialect:
    """Plivo's stream messages for one connection; it learns the stream id from ``start``."""

    def __init__(self) -> None:
        self.stream_id: str | None = None

    def parse(self, message: str) -> list[StreamMessage]:
        event, data = read_event(message)
        if event == "start":
            return [self._start(data)]
        if event == "media":
            return self._media(data)
        if event == "playedStream":
            name = data.get("name")
            if not isinstance(name, str):
                raise ValueError("playedStream without a name")
            return [StreamMark(name=name)]
        if event == "dtmf":
            return [StreamDtmf(digits=_digit(data))]
        if event == "stop":
            return [StreamClosed(reason="stop")]
        # clearedAudio acknowledges our clearAudio; anything newer is not ours to act on.
        return []

    def _start(self, data: dict[str, Any]) -> StreamStart:
        start = data.get("start")
        if not isinstance(start, dict):
            raise ValueError("start without its start object")
        stream_id = start.get("streamId")
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError("start without streamId")
        call = start.get("callId")
        media_format = start.get("mediaFormat")
        if isinstance(media_format, dict):
            encoding = media_format.get("encoding")
            if isinstance(encoding, str) and encoding.split(";")[0] != "audio/x-mulaw":
                raise ValueError(f"the stream carries {encoding}, not μ-law")
        self.stream_id = stream_id
        headers = read_extra_headers(data.get("extra_headers", start.get("extra_headers")))
        encoded = headers.get(TOKEN_HEADER, "")
        token = decode_token(encoded) if _SAFE.fullmatch(encoded) else None
        return StreamStart(
            stream_id=stream_id,
            provider_call_id=call if isinstance(call, str) and call else None,
            token=token,
        )

    @staticmethod
    def _media(data: dict[str, Any]) -> list[StreamMessage]:
        media = data.get("media")
        if not isinstance(media, dict) or not isinstance(media.get("payload"), str):
            raise ValueError("media without payload")
        if media.get("track", "inbound") != "inbound":
            return []  # only the caller's side is ours to hear
        try:
            payload = base64.b64decode(media["payload"], validate=True)
        except binascii.Error:
            raise ValueError("media payload is not base64") from None
        return [StreamMedia(payload=payload)]

    def media(self, payload: bytes) -> str:
        return json.dumps(
            {
                "event": "playAudio",
                "media": {
                    "contentType": "audio/x-mulaw",
                    "sampleRate": 8000,
                    "payload": base64.b64encode(payload).decode("ascii"),
                },
            }
        )

    def mark(self, name: str) -> str:
        return json.dumps({"event": "checkpoint", "streamId": self.stream_id or "", "name": name})

    def clear(self) -> str:
        return json.dumps({"event": "clearAudio", "streamId": self.stream_id or ""})


def _digit(data: dict[str, Any]) -> str:
    dtmf = data.get("dtmf")
    digit = dtmf.get("digit") if isinstance(dtmf, dict) else data.get("digit")
    if not isinstance(digit, str) or not digit:
        raise ValueError("dtmf without a digit")
    return digit
