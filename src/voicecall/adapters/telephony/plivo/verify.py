"""How we check Plivo's webhook signatures (SPEC §4): V3, falling back to V2.

Wire facts from Plivo's request validation page
(https://docs.plivo.com/docs/voice/xml/request/validation) and the plivo-python SDK's
``validate_v3_signature`` / ``validate_signature``, which do the HMAC work here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qsl

import attrs
from plivo.utils import validate_signature, validate_v3_signature

from voicecall.domain.signed_url import (
    UrlTrustSettings,
    Verification,
    callback_base_url,
    reconstruct_public_url,
    signature_headers_present,
)
from voicecall.domain.webhook import WebhookRequest

__all__ = ["FORM_CONTENT_TYPE", "PlivoSignatureVerifier"]

_V3_SIGNATURE: Final = "x-plivo-signature-v3"
_V3_NONCE: Final = "x-plivo-signature-v3-nonce"
_V2_SIGNATURE: Final = "x-plivo-signature-v2"
_V2_NONCE: Final = "x-plivo-signature-v2-nonce"
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"
_SIGNED_METHODS: Final = frozenset({"GET", "POST"})

FormParams = dict[str, str | list[str]]


def _form_params(body: str) -> FormParams:
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    # The SDK signs a repeated field as each value in sorted order, a single one as itself.
    return {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}


def _media_type(request: WebhookRequest) -> str:
    return (request.header("content-type") or "").split(";", 1)[0].strip().lower()


class PlivoSignatureVerifier:
    """Checks Plivo's V3 signature, falling back to V2 only when no V3 headers came.

    V3 (``X-Plivo-Signature-V3`` + ``-V3-Nonce``) is HMAC-SHA256 over the URL, the sorted POST
    fields and the nonce; the header may carry several comma-separated signatures (one per
    active auth token) and any one matching passes. Verification uses the Plivo SDK's
    ``validate_v3_signature``.

    V2 (``X-Plivo-Signature-V2`` + ``-V2-Nonce``) is HMAC-SHA256 over the URL without its
    query, plus the nonce; it covers neither the query nor the body, so a captured V2 header
    stays valid for any body. It is used only when the V3 headers are absent (a present but
    wrong V3 signature is final), and can be switched off with ``accept_v2=False``.
    """

    required_headers: tuple[str, ...] = (_V3_SIGNATURE, _V3_NONCE, _V2_SIGNATURE, _V2_NONCE)
    """Every header Plivo may sign with; either the V3 pair or the V2 pair suffices, so use
    ``has_signature_headers`` rather than requiring them all."""

    def __init__(
        self, auth_token: str, settings: UrlTrustSettings, *, accept_v2: bool = True
    ) -> None:
        self._auth_token = auth_token
        self._settings = settings
        self._accept_v2 = accept_v2
        self.header_sets: tuple[tuple[str, ...], ...] = (
            ((_V3_SIGNATURE, _V3_NONCE), (_V2_SIGNATURE, _V2_NONCE))
            if accept_v2
            else ((_V3_SIGNATURE, _V3_NONCE),)
        )
        """Header groups of which one must be complete for the request to be verifiable."""

    def callback_base(self, request: WebhookRequest) -> str:
        """The URL this request was signed for, without its query (rebuilt as ``verify`` does)."""
        return callback_base_url(request, self._settings)

    def adopt_public_url(self, url: str) -> None:
        """A tunnel's URL now plays the part of ``publicUrl`` in rebuilding the signed URL."""
        self._settings = attrs.evolve(self._settings, public_url=url)

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        """Whether the V3 pair (or, if accepted, the V2 pair) is present, before the body."""
        return signature_headers_present(self.header_sets, header_names)

    def verify(self, request: WebhookRequest) -> Verification:
        """Verify one request; never raises."""
        v3_signatures = request.header(_V3_SIGNATURE)
        v3_nonce = request.header(_V3_NONCE)
        v2_signature = request.header(_V2_SIGNATURE)
        v2_nonce = request.header(_V2_NONCE)
        if not (v3_signatures and v3_nonce) and not (self._accept_v2 and v2_signature and v2_nonce):
            return Verification(ok=False, reason="missing Plivo signature headers")
        if not self._auth_token:
            return Verification(ok=False, reason="no Plivo auth token configured")

        url = reconstruct_public_url(request, self._settings)
        if v3_signatures and v3_nonce:
            return self._verify_v3(request, url, v3_signatures, v3_nonce)
        return self._verify_v2(url, v2_signature or "", v2_nonce or "")

    def _verify_v3(
        self, request: WebhookRequest, url: str, signatures: str, nonce: str
    ) -> Verification:
        method = request.method.upper()
        if method not in _SIGNED_METHODS:
            return Verification(ok=False, reason="method not signed by Plivo", checked_urls=(url,))
        params: FormParams = {}
        if method == "POST" and request.body:
            if _media_type(request) != FORM_CONTENT_TYPE:
                return Verification(
                    ok=False, reason="body not covered by the signature", checked_urls=(url,)
                )
            try:
                params = _form_params(request.body.decode("utf-8"))
            except UnicodeDecodeError:
                return Verification(ok=False, reason="body is not UTF-8", checked_urls=(url,))
        # Check each signature alone so the one that matched, not the whole header (which
        # could be padded with junk), identifies the request for replay protection.
        for candidate in (part.strip() for part in signatures.split(",")):
            if not candidate:
                continue
            try:
                valid = validate_v3_signature(
                    method, url, nonce, self._auth_token, candidate, dict(params)
                )
            except Exception:
                valid = False
            if valid:
                return Verification(
                    ok=True,
                    reason="valid Plivo V3 signature",
                    checked_urls=(url,),
                    replay_key=f"plivo-v3:{nonce}:{candidate}",
                )
        return Verification(ok=False, reason="bad Plivo V3 signature", checked_urls=(url,))

    def _verify_v2(self, url: str, signature: str, nonce: str) -> Verification:
        try:
            valid = validate_signature(url, nonce, signature.strip(), self._auth_token)
        except Exception:
            valid = False
        if not valid:
            return Verification(ok=False, reason="bad Plivo V2 signature", checked_urls=(url,))
        return Verification(
            ok=True,
            reason="valid Plivo V2 signature",
            checked_urls=(url,),
            replay_key=f"plivo-v2:{nonce}:{signature.strip()}",
        )
