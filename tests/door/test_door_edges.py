"""The door at its edges (SPEC §4): what an operator reads when it refuses, requests from an
ASGI server that omits optional scope keys, unsigned carriers (no replay cache), failures shared
by concurrent copies, and a stalled body that loses its place to the next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from voicecall.adapters.telephony.carrier_probe import twilio_signed_request
from voicecall.domain.errors import TransientError
from voicecall.entrypoints.admission import Admission
from voicecall.entrypoints.webhook_app import WebhookDoor, create_webhook_app

from .conftest import EMPTY_TWIML, Door
from .test_door import FORM, TWILIO_PUBLIC, open_door, speech, twilio_verifier

PLAIN = "text/plain; charset=utf-8"
PUBLIC = "https://voice.example.com/voice/webhook"
TOKEN = "edge-token"


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------------------ self-test flag


@pytest.mark.parametrize(
    "query",
    [
        "probe=1&voicecallSelfTest=1",  # not the first parameter
        "voicecallSelfTest=1=2",  # a value that holds "="
        "a=b&voicecallSelfTest",  # no value at all
    ],
)
async def test_the_self_test_flag_is_found_anywhere_in_the_query(
    tmp_path: Path, query: str
) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(TOKEN), publicUrl=PUBLIC)
    signed = twilio_signed_request(f"{PUBLIC}?{query}", TOKEN, {"AccountSid": "AC" + "1" * 32})
    answer = await door.post(f"/voice/webhook?{query}", signed.body, signed.headers)
    assert (answer.status_code, answer.text) == (200, "voicecall self-test verified")
    assert door.carrier.entered == 0
    await door.stop()


# ------------------------------------------------------------------------------ refusal log


async def test_a_request_without_signature_headers_is_logged_once_naming_carrier_and_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    caplog.set_level(logging.INFO, logger="voicecall")
    for _ in range(3):
        assert (await door.post("/myapp.php", b"CallSid=CA1", FORM)).status_code == 401
    assert refusal_lines(caplog) == [
        "refused twilio webhook from 203.0.113.9: no signature headers"
    ]
    await door.stop()


async def test_bad_signatures_are_logged_per_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Behind a trusted proxy each forwarded client has its own line: one forger's refusals
    # cannot hide another client's.
    door = await open_door(
        tmp_path,
        "twilio",
        twilio_verifier(),
        peer="127.0.0.1",
        webhookSecurity={"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]},
        **TWILIO_PUBLIC,
    )
    caplog.set_level(logging.INFO, logger="voicecall")
    for client in ("198.51.100.7", "198.51.100.8", "198.51.100.7"):
        headers = {**FORM, "X-Twilio-Signature": "AAAA", "X-Forwarded-For": client}
        assert (await door.post("/myapp.php", b"CallSid=CA1", headers)).status_code == 401
    checked = "bad Twilio signature; URL(s) checked: https://mycompany.com/myapp.php"
    assert refusal_lines(caplog) == [
        f"refused twilio webhook from 198.51.100.7: {checked}",
        f"refused twilio webhook from 198.51.100.8: {checked}",
    ]
    await door.stop()


async def test_every_url_checked_is_named_comma_separated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No publicUrl: the URL as received, then its port variants (SPEC §4, Twilio).
    door = await open_door(tmp_path, "twilio", twilio_verifier(), serve={"path": "/myapp.php"})
    caplog.set_level(logging.INFO, logger="voicecall")
    headers = {**FORM, "X-Twilio-Signature": "AAAA", "Host": "mycompany.com:8443"}
    assert (await door.post("/myapp.php", b"CallSid=CA1", headers)).status_code == 401
    [line] = refusal_lines(caplog)
    prefix = "refused twilio webhook from 203.0.113.9: bad Twilio signature; URL(s) checked: "
    assert line.startswith(prefix)
    urls = line[len(prefix) :].split(", ")
    assert len(urls) >= 2
    assert all(url.startswith("http") and url.endswith("/myapp.php") for url in urls), urls
    await door.stop()


# ------------------------------------------------------------------------------ unsigned carriers


async def test_without_verification_each_request_is_applied_not_answered_from_a_cache(
    tmp_path: Path,
) -> None:
    door = await open_door(
        tmp_path, "twilio", twilio_verifier(), skipSignatureVerification=True, **TWILIO_PUBLIC
    )
    await door.live_call()
    for sequence, text in (("1", "first"), ("2", "second")):
        body, _ = speech(sequence, text)
        assert (await door.post("/myapp.php", body, FORM)).status_code == 200
    assert await door.transcript() == ["first", "second"]
    await door.stop()


async def test_without_verification_a_transient_failure_is_503(tmp_path: Path) -> None:
    door = await open_door(
        tmp_path, "twilio", twilio_verifier(), skipSignatureVerification=True, **TWILIO_PUBLIC
    )

    def fail(_: bytes) -> None:
        raise TransientError("store is busy")

    door.carrier.parse_body = fail
    response = await door.post("/myapp.php", b"CallSid=CA1", FORM)
    assert (response.status_code, response.content, response.headers["content-type"]) == (
        503,
        b"temporarily unavailable",
        PLAIN,
    )
    await door.stop()


# ------------------------------------------------------------------------------ concurrency


async def test_concurrent_copies_share_an_unexpected_failure(tmp_path: Path) -> None:
    block = asyncio.Event()
    door = await open_door(tmp_path, "twilio", twilio_verifier(), block=block, **TWILIO_PUBLIC)

    def fail(_: bytes) -> None:
        raise RuntimeError("a bug")

    door.carrier.parse_body = fail
    body, headers = speech()
    copies = [asyncio.ensure_future(door.post("/myapp.php", body, headers)) for _ in range(3)]
    for _ in range(1000):  # until the first copy is parked in the carrier
        if door.carrier.entered:
            break
        await asyncio.sleep(0.01)
    block.set()
    # A guard against a hang, not a timing assertion: every copy must get an answer.
    answers = await asyncio.wait_for(asyncio.gather(*copies), 30)
    assert [(a.status_code, a.content) for a in answers] == [(503, b"temporarily unavailable")] * 3
    assert door.carrier.entered == 1
    await door.stop()


# ------------------------------------------------------------------------------ raw ASGI scopes


async def asgi_post(app: Any, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One request through ``app`` with exactly ``scope`` (no client defaults added)."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, content


def http_scope(path: str, headers: dict[str, str], body: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 3334),
        "headers": [
            (b"host", b"127.0.0.1:3334"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
        **extra,
    }


@pytest.fixture
async def twilio_app(tmp_path: Path) -> AsyncIterator[tuple[Door, Any]]:
    door = await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC)
    assert door.service is not None
    await door.live_call()
    app = create_webhook_app(door.service, door.config, WebhookDoor(door.service, door.config))
    yield door, app
    await door.stop()


async def test_a_request_with_no_client_address_is_served(
    twilio_app: tuple[Door, Any],
) -> None:
    # ASGI makes "client" optional; a server behind a Unix socket gives none.
    door, app = twilio_app
    body, headers = speech()
    scope = http_scope("/myapp.php", headers, body, client=None, raw_path=b"/myapp.php")
    assert await asgi_post(app, scope, body) == (200, EMPTY_TWIML)
    assert await door.transcript() == ["pay the invoice"]


async def test_without_raw_path_the_signed_path_is_the_scope_path(
    twilio_app: tuple[Door, Any],
) -> None:
    # ASGI makes "raw_path" optional: the path then comes from "path".
    door, app = twilio_app
    body, headers = speech()
    scope = http_scope("/myapp.php", headers, body, client=("203.0.113.9", 1))
    assert await asgi_post(app, scope, body) == (200, EMPTY_TWIML)
    assert await door.transcript() == ["pay the invoice"]


# ------------------------------------------------------------------------------ stalled bodies


async def test_a_stalled_body_is_logged_as_timed_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await open_door(tmp_path, "mock", None, body_timeout_s=0.2)
    assert door.client is not None
    caplog.set_level(logging.INFO, logger="voicecall")
    release = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"{"
        await release.wait()

    response = await door.client.post("/voice/webhook", content=stalls())
    release.set()
    assert (response.status_code, response.content) == (408, b"body stalled")
    assert refusal_lines(caplog) == ["mock webhook from 203.0.113.9: body stalled and timed out"]
    await door.stop()


async def test_a_stalled_body_loses_its_place_to_the_next_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # One place per client and an hour's body deadline: only eviction can end the stalled read.
    admission = Admission(per_peer=1, stall_grace_s=0.05, queue_wait_s=30.0)
    door = await Door(
        tmp_path, "mock", None, {}, body_timeout_s=3600.0, admission=admission
    ).start()
    assert door.client is not None
    caplog.set_level(logging.INFO, logger="voicecall")
    release = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"{"
        await release.wait()

    stalled = asyncio.ensure_future(door.client.post("/voice/webhook", content=stalls()))
    for _ in range(1000):  # until the stalled request holds the one place
        if admission.in_flight:
            break
        await asyncio.sleep(0.01)
    try:
        # Guards against a hang, not timing assertions.
        newcomer = await asyncio.wait_for(door.post("/voice/webhook", b'{"events": []}'), 30)
        evicted = await asyncio.wait_for(stalled, 30)
    finally:
        release.set()
        stalled.cancel()
    assert newcomer.status_code == 200
    assert (evicted.status_code, evicted.content) == (408, b"body stalled")
    assert admission.evictions == 1
    assert refusal_lines(caplog) == [
        "mock webhook from 203.0.113.9: body stalled and lost its place to another request"
    ]
    await door.stop()


# ------------------------------------------------------------------------------ more refusal lines


async def test_a_request_with_no_client_address_is_logged_as_an_unknown_peer(
    twilio_app: tuple[Door, Any], caplog: pytest.LogCaptureFixture
) -> None:
    _, app = twilio_app
    caplog.set_level(logging.INFO, logger="voicecall")
    scope = http_scope("/myapp.php", FORM, b"CallSid=CA1", client=None)
    assert await asgi_post(app, scope, b"CallSid=CA1") == (401, b"missing signature")
    assert refusal_lines(caplog) == [
        "refused twilio webhook from unknown peer: no signature headers"
    ]


async def test_an_admission_refusal_is_logged_naming_the_client_and_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admission = Admission(per_peer=0, queue_wait_s=0.01)
    door = await Door(tmp_path, "mock", None, {}, admission=admission).start()
    caplog.set_level(logging.INFO, logger="voicecall")
    refused = await door.post("/voice/webhook", b'{"events": []}')
    assert (refused.status_code, refused.content) == (429, b"too many concurrent requests")
    assert refusal_lines(caplog) == [
        "webhook refused for 203.0.113.9: too many concurrent requests"
    ]
    await door.stop()


async def test_refusals_without_signatures_are_logged_per_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await open_door(
        tmp_path,
        "twilio",
        twilio_verifier(),
        peer="127.0.0.1",
        webhookSecurity={"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]},
        **TWILIO_PUBLIC,
    )
    caplog.set_level(logging.INFO, logger="voicecall")
    for client in ("198.51.100.7", "198.51.100.8", "198.51.100.7"):
        headers = {**FORM, "X-Forwarded-For": client}
        assert (await door.post("/myapp.php", b"CallSid=CA1", headers)).status_code == 401
    assert refusal_lines(caplog) == [
        "refused twilio webhook from 198.51.100.7: no signature headers",
        "refused twilio webhook from 198.51.100.8: no signature headers",
    ]
    await door.stop()


async def test_one_kind_of_refusal_does_not_hide_another_from_the_same_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await open_door(
        tmp_path, "twilio", twilio_verifier(), body_timeout_s=0.2, **TWILIO_PUBLIC
    )
    assert door.client is not None
    caplog.set_level(logging.INFO, logger="voicecall")
    assert (await door.post("/myapp.php", b"CallSid=CA1", FORM)).status_code == 401
    release = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"CallSid="
        await release.wait()

    headers = {**FORM, "X-Twilio-Signature": "AAAA"}
    stalled = await door.client.post("/myapp.php", content=stalls(), headers=headers)
    release.set()
    assert stalled.status_code == 408
    assert refusal_lines(caplog) == [
        "refused twilio webhook from 203.0.113.9: no signature headers",
        "twilio webhook from 203.0.113.9: body stalled and timed out",
    ]
    await door.stop()


async def test_admission_refusals_are_logged_per_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admission = Admission(per_peer=0, queue_wait_s=0.01)
    trust = {"webhookSecurity": {"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]}}
    door = await Door(tmp_path, "mock", None, trust, peer="127.0.0.1", admission=admission).start()
    caplog.set_level(logging.INFO, logger="voicecall")
    for client in ("198.51.100.7", "198.51.100.8", "198.51.100.7"):
        answer = await door.post("/voice/webhook", b"{}", {"X-Forwarded-For": client})
        assert answer.status_code == 429
    assert refusal_lines(caplog) == [
        "webhook refused for 198.51.100.7: too many concurrent requests",
        "webhook refused for 198.51.100.8: too many concurrent requests",
    ]
    await door.stop()
