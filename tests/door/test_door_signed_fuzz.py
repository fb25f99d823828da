"""A fuzz that reaches the door's verifier, not just its router.

Every example is a POST to the real webhook path, with the carrier's signature headers and a
signature that is genuine for the body, and a body the carrier's parser must refuse. The door
must verify it (the verifier is counted), hand it to the parser, answer 400, never a 5xx or
a 401, and change nothing: no call event, no transcript line.

The parser behind the door is the rig's stand-in (``tests/door/conftest.py``): the form
carriers refuse a ``Malformed`` field, Telnyx refuses a body that is not a Telnyx event. What is
under test is the door's handling around it (verification, the replay path, the error mapping),
which is the same whichever carrier parses.

Each example gets a fresh door (its own store, replay cache and in-flight counter), so one
example's replay entry or refusal cannot shape the next.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from tests.unit.test_carrier_signatures import PLIVO_V3_TOKEN, TWILIO_TOKEN
from voicecall.adapters.telephony.plivo import PlivoSignatureVerifier
from voicecall.adapters.telephony.telnyx import TelnyxSignatureVerifier
from voicecall.adapters.telephony.twilio import TwilioSignatureVerifier
from voicecall.config import AppConfig, url_trust_settings
from voicecall.domain.errors import CallerError
from voicecall.domain.signed_url import Verification
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.plivo_sim import sign_v3

from .conftest import Door
from .test_door import NOW, TELNYX_KEY

PUBLIC = "https://voice.example.com/voice/webhook"
PLUGIN = {"publicUrl": PUBLIC, "serve": {"path": "/voice/webhook"}}
FORM = "application/x-www-form-urlencoded"


class CountingVerifier:
    """The carrier's real verifier, counting how many requests reach it and pass."""

    calls = 0
    passed = 0

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def has_signature_headers(self, header_names: Any) -> bool:
        return bool(self.inner.has_signature_headers(header_names))

    def verify(self, request: WebhookRequest) -> Verification:
        verdict: Verification = self.inner.verify(request)
        CountingVerifier.calls += 1
        CountingVerifier.passed += verdict.ok
        return verdict


def twilio(config: AppConfig) -> CountingVerifier:
    return CountingVerifier(TwilioSignatureVerifier(TWILIO_TOKEN, url_trust_settings(config.voice)))


def plivo(config: AppConfig) -> CountingVerifier:
    return CountingVerifier(
        PlivoSignatureVerifier(PLIVO_V3_TOKEN, url_trust_settings(config.voice))
    )


def telnyx(config: AppConfig) -> CountingVerifier:
    public = base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode()
    return CountingVerifier(TelnyxSignatureVerifier(public, clock_now=lambda: float(NOW)))


# ------------------------------------------------------------------ signed, malformed bodies

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
FORM_FIELDS = st.dictionaries(
    st.sampled_from(["CallSid", "CallStatus", "From", "To", "Digits", "SequenceNumber", "X"]),
    TEXT,
    max_size=5,
).map(lambda fields: {**fields, "Malformed": "1"})  # the stand-in parser refuses these


def twilio_signed(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC, fields)
    return urlencode(fields).encode(), {"content-type": FORM, "X-Twilio-Signature": signature}


def plivo_signed(fields: dict[str, str], nonce: str) -> tuple[bytes, dict[str, str]]:
    return urlencode(fields).encode(), {
        "content-type": FORM,
        "X-Plivo-Signature-V3": sign_v3(PLIVO_V3_TOKEN, PUBLIC, fields, nonce),
        "X-Plivo-Signature-V3-Nonce": nonce,
    }


def telnyx_signed(body: bytes) -> tuple[bytes, dict[str, str]]:
    signature = TELNYX_KEY.sign(f"{NOW}|".encode() + body).signature
    return body, {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": str(NOW),
    }


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
TELNYX_BODIES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(TEXT, JSON_VALUES, max_size=3).map(
        lambda payload: json.dumps({"data": payload}).encode()
    ),
).filter(lambda body: b"event_type" not in body)


def telnyx_parse(body: bytes) -> None:
    """The stand-in Telnyx parser: anything that is not ``{"data": {"event_type": …}}``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise CallerError("the body is not JSON") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("event_type"), str):
        raise CallerError("not a Telnyx event")


CARRIERS: dict[str, tuple[Callable[[AppConfig], CountingVerifier], st.SearchStrategy[Any]]] = {
    "twilio": (twilio, FORM_FIELDS.map(twilio_signed)),
    "plivo": (
        plivo,
        st.builds(plivo_signed, FORM_FIELDS, st.from_regex(r"[0-9]{6,20}", fullmatch=True)),
    ),
    "telnyx": (telnyx, TELNYX_BODIES.map(telnyx_signed)),
}


async def one_request(
    provider: str, factory: Any, body: bytes, headers: dict[str, str]
) -> tuple[int, int, list[bytes], list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        door = await Door(Path(tmp), provider, factory, dict(PLUGIN)).start()
        try:
            if provider == "telnyx":
                door.carrier.parse_body = telnyx_parse
            await door.live_call()
            before = await door.log_size()
            response = await door.post("/voice/webhook", body, headers)
            return (
                response.status_code,
                await door.log_size() - before,
                list(door.carrier.applied),
                await door.transcript(),
            )
        finally:
            await door.stop()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("provider", sorted(CARRIERS))
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_signed_but_malformed_bodies_are_400_and_change_nothing(
    provider: str, data: st.DataObject
) -> None:
    factory, requests = CARRIERS[provider]
    body, headers = data.draw(requests, label="request")
    calls, passed = CountingVerifier.calls, CountingVerifier.passed
    status, new_events, applied, transcript = asyncio.run(
        one_request(provider, factory, body, headers)
    )
    reached = CountingVerifier.calls - calls
    # `pytest --hypothesis-show-statistics` shows these; every example must reach the
    # verifier, far above the half the issue asks for (the router fuzz reaches it rarely).
    event(f"reached the verifier: {reached == 1}")
    event(f"status {status}")
    assert reached == 1, "the request never reached the signature check"
    assert CountingVerifier.passed - passed == 1, "a genuinely signed request was refused"
    assert status == 400, (status, body, headers)
    assert applied == [body]  # verified, then handed to the parser exactly once
    assert new_events == 0
    assert transcript == []


def test_the_stand_in_parsers_refuse_what_the_fuzz_sends() -> None:
    # The fuzz is only as good as its bodies being malformed: check the stand-ins.
    form = parse_qs(urlencode({"CallSid": "CA1", "Malformed": "1"}))
    assert "Malformed" in form
    with pytest.raises(CallerError):
        telnyx_parse(b"[]")
    with pytest.raises(CallerError):
        telnyx_parse(b'{"data": {"event_type": 5}}')
    telnyx_parse(b'{"data": {"event_type": "call.answered"}}')
