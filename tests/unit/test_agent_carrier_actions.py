"""The agent's carrier actions on the wire (issue 10): transfer and DTMF as each carrier
documents them, faked with respx; the Plivo transfer's ``<Dial>`` document as served."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from voicecall.adapters.telephony.twilio import TwilioTelephony
from voicecall.adapters.telephony.twilio.verify import TwilioSignatureVerifier
from voicecall.domain.errors import CarrierRejected
from voicecall.domain.signed_url import UrlTrustSettings
from voicecall.testing.clock import FakeClock

from . import test_plivo_wire as plivo_wire
from . import test_telnyx_wire as telnyx_wire
from . import test_twilio_wire as twilio_wire

TARGET = "+15550001111"


def twilio_adapter() -> tuple[TwilioTelephony, httpx.AsyncClient]:
    http = httpx.AsyncClient()
    return (
        TwilioTelephony(
            account_sid=twilio_wire.SID,
            auth_token=twilio_wire.TOKEN,
            api_base_url=twilio_wire.BASE,
            public_url=twilio_wire.PUBLIC,
            verifier=TwilioSignatureVerifier(
                twilio_wire.TOKEN, UrlTrustSettings(public_url=twilio_wire.PUBLIC)
            ),
            clock=FakeClock(),
            http=http,
        ),
        http,
    )


@respx.mock
async def test_twilio_transfer_updates_the_live_call_to_a_dial() -> None:
    adapter, http = twilio_adapter()
    route = respx.post(f"{twilio_wire.CALLS}/{twilio_wire.CALL_SID}.json").respond(
        200, json={"sid": twilio_wire.CALL_SID, "status": "in-progress"}
    )
    try:
        await adapter.transfer(twilio_wire.a_call(), TARGET)
    finally:
        await adapter.aclose()
        await http.aclose()
    form = parse_qs(route.calls.last.request.content.decode())
    assert form["Twiml"] == [
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{TARGET}</Dial></Response>'
    ]


@respx.mock
async def test_twilio_send_digits_plays_them_and_comes_back() -> None:
    adapter, http = twilio_adapter()
    route = respx.post(f"{twilio_wire.CALLS}/{twilio_wire.CALL_SID}.json").respond(
        200, json={"sid": twilio_wire.CALL_SID}
    )
    try:
        await adapter.send_digits(twilio_wire.a_call(), "1w2#")
    finally:
        await adapter.aclose()
        await http.aclose()
    twiml = parse_qs(route.calls.last.request.content.decode())["Twiml"][0]
    assert '<Play digits="1w2#" />' in twiml and "<Redirect" in twiml


@respx.mock
async def test_twilio_transfer_of_an_ended_call_is_refused() -> None:
    adapter, http = twilio_adapter()
    respx.post(f"{twilio_wire.CALLS}/{twilio_wire.CALL_SID}.json").respond(
        400, json={"code": 21220, "message": "Call is not in-progress", "status": 400}
    )
    try:
        with pytest.raises(CarrierRejected):
            await adapter.transfer(twilio_wire.a_call(), TARGET)
    finally:
        await adapter.aclose()
        await http.aclose()


@respx.mock
async def test_telnyx_transfer_and_dtmf_are_call_control_commands() -> None:
    adapter = telnyx_wire.TelnyxTelephony.from_config(telnyx_wire.config(), FakeClock())
    transfer = respx.post(telnyx_wire.action_url("transfer")).respond(200, json={"data": {}})
    dtmf = respx.post(telnyx_wire.action_url("send_dtmf")).respond(200, json={"data": {}})
    try:
        await adapter.transfer(telnyx_wire.live_call(), TARGET)
        await adapter.send_digits(telnyx_wire.live_call(), "123#")
    finally:
        await adapter.aclose()
    assert json.loads(transfer.calls.last.request.content)["to"] == TARGET
    assert json.loads(dtmf.calls.last.request.content)["digits"] == "123#"


@respx.mock
async def test_plivo_transfer_serves_a_dial_and_dtmf_uses_the_send_digits_api() -> None:
    adapter, http = plivo_wire.make_adapter()
    call = plivo_wire.live_call()
    transfer = respx.post(f"{plivo_wire.ACCOUNT}/Call/{plivo_wire.CALL_UUID}/").respond(
        202, json={"api_id": "a", "message": "call transferred"}
    )
    dtmf = respx.post(f"{plivo_wire.ACCOUNT}/Call/{plivo_wire.CALL_UUID}/DTMF/").respond(
        202, json={"api_id": "a", "message": "digits sent"}
    )
    try:
        await adapter.send_digits(call, "42")
        await adapter.transfer(call, TARGET)
        body = json.loads(transfer.calls.last.request.content)
        assert body["legs"] == "aleg" and body["aleg_url"].startswith(plivo_wire.PUBLIC)
        # Plivo fetches the transfer's document: a <Dial> to the target, whatever our side's
        # state (our side of a transferred call has already ended).
        query = dict(parse_qs(body["aleg_url"].split("?", 1)[1]))
        request = plivo_wire.webhook(
            {"CallUUID": plivo_wire.CALL_UUID, "CallStatus": "in-progress"},
            query={k: v[0] for k, v in query.items()},
        )
        call.state = call.state.COMPLETED
        answer = adapter.webhook_response(request, [call])
    finally:
        await adapter.aclose()
        await http.aclose()
    assert json.loads(dtmf.calls.last.request.content) == {"digits": "42"}
    assert f"<Number>{TARGET}</Number>" in answer.body.decode()
    assert "<Dial" in answer.body.decode()
