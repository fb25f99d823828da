"""Media streams, carrier-neutral: the messages, the stream token and the pacing rule (SPEC §5).

Each carrier's WebSocket dialect (its adapter's ``stream.py``) turns its JSON into these
messages and back; the media service never sees a carrier's field names.

**The stream token.** A stream is accepted only with a token the server minted when it told
the carrier to connect: ``base64url(call_id|expires|nonce) . base64url(HMAC-SHA256)`` under a
secret generated at first start. It binds the stream to one call and one expiry; the service
makes it single-use by remembering its nonce. Carriers strip query strings from stream URLs
(Twilio) or keep them (others), so how the token travels is the dialect's business.

**Pacing.** Outbound audio may run at most ``lead`` ahead of real time: by ``elapsed`` seconds
into a playout, ``elapsed + lead`` seconds of audio may have been sent. Counting from one start
time (never adding up sleeps) keeps the pace free of drift.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math

import attrs

__all__ = [
    "StreamClosed",
    "StreamDtmf",
    "StreamGrant",
    "StreamMark",
    "StreamMedia",
    "StreamMessage",
    "StreamStart",
    "audio_allowed_ms",
    "mint_stream_token",
    "read_stream_token",
]


@attrs.frozen(kw_only=True)
class StreamStart:
    """The carrier opened the stream: which call, which stream, and the token it carried."""

    stream_id: str
    provider_call_id: str | None = None
    token: str | None = None


@attrs.frozen(kw_only=True)
class StreamMedia:
    """Caller audio: G.711 μ-law, 8 kHz mono."""

    payload: bytes


@attrs.frozen(kw_only=True)
class StreamMark:
    """The carrier played the audio sent before the mark called ``name``."""

    name: str


@attrs.frozen(kw_only=True)
class StreamDtmf:
    digits: str


@attrs.frozen(kw_only=True)
class StreamClosed:
    """The carrier ended the stream (the call ended, or the stream was stopped)."""

    reason: str = ""


StreamMessage = StreamStart | StreamMedia | StreamMark | StreamDtmf | StreamClosed


@attrs.frozen
class StreamGrant:
    """What a valid token says: the call it is for, until when, and its one-time nonce."""

    call_id: str
    expires_at: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"voicecall-stream|" + payload, hashlib.sha256).digest()


def mint_stream_token(secret: bytes, call_id: str, expires_at: float, nonce: str) -> str:
    """A token for one stream of ``call_id``, valid until ``expires_at`` (Unix seconds)."""
    if "|" in call_id or "|" in nonce:
        raise ValueError("call ids and nonces may not contain '|'")
    payload = f"{call_id}|{math.ceil(expires_at)}|{nonce}".encode()
    return f"{_b64(payload)}.{_b64(_signature(secret, payload))}"


def read_stream_token(secret: bytes, token: str, now: float) -> StreamGrant | str:
    """The grant in ``token``, or a one-line reason it is refused (never raises)."""
    if not isinstance(token, str) or len(token) > 512 or token.count(".") != 1:
        return "malformed stream token"
    encoded_payload, encoded_signature = token.split(".")
    try:
        payload = _unb64(encoded_payload)
        signature = _unb64(encoded_signature)
    except (ValueError, TypeError):
        return "malformed stream token"
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        return "bad stream token signature"
    try:
        call_id, expires, nonce = payload.decode("utf-8").split("|")
        expires_at = float(int(expires))
    except ValueError:
        return "malformed stream token"
    if now > expires_at:
        return "expired stream token"
    return StreamGrant(call_id=call_id, expires_at=expires_at, nonce=nonce)


def audio_allowed_ms(elapsed_s: float, lead_ms: float) -> float:
    """How much audio (ms) may have been sent ``elapsed_s`` into a playout: real time + lead."""
    return max(elapsed_s, 0.0) * 1000.0 + lead_ms
