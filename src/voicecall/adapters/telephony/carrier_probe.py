"""Read-only questions to a carrier, for ``voicecall doctor``.

Two things only: "are these credentials accepted?" (one GET of the account or the application;
nothing is created or changed), and "what would the carrier's signature on this request be?"
(so the doctor can send our own door a request signed exactly as the carrier signs it).
The carrier's HTTP and SDKs stay here, in the adapters.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import urlencode

import attrs
import httpx

__all__ = [
    "AccountAnswer",
    "SignedRequest",
    "check_plivo_account",
    "check_telnyx_application",
    "check_twilio_account",
    "plivo_signed_request",
    "twilio_signed_request",
]

_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@attrs.frozen
class AccountAnswer:
    """What the carrier said to one read-only request.

    Attributes:
        ok: the credentials were accepted and the resource exists.
        url: the URL asked (no secret in it).
        status: the HTTP status, or None when the carrier could not be reached.
        detail: one line for the operator.
        date: the answer's ``Date`` header (the carrier's clock), when there was one.
    """

    ok: bool
    url: str
    status: int | None
    detail: str
    date: str | None = None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _ask(http: httpx.Client, url: str, authorization: str, what: str) -> AccountAnswer:
    try:
        answer = http.get(
            url,
            headers={"Authorization": authorization, "Accept": "application/json"},
            timeout=_TIMEOUT,
        )
    except httpx.HTTPError as err:
        return AccountAnswer(False, url, None, f"cannot reach {url}: {err or type(err).__name__}")
    date = answer.headers.get("date")
    if answer.status_code == 200:
        return AccountAnswer(True, url, 200, f"{what} accepted", date)
    if answer.status_code in (401, 403):
        why = "the credentials were refused"
    elif answer.status_code == 404:
        why = "not found (wrong account id / connection id, or wrong apiBaseUrl)"
    else:
        why = f"unexpected answer HTTP {answer.status_code}"
    return AccountAnswer(False, url, answer.status_code, f"{why} ({url})", date)


def check_twilio_account(
    http: httpx.Client, api_base_url: str, account_sid: str, auth_token: str
) -> AccountAnswer:
    """``GET /2010-04-01/Accounts/{sid}.json`` (https://www.twilio.com/docs/iam/api/account)."""
    url = f"{api_base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}.json"
    return _ask(http, url, _basic(account_sid, auth_token), "account")


def check_plivo_account(
    http: httpx.Client, api_base_url: str, auth_id: str, auth_token: str
) -> AccountAnswer:
    """``GET /v1/Account/{auth_id}/``: Plivo's account details."""
    url = f"{api_base_url.rstrip('/')}/v1/Account/{auth_id}/"
    return _ask(http, url, _basic(auth_id, auth_token), "account")


def check_telnyx_application(
    http: httpx.Client, api_base_url: str, api_key: str, connection_id: str
) -> AccountAnswer:
    """``GET /call_control_applications/{id}`` on the v2 base (developers.telnyx.com,
    "Retrieve a call control application"): the key works and the connection exists."""
    url = f"{api_base_url.rstrip('/')}/call_control_applications/{connection_id}"
    return _ask(http, url, f"Bearer {api_key}", "API key and call control application")


@attrs.frozen
class SignedRequest:
    """A form POST signed as the carrier would sign it."""

    headers: dict[str, str]
    body: bytes


def _form(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()


def twilio_signed_request(url: str, auth_token: str, params: dict[str, str]) -> SignedRequest:
    """``X-Twilio-Signature`` over the full URL (query included) and the sorted POST params,
    computed by the Twilio SDK's own validator."""
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(auth_token).compute_signature(url, params)
    return SignedRequest(
        {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": str(signature),
        },
        _form(params),
    )


def plivo_signed_request(url: str, auth_token: str, params: dict[str, str]) -> SignedRequest:
    """``X-Plivo-Signature-V3`` with a fresh nonce, computed by the Plivo SDK's own functions."""
    from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

    nonce = secrets.token_hex(10)
    base = construct_post_url(url, dict(params)).decode("utf-8")
    signature: bytes = get_signature_v3(auth_token.encode(), base, nonce.encode())
    return SignedRequest(
        {
            "content-type": "application/x-www-form-urlencoded",
            "x-plivo-signature-v3": signature.decode("ascii"),
            "x-plivo-signature-v3-nonce": nonce,
        },
        _form(params),
    )
