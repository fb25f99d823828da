"""The webhook door (SPEC §4), through the real Litestar app: carriers' documented vectors,
limits, replay, and what a failure leaves behind (nothing)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from tests.unit.test_carrier_signatures import (
    PLIVO_V3_NONCE,
    PLIVO_V3_PARAMS,
    PLIVO_V3_PATH,
    PLIVO_V3_POST_SIG,
    PLIVO_V3_TOKEN,
    TWILIO_PARAMS,
    TWILIO_SIG,
    TWILIO_TOKEN,
)
from voicecall.adapters.telephony.plivo import PlivoSignatureVerifier
from voicecall.adapters.telephony.telnyx import TelnyxSignatureVerifier
from voicecall.adapters.telephony.twilio import TwilioSignatureVerifier
from voicecall.config import AppConfig, url_trust_settings
from voicecall.entrypoints.webhook_app import create_webhook_app

from .conftest import EMPTY_TWIML, LIVE_SID, Door

FORM = {"content-type": "application/x-www-form-urlencoded"}


def twilio_verifier(token: str = TWILIO_TOKEN) -> Any:
    return lambda config: TwilioSignatureVerifier(token, url_trust_settings(config.voice))


def plivo_verifier(config: AppConfig) -> PlivoSignatureVerifier:
    return PlivoSignatureVerifier(PLIVO_V3_TOKEN, url_trust_settings(config.voice))


TELNYX_KEY = SigningKey.generate()
# The Telnyx verifier's clock is pinned: a signature made at NOW + 301 must not pass just because
# the wall clock was at .995 of a second when the test signed it (the old flake).
NOW = 1_700_000_000


def telnyx_verifier(config: AppConfig) -> TelnyxSignatureVerifier:
    import base64

    public = base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode()
    return TelnyxSignatureVerifier(public, clock_now=lambda: float(NOW))


async def open_door(tmp_path: Path, provider: str, factory: Any, **plugin: Any) -> Door:
    options = {k: plugin.pop(k) for k in list(plugin) if k in {"peer", "block"}}
    door_options = {
        k: plugin.pop(k) for k in list(plugin) if k.startswith("max_") or k.endswith("_s")
    }
    return await Door(tmp_path, provider, factory, plugin, **options, **door_options).start()


# --------------------------------------------------------------------------- documented vectors


TWILIO_PUBLIC = {"publicUrl": "https://mycompany.com/myapp.php", "serve": {"path": "/myapp.php"}}


async def test_twilio_sdk_vector_through_the_door(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    body = urlencode(TWILIO_PARAMS).encode()
    ok = await door.post("/myapp.php?foo=1&bar=2", body, {**FORM, "X-Twilio-Signature": TWILIO_SIG})
    assert (ok.status_code, ok.content) == (200, EMPTY_TWIML)
    assert len(door.carrier.applied) == 1
    await door.stop()


@pytest.mark.parametrize(
    ("path", "params", "signature"),
    [
        pytest.param(
            "/myapp.php?foo=1&bar=2", {**TWILIO_PARAMS, "Digits": "1235"}, TWILIO_SIG, id="param"
        ),
        pytest.param("/myapp.php?foo=1&bar=3", TWILIO_PARAMS, TWILIO_SIG, id="url-char"),
        pytest.param(
            "/myapp.php?foo=1&bar=2", {**TWILIO_PARAMS, "Extra": "1"}, TWILIO_SIG, id="added"
        ),
        pytest.param(
            "/myapp.php?foo=1&bar=2", TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B9=", id="sig"
        ),
        pytest.param("/myapp.php/?foo=1&bar=2", TWILIO_PARAMS, TWILIO_SIG, id="trailing-slash"),
    ],
)
async def test_twilio_any_change_is_refused(
    tmp_path: Path, path: str, params: dict[str, str], signature: str
) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    before = await door.log_size()
    refused = await door.post(
        path, urlencode(params).encode(), {**FORM, "X-Twilio-Signature": signature}
    )
    assert refused.status_code == 401
    assert door.carrier.applied == []
    assert await door.log_size() == before
    await door.stop()


async def test_twilio_port_variants_without_public_url(tmp_path: Path) -> None:
    # Twilio signed https://mycompany.com/myapp.php?... but the Host header carries :443.
    door = await open_door(tmp_path, "twilio", twilio_verifier(), serve={"path": "/myapp.php"})
    response = await door.post(
        "/myapp.php?foo=1&bar=2",
        urlencode(TWILIO_PARAMS).encode(),
        {**FORM, "X-Twilio-Signature": TWILIO_SIG, "Host": "mycompany.com:443"},
    )
    assert response.status_code == 200
    await door.stop()


PLIVO_PUBLIC = {
    "publicUrl": f"https://plivobin.non-prod.plivops.com{PLIVO_V3_PATH}",
    "serve": {"path": PLIVO_V3_PATH},
}


async def test_plivo_sdk_vector_through_the_door(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "plivo", plivo_verifier, **PLIVO_PUBLIC)
    headers = {
        **FORM,
        "X-Plivo-Signature-V3": f"bm90LWl0,{PLIVO_V3_POST_SIG}",  # any of several passes
        "X-Plivo-Signature-V3-Nonce": PLIVO_V3_NONCE,
    }
    ok = await door.post(PLIVO_V3_PATH, urlencode(PLIVO_V3_PARAMS).encode(), headers)
    assert ok.status_code == 200
    changed = urlencode({**PLIVO_V3_PARAMS, "CallStatus": "completed"}).encode()
    assert (await door.post(PLIVO_V3_PATH, changed, headers)).status_code == 401
    wrong_nonce = {**headers, "X-Plivo-Signature-V3-Nonce": "1" + PLIVO_V3_NONCE}
    assert (
        await door.post(PLIVO_V3_PATH, urlencode(PLIVO_V3_PARAMS).encode(), wrong_nonce)
    ).status_code == 401
    assert len(door.carrier.applied) == 1
    await door.stop()


def telnyx_headers(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    import base64

    stamp = str(NOW if timestamp is None else timestamp)
    signature = TELNYX_KEY.sign(stamp.encode() + b"|" + body).signature
    return {
        "content-type": "application/json",
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
    }


TELNYX_BODY = b'{"data":{"event_type":"call.answered","id":"e1","payload":{}}}'


@pytest.mark.parametrize(
    ("body", "skew", "status"),
    [
        pytest.param(TELNYX_BODY, 0, 200, id="valid"),
        pytest.param(TELNYX_BODY, -290, 200, id="old-but-in-window"),
        pytest.param(TELNYX_BODY, -300, 200, id="stale-edge"),
        pytest.param(TELNYX_BODY, 300, 200, id="future-edge"),
        pytest.param(TELNYX_BODY, -301, 401, id="stale"),
        pytest.param(TELNYX_BODY, 301, 401, id="future"),
    ],
)
async def test_telnyx_through_the_door(tmp_path: Path, body: bytes, skew: int, status: int) -> None:
    door = await open_door(tmp_path, "telnyx", telnyx_verifier)
    headers = telnyx_headers(body, NOW + skew)
    assert (await door.post("/voice/webhook", body, headers)).status_code == status
    assert len(door.carrier.applied) == (1 if status == 200 else 0)
    await door.stop()


async def test_telnyx_one_changed_body_byte_is_refused(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "telnyx", telnyx_verifier)
    headers = telnyx_headers(TELNYX_BODY)
    tampered = TELNYX_BODY.replace(b"answered", b"answerex")
    assert (await door.post("/voice/webhook", tampered, headers)).status_code == 401
    assert door.carrier.applied == []
    await door.stop()


# --------------------------------------------------------------------------- limits and routing


async def test_routing_methods_and_paths(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "mock", None)
    assert door.client is not None
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        assert (await door.client.request(method, "/voice/webhook")).status_code == 405
    assert (await door.post("/voice/other", b"{}")).status_code == 404
    assert (await door.post("/rpc", b"{}")).status_code == 404
    # A trailing slash is tolerated for routing.
    tolerated = await door.post("/voice/webhook/", b'{"events": []}')
    assert tolerated.status_code == 200
    await door.stop()


async def test_missing_signature_headers_refused_before_the_body_is_read(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), body_timeout_s=0.5)
    assert door.client is not None

    async def never_ending() -> Any:
        yield b"CallSid=CA1&"
        await asyncio.sleep(30)
        yield b"x"

    response = await door.client.post("/voice/webhook", content=never_ending(), headers=FORM)
    # 401, not the 408 that reading the stalled body would have produced.
    assert response.status_code == 401
    assert door.carrier.applied == []
    await door.stop()


async def test_stalled_body_is_408(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "mock", None, body_timeout_s=0.2)
    assert door.client is not None

    async def stalls() -> Any:
        yield b'{"event":'
        await asyncio.sleep(5)
        yield b"{}}"

    response = await door.client.post("/voice/webhook", content=stalls())
    assert response.status_code == 408
    await door.stop()


async def test_oversized_body_is_413(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "mock", None)
    assert door.client is not None
    big = b"x" * (1024 * 1024 + 1)
    assert (await door.post("/voice/webhook", big)).status_code == 413

    async def chunked() -> Any:
        for _ in range(17):
            yield b"y" * 65536

    assert (await door.client.post("/voice/webhook", content=chunked())).status_code == 413
    assert await door.log_size() == 0
    await door.stop()


async def test_per_peer_in_flight_cap_is_429(tmp_path: Path) -> None:
    block = asyncio.Event()
    door = await open_door(
        tmp_path, "twilio", twilio_verifier(), block=block, max_in_flight=2, **TWILIO_PUBLIC
    )
    validator = RequestValidator(TWILIO_TOKEN)

    def signed(n: int) -> tuple[bytes, dict[str, str]]:
        params = {"CallSid": f"CA{n}", "CallStatus": "ringing"}
        url = "https://mycompany.com/myapp.php"
        return urlencode(params).encode(), {
            **FORM,
            "X-Twilio-Signature": validator.compute_signature(url, params),
        }

    waiting = [asyncio.ensure_future(door.post("/myapp.php", *signed(n))) for n in range(2)]
    for _ in range(500):  # until both are parked inside the carrier, however slow the machine
        if door.carrier.entered == 2:
            break
        await asyncio.sleep(0.01)
    assert door.carrier.entered == 2
    third = await door.post("/myapp.php", *signed(3))
    assert third.status_code == 429
    block.set()
    assert [r.status_code for r in await asyncio.gather(*waiting)] == [200, 200]
    assert len(door.carrier.applied) == 2
    # The cap is per request in flight, not a ban: the peer may go on.
    assert (await door.post("/myapp.php", *signed(4))).status_code == 200
    await door.stop()


async def test_verified_but_malformed_is_400(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    params = {"Malformed": "1"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        "https://mycompany.com/myapp.php", params
    )
    response = await door.post(
        "/myapp.php", urlencode(params).encode(), {**FORM, "X-Twilio-Signature": signature}
    )
    assert response.status_code == 400
    assert b"CallStatus" in response.content
    await door.stop()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"event": 5}',
        b'{"event": {"type": "call.nope"}}',
        b'{"events": [{"type": "call.speech", "transcript": 1, "providerCallId": "p"}]}',
        b'{"event": {"type": "call.ended", "reason": "listening", "providerCallId": "p"}}',
        b"\xff\xfe",
    ],
)
async def test_mock_malformed_events_are_400_and_change_nothing(
    tmp_path: Path, body: bytes
) -> None:
    door = await open_door(tmp_path, "mock", None)
    response = await door.post("/voice/webhook", body, {"content-type": "application/json"})
    assert response.status_code == 400
    assert response.text
    assert await door.log_size() == 0
    await door.stop()


async def test_failed_verification_logs_one_line_with_the_urls_and_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    caplog.set_level(logging.INFO, logger="voicecall")
    await door.post(
        "/myapp.php?foo=1",
        urlencode(TWILIO_PARAMS).encode(),
        {**FORM, "X-Twilio-Signature": TWILIO_SIG},
    )
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1
    assert "https://mycompany.com/myapp.php?foo=1" in lines[0]
    assert TWILIO_TOKEN not in lines[0] and TWILIO_SIG not in lines[0]
    await door.stop()


def test_mock_on_a_public_bind_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from voicecall.config import parse_config

    config = parse_config(
        {"plugins": {"entries": {"voice-call": {"config": {"serve": {"bind": "0.0.0.0"}}}}}}, {}
    )
    caplog.set_level(logging.WARNING)
    create_webhook_app(object(), config, door=object())  # type: ignore[arg-type]
    assert any("UNSIGNED" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- replay


def speech(sequence: str = "1", text: str = "pay the invoice") -> tuple[bytes, dict[str, str]]:
    params = {"CallSid": LIVE_SID, "SpeechResult": text, "SequenceNumber": sequence}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        "https://mycompany.com/myapp.php", params
    )
    return urlencode(params).encode(), {**FORM, "X-Twilio-Signature": signature}


async def test_replayed_request_has_one_side_effect_even_across_a_restart(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    await door.live_call()
    body, headers = speech()
    answers = [await door.post("/myapp.php", body, headers) for _ in range(3)]
    assert {(a.status_code, a.content) for a in answers} == {(200, EMPTY_TWIML)}
    assert await door.transcript() == ["pay the invoice"]
    assert len(door.carrier.applied) == 1  # the replays were answered from the cache

    await door.restart()  # the replay cache is gone; the persisted dedupe keys are not
    again = await door.post("/myapp.php", body, headers)
    assert (again.status_code, again.content) == (200, EMPTY_TWIML)
    assert await door.transcript() == ["pay the invoice"]
    await door.stop()


async def test_concurrent_copies_of_one_request_apply_once(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    await door.live_call()
    body, headers = speech("7", "concurrent")
    answers = await asyncio.gather(*(door.post("/myapp.php", body, headers) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert await door.transcript() == ["concurrent"]
    assert len(door.carrier.applied) == 1
    await door.stop()


async def test_a_new_signed_request_is_not_a_replay(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    await door.live_call()
    for sequence, text in (("1", "one"), ("2", "two")):
        body, headers = speech(sequence, text)
        assert (await door.post("/myapp.php", body, headers)).status_code == 200
    assert await door.transcript() == ["one", "two"]
    await door.stop()


async def test_skip_signature_verification_lets_unsigned_through(tmp_path: Path) -> None:
    door = await open_door(
        tmp_path, "twilio", twilio_verifier(), skipSignatureVerification=True, **TWILIO_PUBLIC
    )
    await door.live_call()
    body, _ = speech()
    response = await door.post("/myapp.php", body, FORM)
    assert response.status_code == 200
    assert await door.transcript() == ["pay the invoice"]
    await door.stop()


# --------------------------------------------------------------------------- behind a proxy

PUBLIC = "https://voice.example.com/voice/webhook"


def signed_for(url: str, sequence: str) -> tuple[bytes, str]:
    params = {"CallSid": LIVE_SID, "SpeechResult": f"turn {sequence}", "SequenceNumber": sequence}
    return urlencode(params).encode(), RequestValidator(TWILIO_TOKEN).compute_signature(url, params)


FORWARDED = {"X-Forwarded-Host": "voice.example.com", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize(
    ("security", "extra", "headers", "status"),
    [
        pytest.param({}, {}, FORWARDED, 401, id="forwarding-off"),
        pytest.param(
            {"trustForwardingHeaders": True}, {}, FORWARDED, 401, id="trust-without-proxy-list"
        ),
        pytest.param(
            {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]},
            {},
            FORWARDED,
            200,
            id="trusted-proxy",
        ),
        pytest.param(
            {"allowedHosts": ["voice.example.com"], "trustedProxyIPs": ["127.0.0.1"]},
            {},
            FORWARDED,
            200,
            id="allowed-host-from-trusted-proxy",
        ),
        pytest.param(
            {"allowedHosts": ["voice.example.com"]},
            {},
            FORWARDED,
            401,
            id="allowed-host-untrusted-peer",
        ),
        pytest.param(
            {"allowedHosts": ["other.example.com"], "trustedProxyIPs": ["127.0.0.1"]},
            {},
            FORWARDED,
            401,
            id="host-not-allowed",
        ),
        pytest.param(
            {"trustForwardingHeaders": True, "trustedProxyIPs": ["10.0.0.1"]},
            {},
            FORWARDED,
            401,
            id="peer-not-the-proxy",
        ),
        pytest.param(
            {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]},
            {},
            {
                "X-Forwarded-Host": "voice.example.com, evil.example.net",
                "X-Forwarded-Proto": "https",
            },
            200,
            id="first-value-only",
        ),
        pytest.param(
            {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]},
            {},
            {"X-Original-Host": "voice.example.com"},
            200,
            id="x-original-host",
        ),
        pytest.param(
            {},
            {"publicUrl": PUBLIC},
            {"X-Forwarded-Host": "evil.example.net"},
            200,
            id="public-url-wins",
        ),
        pytest.param(
            {"trustForwardingHeaders": True},
            {"tunnel": {"provider": "ngrok", "allowNgrokFreeTierLoopbackBypass": True}},
            {"ngrok-forwarded-host": "voice.example.com", "X-Forwarded-Proto": "https"},
            200,
            id="ngrok-free-tier-bypass",
        ),
        pytest.param(
            {"trustForwardingHeaders": True},
            {"tunnel": {"provider": "ngrok"}},
            {"ngrok-forwarded-host": "voice.example.com", "X-Forwarded-Proto": "https"},
            401,
            id="ngrok-without-bypass",
        ),
    ],
)
async def test_behind_a_proxy(
    tmp_path: Path,
    security: dict[str, Any],
    extra: dict[str, Any],
    headers: dict[str, str],
    status: int,
) -> None:
    door = await open_door(
        tmp_path, "twilio", twilio_verifier(), peer="127.0.0.1", webhookSecurity=security, **extra
    )
    await door.live_call()
    body, signature = signed_for(PUBLIC, "1")
    response = await door.post(
        "/voice/webhook",
        body,
        {**FORM, **headers, "Host": "127.0.0.1:3334", "X-Twilio-Signature": signature},
    )
    assert response.status_code == status
    assert await door.transcript() == (["turn 1"] if status == 200 else [])
    await door.stop()


async def test_rfc8032_key_through_the_door(tmp_path: Path) -> None:
    # RFC 8032 test vector 1's key pair behind the door. Its own signature covers the empty
    # message, never a Telnyx payload ("{timestamp}|{body}"), so the request is signed with
    # the vector's secret key over the payload by an independent implementation (OpenSSL, via
    # cryptography) that reproduces vector 1 (tests/unit/test_carrier_signatures.py).
    import base64

    from tests.unit.test_carrier_signatures import (
        RFC8032_PUBLIC_B64,
        RFC8032_SIGNATURE,
        rfc8032_sign,
    )

    def verifier(config: AppConfig) -> TelnyxSignatureVerifier:
        return TelnyxSignatureVerifier(RFC8032_PUBLIC_B64, clock_now=lambda: float(NOW))

    door = await open_door(tmp_path, "telnyx", verifier)
    headers = {
        "content-type": "application/json",
        "telnyx-timestamp": str(NOW),
        "telnyx-signature-ed25519": base64.b64encode(
            rfc8032_sign(f"{NOW}|".encode() + TELNYX_BODY)
        ).decode(),
    }
    assert (await door.post("/voice/webhook", TELNYX_BODY, headers)).status_code == 200
    tampered = TELNYX_BODY.replace(b"e1", b"e2")
    assert (await door.post("/voice/webhook", tampered, headers)).status_code == 401
    vector = {**headers, "telnyx-signature-ed25519": base64.b64encode(RFC8032_SIGNATURE).decode()}
    assert (await door.post("/voice/webhook", b"", vector)).status_code == 401
    assert door.carrier.applied == [TELNYX_BODY]
    await door.stop()
