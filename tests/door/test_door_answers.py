"""What the door answers, exactly: each refusal's status, plain-text body and media type, and
the one log line an operator gets when a webhook could not be applied or was a replay.

Carriers log and sometimes show these answers; a refusal that changed its status or its words
would change what an operator reads in the carrier's console.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.unit.test_carrier_signatures import TWILIO_TOKEN
from voicecall.domain.errors import CallerError, TransientError

from .conftest import EMPTY_TWIML, Door
from .test_door import FORM, TWILIO_PUBLIC, open_door, speech, twilio_verifier

PLAIN = "text/plain; charset=utf-8"


def answer(response: httpx.Response) -> tuple[int, bytes, str]:
    return response.status_code, response.content, response.headers["content-type"]


def signed(params: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    from urllib.parse import urlencode

    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        "https://mycompany.com/myapp.php", params
    )
    return urlencode(params).encode(), {**FORM, "X-Twilio-Signature": signature}


async def twilio_door(tmp_path: Path, **options: Any) -> Door:
    return await open_door(tmp_path, "twilio", twilio_verifier(), **TWILIO_PUBLIC, **options)


async def test_missing_and_invalid_signatures(tmp_path: Path) -> None:
    door = await twilio_door(tmp_path)
    missing = await door.post("/myapp.php", b"CallSid=CA1", FORM)
    assert answer(missing) == (401, b"missing signature", PLAIN)
    forged = await door.post("/myapp.php", b"CallSid=CA1", {**FORM, "X-Twilio-Signature": "AAAA"})
    assert answer(forged) == (401, b"invalid signature", PLAIN)
    await door.stop()


async def test_the_in_flight_cap_answer(tmp_path: Path) -> None:
    door = await twilio_door(tmp_path, max_in_flight=0)
    body, headers = signed({"CallSid": "CA1"})
    assert answer(await door.post("/myapp.php", body, headers)) == (
        429,
        b"too many concurrent requests",
        PLAIN,
    )
    await door.stop()


async def test_body_refusals(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "mock", None, max_body=10, body_timeout_s=0.2)
    assert door.client is not None
    declared = await door.post("/voice/webhook", b"x" * 11)
    assert answer(declared) == (413, b"bad or oversized body", PLAIN)
    not_a_length = await door.post("/voice/webhook", b"", {"content-length": "abc"})
    assert answer(not_a_length) == (400, b"bad or oversized body", PLAIN)

    async def chunks(*parts: bytes) -> Any:
        for part in parts:
            yield part

    streamed = await door.client.post("/voice/webhook", content=chunks(b"x" * 6, b"y" * 5))
    assert answer(streamed) == (413, b"body too large", PLAIN)

    async def stalls() -> Any:
        yield b"{"
        await asyncio.sleep(5)

    stalled = await door.client.post("/voice/webhook", content=stalls())
    assert answer(stalled) == (408, b"body stalled", PLAIN)
    await door.stop()


@pytest.mark.parametrize(
    ("failure", "status", "body", "logged"),
    [
        pytest.param(
            CallerError("the webhook lacks CallStatus"),
            400,
            b"the webhook lacks CallStatus",
            None,
            id="caller-error-400",
        ),
        pytest.param(
            TransientError("store is busy"),
            503,
            b"temporarily unavailable",
            "webhook could not be applied: store is busy",
            id="transient-503",
        ),
        pytest.param(
            RuntimeError("a bug"),
            503,
            b"temporarily unavailable",
            "webhook handling failed",
            id="unexpected-503",
        ),
    ],
)
async def test_a_verified_webhook_that_cannot_be_applied(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    status: int,
    body: bytes,
    logged: str | None,
) -> None:
    door = await twilio_door(tmp_path)

    def fail(_: bytes) -> None:
        raise failure

    door.carrier.parse_body = fail
    caplog.set_level(logging.INFO, logger="voicecall")
    request_body, headers = signed({"CallSid": "CA1"})
    response = await door.post("/myapp.php", request_body, headers)
    assert answer(response) == (status, body, PLAIN)
    messages = [r.getMessage() for r in caplog.records]
    if logged is not None:
        assert logged in messages
    # A failed application is not cached as the answer: the carrier's retry is applied again.
    door.carrier.parse_body = None
    retried = await door.post("/myapp.php", request_body, headers)
    assert (retried.status_code, retried.content) == (200, EMPTY_TWIML)
    await door.stop()


async def test_a_replay_is_logged_once_as_a_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await twilio_door(tmp_path)
    await door.live_call()
    caplog.set_level(logging.INFO, logger="voicecall")
    body, headers = speech()
    await door.post("/myapp.php", body, headers)
    await door.post("/myapp.php", body, headers)
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("replayed twilio webhook answered from cache") == 1
    await door.stop()


async def test_concurrent_copies_share_a_failure(tmp_path: Path) -> None:
    # Copies of one request in flight together share its outcome, failures included.
    block = asyncio.Event()
    door = await twilio_door(tmp_path, block=block)

    def fail(_: bytes) -> None:
        raise TransientError("carrier down")

    door.carrier.parse_body = fail
    body, headers = signed({"CallSid": "CA9"})
    copies = [asyncio.ensure_future(door.post("/myapp.php", body, headers)) for _ in range(3)]
    for _ in range(1000):  # until the first copy is parked in the carrier
        if door.carrier.entered:
            break
        await asyncio.sleep(0.01)
    assert door.carrier.entered == 1
    block.set()
    answers = await asyncio.gather(*copies)
    assert [answer(a) for a in answers] == [(503, b"temporarily unavailable", PLAIN)] * 3
    assert door.carrier.entered == 1
    await door.stop()


async def test_the_in_flight_count_returns_to_nothing(tmp_path: Path) -> None:
    # Under a cap of one, requests made one after another are never refused: each one's
    # count is given back when it ends.
    door = await twilio_door(tmp_path, max_in_flight=1)
    body, headers = signed({"CallSid": "CA1"})
    for _ in range(3):
        assert (await door.post("/myapp.php", body, headers)).status_code == 200
    assert len(door.carrier.applied) == 1  # the same signed request twice more: replays
    await door.stop()


async def test_the_refusal_log_line_names_carrier_peer_reason_and_urls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await twilio_door(tmp_path)
    caplog.set_level(logging.INFO, logger="voicecall")
    await door.post("/myapp.php", b"CallSid=CA1", {**FORM, "X-Twilio-Signature": "AAAA"})
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert line == (
        "refused twilio webhook from 203.0.113.9: bad Twilio signature; "
        "URL(s) checked: https://mycompany.com/myapp.php"
    )
    await door.stop()


async def test_a_refusal_that_checked_no_url_says_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from .test_door import TELNYX_BODY, telnyx_headers, telnyx_verifier

    door = await open_door(tmp_path, "telnyx", telnyx_verifier)
    caplog.set_level(logging.INFO, logger="voicecall")
    headers = {**telnyx_headers(TELNYX_BODY), "telnyx-timestamp": "1"}
    assert (await door.post("/voice/webhook", TELNYX_BODY, headers)).status_code == 401
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert line == (
        "refused telnyx webhook from 203.0.113.9: telnyx-timestamp outside tolerance; "
        "URL(s) checked: none"
    )
    await door.stop()
