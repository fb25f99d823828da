"""What we ask Telnyx to do: the JSON bodies of our Call Control commands.

Every command we send carries ``client_state`` = our call id (base64). Telnyx documents the
field as "Use this field to add state to every subsequent webhook. It must be a valid Base-64
encoded string" (https://developers.telnyx.com/api-reference/call-commands/speak-text): the
latest command's value *replaces* the call's, and every later webhook carries it. So it must
always hold the call id we look calls up by, and it cannot tell one utterance from another:
two speaks sent back to back would both report the second one's state. Utterances are told
apart by the order Telnyx plays them in instead (see ``webhooks.SpeakLedger``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any, Final

from voicecall.adapters.telephony.telnyx.stream import TOKEN_PARAMETER
from voicecall.adapters.telephony.telnyx.verify import strict_b64decode
from voicecall.domain.ports import DialRequest
from voicecall.domain.speech import SpokenLine

__all__ = [
    "DEFAULT_TELNYX_VOICE",
    "OPENAI_TO_TELNYX_VOICE",
    "answer_command",
    "decode_client_state",
    "dial_command",
    "encode_client_state",
    "reject_command",
    "speak_command",
    "streaming_start_command",
    "telnyx_voice",
    "transcription_start_command",
]

DEFAULT_TELNYX_VOICE: Final = "AWS.Polly.Joanna-Neural"

OPENAI_TO_TELNYX_VOICE: Final[Mapping[str, str]] = {
    # Amazon Polly neural voices through Telnyx, picked for a comparable register and gender.
    "alloy": "AWS.Polly.Joanna-Neural",
    "ash": "AWS.Polly.Matthew-Neural",
    "ballad": "AWS.Polly.Brian-Neural",
    "coral": "AWS.Polly.Kimberly-Neural",
    "echo": "AWS.Polly.Joey-Neural",
    "fable": "AWS.Polly.Amy-Neural",
    "nova": "AWS.Polly.Salli-Neural",
    "onyx": "AWS.Polly.Stephen-Neural",
    "sage": "AWS.Polly.Ruth-Neural",
    "shimmer": "AWS.Polly.Kendra-Neural",
    "verse": "AWS.Polly.Gregory-Neural",
}
"""OpenAI TTS voice name -> Telnyx ``speak`` voice."""

_DEFAULT_LANGUAGE: Final = "en-US"
_MIN_RING_S: Final = 5
_MAX_RING_S: Final = 600
_MAX_CLIENT_STATE_CHARS: Final = 256


def telnyx_voice(voice: str | None) -> str:
    """The Telnyx voice for an OpenAI voice name; a Telnyx-native name passes through."""
    if not voice:
        return DEFAULT_TELNYX_VOICE
    mapped = OPENAI_TO_TELNYX_VOICE.get(voice.strip().lower())
    if mapped is not None:
        return mapped
    # "Provider.Model.Voice" names (AWS.Polly.Joanna, Azure.en-US-AvaNeural, Telnyx.KokoroTTS.af)
    # and the legacy "male"/"female" are already Telnyx voices.
    if "." in voice or voice.lower() in ("male", "female"):
        return voice
    return DEFAULT_TELNYX_VOICE


def encode_client_state(call_id: str) -> str:
    """Our call id as Telnyx ``client_state`` (which must be base64)."""
    return base64.b64encode(call_id.encode("utf-8")).decode("ascii")


def decode_client_state(value: object) -> str | None:
    """Our call id back from ``client_state``; None when it is absent or not ours."""
    if not isinstance(value, str) or not value or len(value) > _MAX_CLIENT_STATE_CHARS:
        return None
    raw = strict_b64decode(value)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text and text.isprintable() else None


def dial_command(
    request: DialRequest, connection_id: str, public_url: str | None
) -> dict[str, Any]:
    """``POST /calls``: ring ``request.to_number`` with our call id as the call's state."""
    body: dict[str, Any] = {
        "connection_id": connection_id,
        "to": request.to_number,
        "from": request.from_number,
        "client_state": encode_client_state(request.call_id),
        "timeout_secs": max(_MIN_RING_S, min(_MAX_RING_S, round(request.ring_timeout_s))),
        # Telnyx ignores a second dial with the same command_id, so a retried request
        # cannot ring the callee twice.
        "command_id": request.call_id,
    }
    if public_url:
        body["webhook_url"] = public_url
        body["webhook_url_method"] = "POST"
    return body


def answer_command(call_id: str) -> dict[str, Any]:
    # Telnyx parks an inbound call until told to answer it; nothing else picks it up.
    return {"client_state": encode_client_state(call_id)}


def reject_command(call_id: str) -> dict[str, Any]:
    return {"cause": "CALL_REJECTED", "client_state": encode_client_state(call_id)}


def speak_command(
    call_id: str, line: SpokenLine, language: str = _DEFAULT_LANGUAGE
) -> dict[str, Any]:
    """``actions/speak`` for one utterance.

    No ``stop``: Telnyx queues consecutive speaks ("If multiple speak text commands are issued
    consecutively, the audio files will be placed in a queue awaiting playback"), and ``stop``
    (``current``/``all``) would cut or drop what is already queued. The utterance id is the
    ``command_id``, so a repeated request never plays the line twice.
    """
    return {
        "payload": line.text,
        "payload_type": "text",
        "voice": telnyx_voice(line.voice),
        "language": language,
        "client_state": encode_client_state(call_id),
        "command_id": f"speak-{line.utterance_id}",
    }


def transcription_start_command(call_id: str, language: str = _DEFAULT_LANGUAGE) -> dict[str, Any]:
    """``actions/transcription_start``: the caller's words as ``call.transcription`` finals.

    ``language`` is the call's BCP-47 tag; Telnyx's Google engine takes the language part
    ("vi" for ``vi-VN``)."""
    return {
        "transcription_engine": "Google",
        "transcription_engine_config": {
            "transcription_engine": "Google",
            "language": language.split("-")[0].lower(),
            # Finals only: a partial result must never end a turn.
            "interim_results": False,
        },
        # The caller's audio only, not our own speech played to them.
        "transcription_tracks": "inbound",
        "client_state": encode_client_state(call_id),
    }


def streaming_start_command(call_id: str, stream_url: str, token: str) -> dict[str, Any]:
    """``actions/streaming_start``: a two-way μ-law stream of the caller to ``stream_url``.

    From the command's reference
    (https://developers.telnyx.com/api-reference/call-commands/streaming-start): the caller's
    audio only (``inbound_track``, so our own speech is not streamed back to us) as PCMU
    (``stream_codec``); audio we send is played to the call as raw RTP payloads
    (``stream_bidirectional_mode: "rtp"``, ``stream_bidirectional_codec: "PCMU"``). The stream
    token rides in ``custom_parameters``, which Telnyx repeats in the ``start`` frame (see
    ``stream``). ``command_id`` is derived from the token, so a retried request opens one stream.
    """
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()[:24]
    return {
        "stream_url": stream_url,
        "stream_track": "inbound_track",
        "stream_codec": "PCMU",
        "stream_bidirectional_mode": "rtp",
        "stream_bidirectional_codec": "PCMU",
        "custom_parameters": [{"name": TOKEN_PARAMETER, "value": token}],
        "client_state": encode_client_state(call_id),
        "command_id": f"stream-{digest}",
    }
