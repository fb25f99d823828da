"""How we check Twilio's webhook signature (``X-Twilio-Signature``, SPEC §4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import parse_qs, parse_qsl

import attrs
from twilio.request_validator import RequestValidator

from voicecall.domain.signed_url import (
    UrlTrustSettings,
    Verification,
    callback_base_url,
    reconstruct_public_url,
    signature_headers_present,
    twilio_url_variants,
)
from voicecall.domain.webhook import WebhookRequest

__all__ = ["FORM_CONTENT_TYPE", "TwilioSignatureVerifier"]

_SIGNATURE_HEADER: Final = "x-twilio-signature"
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"


class _FormParams(dict[str, list[str]]):
    """Form fields with repeats kept; the SDK's validator reads them through ``getlist``."""

    def getlist(self, key: str) -> list[str]:
        return list(self[key])


def _form_params(body: str) -> _FormParams:
    params = _FormParams()
    # Twilio signs empty fields too (e.g. "CallerCity="), so blanks must be kept.
    for key, value in parse_qsl(body, keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


def _media_type(request: WebhookRequest) -> str:
    return (request.header("content-type") or "").split(";", 1)[0].strip().lower()


class TwilioSignatureVerifier:
    """Checks ``X-Twilio-Signature`` with the Twilio SDK's ``RequestValidator``.

    The signature is HMAC-SHA1(authToken, URL + sorted POST fields). The URL is rebuilt under
    the operator's trust settings and tried with the port variants of
    ``twilio_url_variants``. A JSON body is covered by the ``bodySHA256`` query parameter, as
    the SDK handles it; any other body that the signature would not cover is refused.
    """

    required_headers: tuple[str, ...] = (_SIGNATURE_HEADER,)
    header_sets: tuple[tuple[str, ...], ...] = (required_headers,)
    """Header groups of which one must be complete for the request to be verifiable."""

    def __init__(self, auth_token: str, settings: UrlTrustSettings) -> None:
        self._configured = bool(auth_token)
        self._validator = RequestValidator(auth_token)
        self._settings = settings

    def callback_base(self, request: WebhookRequest) -> str:
        """The URL this request was signed for, without its query (rebuilt as ``verify`` does)."""
        return callback_base_url(request, self._settings)

    def adopt_public_url(self, url: str) -> None:
        """A tunnel's URL now plays the part of ``publicUrl`` in rebuilding the signed URL."""
        self._settings = attrs.evolve(self._settings, public_url=url)

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        """Whether the headers needed to verify at all are present (checked before the body)."""
        return signature_headers_present(self.header_sets, header_names)

    def verify(self, request: WebhookRequest) -> Verification:
        """Verify one request; never raises."""
        signature = request.header(_SIGNATURE_HEADER)
        if not signature:
            return Verification(ok=False, reason="missing X-Twilio-Signature")
        if not self._configured:
            return Verification(ok=False, reason="no Twilio auth token configured")

        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return Verification(ok=False, reason="body is not UTF-8")
        params: _FormParams | str
        if "bodySHA256" in parse_qs(request.query):
            params = body  # the SDK checks the body against the signed hash
        elif _media_type(request) == FORM_CONTENT_TYPE:
            params = _form_params(body)
        elif not request.body:
            params = _FormParams()
        else:
            return Verification(ok=False, reason="body not covered by the signature")

        url = reconstruct_public_url(request, self._settings)
        if self._valid(url, params, signature):
            # The common case; the port variants are worked out only when it fails.
            return _accepted((url,), signature)
        candidates = twilio_url_variants(url, request, self._settings)
        for candidate in candidates[1:]:
            if self._valid(candidate, params, signature):
                return _accepted(candidates, signature)
        return Verification(ok=False, reason="bad Twilio signature", checked_urls=candidates)

    def _valid(self, url: str, params: _FormParams | str, signature: str) -> bool:
        try:
            return bool(self._validator.validate(url, params, signature))
        except Exception:  # the SDK must never turn a hostile request into a 500
            return False


def _accepted(checked: tuple[str, ...], signature: str) -> Verification:
    return Verification(
        ok=True,
        reason="valid Twilio signature",
        checked_urls=checked,
        replay_key=f"twilio:{signature}",
    )
