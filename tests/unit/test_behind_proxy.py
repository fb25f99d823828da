"""Inbound-only behind a reverse proxy (no publicUrl, no tunnel): the answer documents send the
carrier back to the URL it signed, rebuilt from the forwarding headers the operator trusts.

The requests are signed for real (Twilio's SDK algorithm, Plivo V3 as the simulator makes it)
over the public URL, and arrive as the proxy delivers them: Host is the listener's own address.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from voicecall.adapters.telephony.plivo import PlivoTelephony
from voicecall.adapters.telephony.twilio import TwilioTelephony
from voicecall.config import parse_config
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.clock import FakeClock
from voicecall.testing.plivo_sim import sign_v3

from .conftest import ALLOWED, make_rig

PUBLIC = "https://voice.example.com/voice/webhook"
TOKEN = "proxy-test-token"
OUR_NUMBER = "+15550100000"


def config(provider: str, security: dict[str, Any]) -> Any:
    plugin: dict[str, Any] = {
        "enabled": True,
        "provider": provider,
        "fromNumber": OUR_NUMBER,
        "inboundPolicy": "allowlist",
        "allowFrom": [ALLOWED],
        "webhookSecurity": security,
        "twilio": {"accountSid": "AC" + "2" * 32, "authToken": TOKEN},
        "plivo": {"authId": "MAXXXXXXXXXXXXXXXXXX", "authToken": TOKEN},
    }
    return parse_config({"plugins": {"entries": {"voice-call": {"config": plugin}}}}, env={})


def delivered(
    fields: dict[str, str], signature: list[tuple[str, str]], peer: str
) -> WebhookRequest:
    """The request as the proxy hands it on: our listener's Host, the public one forwarded."""
    return WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query="",
        headers=(
            ("host", "127.0.0.1:3334"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "voice.example.com"),
            ("x-forwarded-for", "203.0.113.7"),
            *signature,
        ),
        body=urlencode(fields).encode(),
        peer=peer,
    )


def twilio_ring(peer: str) -> WebhookRequest:
    fields = {
        "AccountSid": "AC" + "2" * 32,
        "CallSid": "CA" + "3" * 32,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": ALLOWED,
        "To": OUR_NUMBER,
    }
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC, fields)
    return delivered(fields, [("x-twilio-signature", signature)], peer)


def plivo_ring(peer: str) -> WebhookRequest:
    fields = {
        "CallUUID": "1a2b3c4d-0000-4000-8000-000000000009",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "From": ALLOWED.lstrip("+"),
        "To": OUR_NUMBER.lstrip("+"),
        "Event": "StartApp",
    }
    nonce = "12345678901234567890"
    signature = sign_v3(TOKEN, PUBLIC, fields, nonce)
    headers = [("x-plivo-signature-v3", signature), ("x-plivo-signature-v3-nonce", nonce)]
    return delivered(fields, headers, peer)


CARRIERS = {
    "twilio": (TwilioTelephony, twilio_ring),
    "plivo": (PlivoTelephony, plivo_ring),
}
TRUSTED = {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]}


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
@pytest.mark.parametrize(
    ("security", "peer", "verified"),
    [
        (TRUSTED, "127.0.0.1", True),
        (
            {"allowedHosts": ["voice.example.com"], "trustedProxyIPs": ["127.0.0.1"]},
            "127.0.0.1",
            True,
        ),
        (
            {"allowedHosts": ["other.example.com"], "trustedProxyIPs": ["127.0.0.1"]},
            "127.0.0.1",
            False,
        ),
        (TRUSTED, "10.9.9.9", False),  # forwarding headers from a peer that is not the proxy
        ({"trustForwardingHeaders": True}, "127.0.0.1", False),  # no trusted proxy named
        ({}, "127.0.0.1", False),  # nothing trusted: the URL is rebuilt from Host
    ],
)
async def test_answers_call_back_to_the_url_that_was_signed(
    carrier: str, security: dict[str, Any], peer: str, verified: bool
) -> None:
    kind, ring = CARRIERS[carrier]
    http = httpx.AsyncClient()
    clock = FakeClock()
    adapter = kind.from_config(config(carrier, security), clock, http)  # type: ignore[attr-defined]
    rig = await make_rig(carrier=adapter, clock=clock)
    try:
        request = ring(peer)
        verification = adapter.verify_webhook(request)
        assert verification.ok is verified, verification.reason
        if not verified:
            return
        answer = await rig.service.handle_webhook(request)
        document = answer.body.decode()
        assert answer.status == 200
        assert f"{PUBLIC}?" in document.replace("&amp;", "&"), document
        assert "127.0.0.1" not in document and "localhost" not in document
        [call] = await rig.service.list_calls()
        assert call.is_live and call.from_number == ALLOWED
    finally:
        await rig.service.stop()
        await http.aclose()
