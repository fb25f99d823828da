"""The door's answer to ``voicecall doctor``'s signed self-test (``?voicecallSelfTest``).

A verified request carrying the flag is answered 200 and applied to nothing: no webhook parsed,
no replay entry, nothing in the event log. The flag never lets an unverified request through,
and with signature checks off it does not short-circuit anything.
"""

from __future__ import annotations

from pathlib import Path

from tests.door.test_door import FORM, open_door, plivo_verifier, twilio_verifier
from voicecall.adapters.telephony.carrier_probe import (
    plivo_signed_request,
    twilio_signed_request,
)

PUBLIC = "https://voice.example.com/voice/webhook"
TOKEN = "self-test-token"


async def test_a_signed_twilio_self_test_is_answered_and_applied_to_nothing(
    tmp_path: Path,
) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(TOKEN), publicUrl=PUBLIC)
    before = await door.log_size()
    url = f"{PUBLIC}?voicecallSelfTest=1"
    signed = twilio_signed_request(url, TOKEN, {"AccountSid": "AC" + "1" * 32})

    for _ in range(2):  # twice: the second is not a "replay" of the first either
        answer = await door.post("/voice/webhook?voicecallSelfTest=1", signed.body, signed.headers)
        assert (answer.status_code, answer.text) == (200, "voicecall self-test verified")

    assert door.carrier.applied == []
    assert door.carrier.entered == 0
    assert await door.log_size() == before
    await door.stop()


async def test_a_signed_plivo_self_test_is_answered_and_applied_to_nothing(
    tmp_path: Path,
) -> None:
    from tests.unit.test_carrier_signatures import PLIVO_V3_TOKEN

    door = await open_door(tmp_path, "plivo", plivo_verifier, publicUrl=PUBLIC)
    url = f"{PUBLIC}?voicecallSelfTest=1"
    signed = plivo_signed_request(url, PLIVO_V3_TOKEN, {"VoicecallSelfTest": "1"})

    answer = await door.post("/voice/webhook?voicecallSelfTest=1", signed.body, signed.headers)

    assert (answer.status_code, answer.text) == (200, "voicecall self-test verified")
    assert door.carrier.entered == 0
    await door.stop()


async def test_the_flag_does_not_let_a_bad_signature_through(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(TOKEN), publicUrl=PUBLIC)
    # Signed for another URL (what a wrong publicUrl looks like from the door).
    signed = twilio_signed_request(
        "https://elsewhere.example.com/voice/webhook?voicecallSelfTest=1", TOKEN, {"A": "1"}
    )
    answer = await door.post("/voice/webhook?voicecallSelfTest=1", signed.body, signed.headers)
    assert (answer.status_code, answer.text) == (401, "invalid signature")

    unsigned = await door.post("/voice/webhook?voicecallSelfTest=1", b"A=1", FORM)
    assert (unsigned.status_code, unsigned.text) == (401, "missing signature")
    assert door.carrier.entered == 0
    await door.stop()


async def test_a_flag_lookalike_is_an_ordinary_webhook(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "twilio", twilio_verifier(TOKEN), publicUrl=PUBLIC)
    url = f"{PUBLIC}?voicecallSelfTestX=1"
    signed = twilio_signed_request(url, TOKEN, {"AccountSid": "AC" + "1" * 32})
    answer = await door.post("/voice/webhook?voicecallSelfTestX=1", signed.body, signed.headers)
    assert answer.status_code == 200 and answer.text != "voicecall self-test verified"
    assert door.carrier.entered == 1
    await door.stop()
