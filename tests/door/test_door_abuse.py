"""One abusive client cannot starve the carrier (issue 13).

The probe: 40 connections from the carrier's own address (every request behind ngrok,
Tailscale or a proxy shares it) send ``X-Twilio-Signature: junk`` and a body that never comes.
Before, they held the 32-per-peer cap and every real signed webhook got 429 for 30 s. Now a
request still reading its body after the stall grace loses its place to the next one, and a
request beyond the cap waits briefly in a bounded queue instead of being refused.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from tests.unit.test_carrier_signatures import TWILIO_TOKEN
from voicecall.entrypoints.admission import Admission
from voicecall.entrypoints.refusal_log import RefusalLog

from .conftest import Door
from .test_door import FORM, twilio_verifier

PUBLIC = "https://voice.example.com/voice/webhook"


def signed(n: int, headers: dict[str, str] | None = None) -> tuple[bytes, dict[str, str]]:
    params = {"CallSid": f"CA{n}", "CallStatus": "ringing"}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC, params)
    return urlencode(params).encode(), {
        **FORM,
        **(headers or {}),
        "X-Twilio-Signature": signature,
    }


async def never_ending() -> Any:
    yield b"CallSid=CA"
    await asyncio.sleep(3600)
    yield b"x"


async def _open(
    tmp_path: Path, admission: Admission, peer: str = "203.0.113.9", **plugin: Any
) -> Door:
    return await Door(
        tmp_path,
        "twilio",
        twilio_verifier(),
        {"publicUrl": PUBLIC, **plugin},
        peer=peer,
        admission=admission,
        body_timeout_s=3600.0,  # only eviction can free a stalled request's place here
    ).start()


async def _stall(door: Door, count: int, headers: dict[str, str]) -> list[asyncio.Future[Any]]:
    assert door.client is not None
    client = door.client
    stalled = [
        asyncio.ensure_future(
            client.post("/voice/webhook", content=never_ending(), headers=headers)
        )
        for _ in range(count)
    ]
    return stalled


async def _until(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_stalled_junk_from_the_carriers_address_cannot_starve_a_signed_request(
    tmp_path: Path,
) -> None:
    admission = Admission(per_peer=32, stall_grace_s=0.05, queue_wait_s=30.0)
    door = await _open(tmp_path, admission)
    stalled = await _stall(door, 40, {**FORM, "X-Twilio-Signature": "junk"})
    await _until(lambda: admission.in_flight == 32)  # the cap is full of stalled requests
    answers = [await door.post("/voice/webhook", *signed(n)) for n in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert len(door.carrier.applied) == 5
    assert admission.evictions >= 5
    # The stalled requests were answered 408 when they lost their place, not left hanging.
    await _until(lambda: sum(f.done() for f in stalled) >= 5)
    assert {f.result().status_code for f in stalled if f.done()} == {408}
    for future in stalled:
        future.cancel()
    await asyncio.gather(*stalled, return_exceptions=True)
    await door.stop()


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_places(
    tmp_path: Path,
) -> None:
    admission = Admission(per_peer=4, stall_grace_s=3600.0, queue_wait_s=0.2)
    door = await _open(
        tmp_path,
        admission,
        peer="127.0.0.1",
        webhookSecurity={"trustForwardingHeaders": True, "trustedProxyIPs": ["127.0.0.1"]},
    )
    # The attacker (198.51.100.7, as our proxy saw it) forges an extra hop on the left.
    attacker = {**FORM, "X-Twilio-Signature": "junk", "X-Forwarded-For": "1.2.3.4, 198.51.100.7"}
    stalled = await _stall(door, 4, attacker)
    await _until(lambda: admission.in_flight == 4)
    # Its own fifth request waits and is refused; it cannot be evicted within the grace.
    assert door.client is not None
    more = await door.client.post("/voice/webhook", content=never_ending(), headers=attacker)
    assert more.status_code == 429
    # The carrier, behind the same proxy, is another client: straight in.
    carrier = await door.post("/voice/webhook", *signed(1, {"X-Forwarded-For": "54.172.60.1"}))
    assert carrier.status_code == 200
    for future in stalled:
        future.cancel()
    await asyncio.gather(*stalled, return_exceptions=True)
    await door.stop()


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(tmp_path: Path) -> None:
    admission = Admission(per_peer=2, stall_grace_s=3600.0, queue_wait_s=0.2)
    door = await _open(tmp_path, admission)  # no trusted forwarding
    stalled = await _stall(
        door, 2, {**FORM, "X-Twilio-Signature": "junk", "X-Forwarded-For": "198.51.100.7"}
    )
    await _until(lambda: admission.in_flight == 2)
    # A different X-Forwarded-For does not buy a new bucket: the TCP peer is the client.
    refused = await door.post("/voice/webhook", *signed(1, {"X-Forwarded-For": "54.172.60.1"}))
    assert refused.status_code == 429
    for future in stalled:
        future.cancel()
    await asyncio.gather(*stalled, return_exceptions=True)
    await door.stop()


async def test_forged_requests_log_one_line_per_client_per_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    door = await _open(tmp_path, Admission())
    caplog.set_level(logging.INFO, logger="voicecall")
    for n in range(50):
        body, headers = signed(n)
        response = await door.post("/voice/webhook", body, {**headers, "X-Twilio-Signature": "x"})
        assert response.status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "203.0.113.9" in lines[0]
    await door.stop()


async def test_an_unsigned_probe_does_not_hide_bad_signatures_from_the_same_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `voicecall doctor` (or a scanner) sends an unsigned request; the carrier's own requests,
    # from the same proxy, then fail verification: the operator must see that at once.
    door = await _open(tmp_path, Admission())
    caplog.set_level(logging.INFO, logger="voicecall")
    body, headers = signed(0)
    unsigned = {k: v for k, v in headers.items() if k != "X-Twilio-Signature"}
    assert (await door.post("/voice/webhook", body, unsigned)).status_code == 401
    for n in range(1, 4):
        body, headers = signed(n)
        forged = {**headers, "X-Twilio-Signature": "x"}
        assert (await door.post("/voice/webhook", body, forged)).status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2
    assert "no signature headers" in lines[0] and "URL(s) checked" in lines[1]
    await door.stop()


def test_refusal_log_counts_what_it_did_not_write(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog(logging.getLogger("voicecall.test"), lambda: now[0], interval_s=60)
    caplog.set_level(logging.WARNING, logger="voicecall.test")
    for _ in range(100):
        refusals.refused("203.0.113.9", "refused a webhook from %s", "203.0.113.9")
    refusals.refused("198.51.100.7", "refused a webhook from %s", "198.51.100.7")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a webhook from 203.0.113.9",
        "refused a webhook from 198.51.100.7",
    ]
    now[0] = 61.0
    refusals.refused("203.0.113.9", "refused a webhook from %s", "203.0.113.9")
    assert caplog.records[-1].getMessage() == (
        "refused a webhook from 203.0.113.9 (and 99 more from 203.0.113.9 in the last 60 s)"
    )


def test_refusal_log_counts_each_kind_apart(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    refusals = RefusalLog(logging.getLogger("voicecall.test"), lambda: now[0], interval_s=60)
    caplog.set_level(logging.WARNING, logger="voicecall.test")
    refusals.refused("203.0.113.9", "unsigned from %s", "203.0.113.9", kind="unsigned")
    for _ in range(5):
        refusals.refused("203.0.113.9", "bad signature from %s", "203.0.113.9", kind="signature")
    refusals.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "unsigned from 203.0.113.9",
        "bad signature from 203.0.113.9",
        "4 more refused webhook request(s) from 203.0.113.9 not logged one by one",
    ]
