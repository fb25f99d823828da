"""How a Telnyx media stream speaks: its WebSocket frames, parsed and built.

Written from Telnyx's media-streaming reference
(https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket, the
AsyncAPI page; https://developers.telnyx.com/docs/voice/programmable-voice/media-streaming, the
guide; https://developers.telnyx.com/api-reference/call-commands/streaming-start, the command).

**Frames from Telnyx.** "Telnyx sends a ``connected`` frame, followed by a ``start`` frame that
identifies the call and media format", then ``media`` frames, and "``dtmf``, ``mark``,
``error``, and ``stop`` frames as applicable":

* ``{"event": "connected", "version": "1.0.0"}``: nothing for us (→ ``[]``);
* ``{"event": "start", "sequence_number": "1", "stream_id": "…", "start": {"user_id",
  "call_control_id", "call_session_id", "from", "to", "client_state", "custom_parameters":
  {"name": "value"}, "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels":
  1}}}``: the ``stream_id`` sits at the top level, the call inside ``start``;
* ``{"event": "media", "stream_id", "media": {"track": "inbound", "chunk", "timestamp",
  "payload": base64 RTP payload without headers}}``;
* ``{"event": "mark", "stream_id", "mark": {"name": "…"}}``;
* ``{"event": "dtmf", "stream_id", "dtmf": {"digit": "1"}}``;
* ``{"event": "error", "payload": {"code", "title", "detail"}}``: logged, nothing else;
* ``{"event": "stop", "stream_id", "stop": {"call_control_id", …}}``.

**The stream token.** It travels as a custom parameter of ``streaming_start``:
``custom_parameters: [{"name": "token", "value": <token>}]``, "Custom parameters to be sent as
part of the WebSocket connection" (the command's reference), which Telnyx puts in the ``start``
frame as ``start.custom_parameters`` (the AsyncAPI example: ``"custom_parameters":
{"customer_id": "customer_123"}``); so the ``start`` frame alone carries everything
``StreamStart`` needs. The other routes, and why not them:

* the ``stream_url`` query string: no Telnyx page says whether it is kept on the WebSocket
  request, and our listener never hands the URL to the dialect anyway;
* ``client_state``: it is echoed in ``start`` too, but it is the call's latest state, which
  holds our call id for every webhook (see ``documents``) and cannot also be a one-time token;
* ``stream_auth_token``: "An authentication token to be sent as part of the WebSocket
  connection"; Telnyx sends it as the ``x-telnyx-streaming-auth-token`` upgrade header and in
  the ``connected`` frame (``connected.x-telnyx-streaming-auth-token``), not in ``start``.

**Marks and clear.** "Send a mark after a media frame. Telnyx sends the same mark back when the
immediately preceding media finishes playing, or immediately if no audio is queued"; ``clear``
"Stops the current media playback and clears queued media. Queued marks are sent back by
Telnyx" (AsyncAPI page). So a mark echo means the caller heard the line, and marks that a clear
dropped come back too: the media service ignores a mark it no longer waits for.

Outbound media is raw μ-law (``stream_bidirectional_mode: "rtp"``,
``stream_bidirectional_codec: "PCMU"``), "20 milliseconds to 30 seconds of audio" a frame.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
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

__all__ = ["TOKEN_PARAMETER", "TelnyxStreamDialect"]

log = logging.getLogger(__name__)

TOKEN_PARAMETER: Final = "token"
"""The ``custom_parameters`` name the stream token travels under."""

# "audio/x-mulaw" is what the older streaming_start page shows; the AsyncAPI page says "PCMU".
_MULAW: Final = frozenset({"PCMU", "audio/x-mulaw"})
_MAX_TOKEN_CHARS: Final = 512


class TelnyxStreamDialect:
    """Telnyx media-stream frames, parsed and built (one per connection)."""

    def __init__(self) -> None:
        self.stream_id: str | None = None

    def parse(self, message: str) -> list[StreamMessage]:
        event, data = read_event(message)
        if event == "start":
            return [self._start(data)]
        if event == "media":
            return _media(data)
        if event == "mark":
            name = _object(data, "mark").get("name")
            if not isinstance(name, str) or not name:
                raise ValueError("mark without a name")
            return [StreamMark(name=name)]
        if event == "dtmf":
            digit = _object(data, "dtmf").get("digit")
            if not isinstance(digit, str) or not digit:
                raise ValueError("dtmf without a digit")
            return [StreamDtmf(digits=digit)]
        if event == "stop":
            return [StreamClosed(reason="stop")]
        if event == "error":
            error = data.get("payload")
            log.warning("Telnyx media stream error: %s", error if isinstance(error, dict) else "?")
            return []
        # "connected", and whatever Telnyx adds later: nothing we act on.
        return []

    def _start(self, data: Mapping[str, Any]) -> StreamStart:
        stream_id = data.get("stream_id")
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError("start without a stream_id")
        start = _object(data, "start")
        media_format = start.get("media_format")
        if isinstance(media_format, dict):
            encoding = media_format.get("encoding")
            if encoding is not None and encoding not in _MULAW:
                raise ValueError(f"start with encoding {encoding!r}, not PCMU")
        parameters = start.get("custom_parameters")
        token = parameters.get(TOKEN_PARAMETER) if isinstance(parameters, dict) else None
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            token = None
        call = start.get("call_control_id")
        self.stream_id = stream_id
        return StreamStart(
            stream_id=stream_id,
            provider_call_id=call if isinstance(call, str) and call else None,
            token=token,
        )

    def media(self, payload: bytes) -> str:
        return dumps({"event": "media", "media": {"payload": base64.b64encode(payload).decode()}})

    def mark(self, name: str) -> str:
        return dumps({"event": "mark", "mark": {"name": name}})

    def clear(self) -> str:
        return dumps({"event": "clear"})


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{data.get('event')} without a {key} object")
    return value


def _media(data: Mapping[str, Any]) -> list[StreamMessage]:
    media = _object(data, "media")
    # We ask for the caller's track only; an "outbound" frame (both_tracks) is our own audio.
    if media.get("track", "inbound") != "inbound":
        return []
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise ValueError("media without a payload")
    try:
        return [StreamMedia(payload=base64.b64decode(payload, validate=True))]
    except binascii.Error:
        raise ValueError("media payload is not base64") from None
