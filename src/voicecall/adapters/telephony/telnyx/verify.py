"""Telnyx webhook signatures: Ed25519 over ``"{telnyx-timestamp}|{raw body}"``.

Telnyx signs every webhook with the account's Ed25519 key and sends the signature in
``telnyx-signature-ed25519`` and the signing time in ``telnyx-timestamp``
(https://developers.telnyx.com/docs/voice/programmable-voice/receiving-webhooks).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import Final

from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from voicecall.domain.signed_url import Verification, signature_headers_present
from voicecall.domain.webhook import WebhookRequest

__all__ = ["TelnyxSignatureVerifier", "public_key_parses", "strict_b64decode"]

_SIGNATURE_HEADER: Final = "telnyx-signature-ed25519"
_TIMESTAMP_HEADER: Final = "telnyx-timestamp"
_KEY_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64
_MAX_TIMESTAMP_DIGITS: Final = 12


def strict_b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _load_key(public_key_b64: str) -> VerifyKey | None:
    raw = strict_b64decode(public_key_b64) if public_key_b64 else None
    if raw is None or len(raw) != _KEY_BYTES:
        return None
    try:
        return VerifyKey(raw)
    except (CryptoError, ValueError, TypeError):
        return None


def public_key_parses(public_key_b64: str) -> bool:
    """Whether ``telnyx.publicKey`` is a base64 Ed25519 public key (what the portal shows)."""
    return _load_key(public_key_b64) is not None


class TelnyxSignatureVerifier:
    """Checks Telnyx's Ed25519 signature over ``"{telnyx-timestamp}|{raw body}"``.

    The public key is the base64 key from the Telnyx portal (``telnyx.publicKey``). A
    timestamp more than ``tolerance_s`` seconds away from ``clock_now()`` in either direction
    is refused, which bounds how long a captured request stays replayable. A malformed key,
    header or signature gives ``ok=False``; nothing here raises.
    """

    required_headers: tuple[str, ...] = (_SIGNATURE_HEADER, _TIMESTAMP_HEADER)
    header_sets: tuple[tuple[str, ...], ...] = (required_headers,)
    """Header groups of which one must be complete for the request to be verifiable."""

    def __init__(
        self,
        public_key_b64: str,
        clock_now: Callable[[], float],
        tolerance_s: float = 300,
    ) -> None:
        self._key = _load_key(public_key_b64)
        self._now = clock_now
        self._tolerance = tolerance_s

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        """Whether the headers needed to verify at all are present (checked before the body)."""
        return signature_headers_present(self.header_sets, header_names)

    def verify(self, request: WebhookRequest) -> Verification:
        """Verify one request; never raises."""
        signature_b64 = request.header(_SIGNATURE_HEADER)
        timestamp = request.header(_TIMESTAMP_HEADER)
        if not signature_b64 or not timestamp:
            return Verification(ok=False, reason="missing Telnyx signature headers")
        if self._key is None:
            return Verification(ok=False, reason="Telnyx public key is missing or malformed")
        # ASCII digits only: str.isdigit alone would admit other scripts' digits.
        if not (
            timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS
        ):
            return Verification(ok=False, reason="malformed telnyx-timestamp")
        if abs(self._now() - int(timestamp)) > self._tolerance:
            return Verification(ok=False, reason="telnyx-timestamp outside tolerance")
        signature = strict_b64decode(signature_b64)
        if signature is None or len(signature) != _SIGNATURE_BYTES:
            return Verification(ok=False, reason="malformed Telnyx signature")
        # The raw bytes as received: decoding and re-encoding the body could change it.
        message = timestamp.encode("ascii") + b"|" + request.body
        try:
            self._key.verify(message, signature)
        except (CryptoError, ValueError, TypeError):
            return Verification(ok=False, reason="bad Telnyx signature")
        canonical = base64.b64encode(signature).decode("ascii")
        return Verification(
            ok=True,
            reason="valid Telnyx signature",
            replay_key=f"telnyx:{timestamp}:{canonical}",
        )
