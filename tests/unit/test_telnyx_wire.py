"""The Telnyx adapter on the wire: exactly what Telnyx receives, and how its answers and
webhooks are read. REST is faked at the transport with respx; no network."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from nacl.signing import SigningKey

from voicecall.adapters.telephony.telnyx import (
    DEFAULT_TELNYX_VOICE,
    TelnyxTelephony,
    decode_client_state,
    encode_client_state,
    telnyx_voice,
)
from voicecall.config import AppConfig, parse_config
from voicecall.domain.call import Call, CallDirection, CallMode, CallState
from voicecall.domain.errors import CallerError, CarrierRejected, TransientError
from voicecall.domain.events import CallAnswered, CallEnded, CallInitiated, CallSpeech
from voicecall.domain.ports import CarrierStatusKind, DialRequest
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.clock import FakeClock

API = "https://api.telnyx.test/v2"
API_KEY = "KEY0123456789"
CONNECTION_ID = "1494404757140276705"
PUBLIC_URL = "https://voice.example.com/voice/webhook"
CALL_ID = "2f7c8a4e-0d0e-4d54-9d0b-6a1b7a8f0c11"
PID = "v3:u5OAKGEPT3Dx8SZSSDRWEMdNH2OripQhO"
SIGNING_KEY = SigningKey(b"\x07" * 32)
PUBLIC_KEY_B64 = base64.b64encode(bytes(SIGNING_KEY.verify_key)).decode()


def config() -> AppConfig:
    plugin = {
        "enabled": True,
        "provider": "telnyx",
        "fromNumber": "+15550100000",
        "publicUrl": PUBLIC_URL,
        "telnyx": {
            "apiKey": API_KEY,
            "connectionId": CONNECTION_ID,
            "publicKey": PUBLIC_KEY_B64,
            "apiBaseUrl": API,
        },
    }
    return parse_config({"plugins": {"entries": {"voice-call": {"config": plugin}}}}, env={})


@pytest.fixture
async def adapter() -> AsyncIterator[TelnyxTelephony]:
    telnyx = TelnyxTelephony.from_config(config(), FakeClock())
    yield telnyx
    await telnyx.aclose()


def live_call(direction: CallDirection = CallDirection.OUTBOUND) -> Call:
    return Call(
        call_id=CALL_ID,
        provider="telnyx",
        direction=direction,
        from_number="+15550100000",
        to_number="+15557654321",
        mode=CallMode.CONVERSATION,
        started_at=0.0,
        state=CallState.ACTIVE,
        provider_call_id=PID,
    )


def action_url(action: str) -> str:
    return f"{API}/calls/{PID}/actions/{action}"


def sent_json(route: respx.Route, index: int = -1) -> dict[str, Any]:
    request = route.calls[index].request
    body: dict[str, Any] = json.loads(request.content)
    return body


def ok() -> httpx.Response:
    return httpx.Response(200, json={"data": {"result": "ok"}})


def already_ended(status: int = 422) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "errors": [
                {
                    "code": "90018",
                    "title": "Call has already ended",
                    "detail": "This call is no longer active and can't receive commands.",
                }
            ]
        },
    )


# ------------------------------------------------------------------------------ REST


@respx.mock
async def test_dial_posts_the_call_with_our_id_in_client_state(adapter: TelnyxTelephony) -> None:
    route = respx.post(f"{API}/calls").mock(
        return_value=httpx.Response(
            200,
            json={
                "data": {
                    "call_control_id": PID,
                    "call_leg_id": "leg",
                    "call_session_id": "session",
                    "is_alive": False,
                    "record_type": "call",
                }
            },
        )
    )
    result = await adapter.dial(
        DialRequest(
            call_id=CALL_ID,
            to_number="+15557654321",
            from_number="+15550100000",
            mode=CallMode.NOTIFY,
            message="hi",
            ring_timeout_s=30.0,
        )
    )
    assert result.provider_call_id == PID
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    body = sent_json(route)
    assert body == {
        "connection_id": CONNECTION_ID,
        "to": "+15557654321",
        "from": "+15550100000",
        "client_state": base64.b64encode(CALL_ID.encode()).decode(),
        "timeout_secs": 30,
        "command_id": CALL_ID,
        "webhook_url": PUBLIC_URL,
        "webhook_url_method": "POST",
    }


@pytest.mark.parametrize(("ring_s", "sent"), [(1.0, 5), (30.4, 30), (5000.0, 600)])
@respx.mock
async def test_dial_ring_timeout_is_clamped_to_what_telnyx_accepts(
    adapter: TelnyxTelephony, ring_s: float, sent: int
) -> None:
    route = respx.post(f"{API}/calls").mock(
        return_value=httpx.Response(200, json={"data": {"call_control_id": PID}})
    )
    request = DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", ring_s)
    await adapter.dial(request)
    assert sent_json(route)["timeout_secs"] == sent


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (
            httpx.Response(422, json={"errors": [{"code": "10015", "title": "Bad to"}]}),
            CarrierRejected,
        ),
        (
            httpx.Response(401, json={"errors": [{"code": "10009", "title": "Auth"}]}),
            CarrierRejected,
        ),
        (httpx.Response(200, json={"data": {}}), CarrierRejected),
        (httpx.Response(503), TransientError),
        (httpx.Response(429), TransientError),
        (httpx.ConnectError("refused"), TransientError),
        (httpx.ReadTimeout("slow"), TransientError),
    ],
)
@respx.mock
async def test_dial_failures_are_classified(
    adapter: TelnyxTelephony, response: Any, error: type[Exception]
) -> None:
    route = respx.post(f"{API}/calls")
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    request = DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", 30)
    with pytest.raises(error):
        await adapter.dial(request)


@respx.mock
async def test_answer_is_an_explicit_command_that_hands_over_our_call_id(
    adapter: TelnyxTelephony,
) -> None:
    route = respx.post(action_url("answer")).mock(return_value=ok())
    await adapter.answer(live_call(CallDirection.INBOUND))
    body = sent_json(route)
    assert decode_client_state(body["client_state"]) == CALL_ID
    assert body["command_id"]
    assert route.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"


@respx.mock
async def test_reject_sends_a_cause_and_tolerates_a_caller_who_left(
    adapter: TelnyxTelephony,
) -> None:
    route = respx.post(action_url("reject")).mock(side_effect=[ok(), already_ended()])
    await adapter.reject(live_call(CallDirection.INBOUND))
    assert sent_json(route)["cause"] == "CALL_REJECTED"
    await adapter.reject(live_call(CallDirection.INBOUND))


@respx.mock
async def test_speak_sends_text_voice_and_language(adapter: TelnyxTelephony) -> None:
    respx.post(action_url("answer")).mock(return_value=ok())
    route = respx.post(action_url("speak")).mock(return_value=ok())
    await adapter.answer(live_call(CallDirection.INBOUND))
    await adapter.speak(live_call(), "Your order shipped.", "onyx")
    body = sent_json(route)
    assert body["payload"] == "Your order shipped."
    assert body["payload_type"] == "text"
    assert body["voice"] == "AWS.Polly.Stephen-Neural"
    assert body["language"] == "en-US"
    assert decode_client_state(body["client_state"]) == CALL_ID


@respx.mock
async def test_every_command_has_a_fresh_command_id(adapter: TelnyxTelephony) -> None:
    respx.post(action_url("transcription_stop")).mock(return_value=ok())
    route = respx.post(action_url("speak")).mock(return_value=ok())
    await adapter.speak(live_call(), "one", None)
    await adapter.speak(live_call(), "two", None)
    assert sent_json(route, 0)["command_id"] != sent_json(route, 1)["command_id"]


def test_voice_mapping() -> None:
    assert telnyx_voice(None) == DEFAULT_TELNYX_VOICE
    assert telnyx_voice("alloy") == "AWS.Polly.Joanna-Neural"
    assert telnyx_voice("Nova") == "AWS.Polly.Salli-Neural"
    assert telnyx_voice("Azure.en-US-AvaNeural") == "Azure.en-US-AvaNeural"
    assert telnyx_voice("female") == "female"
    assert telnyx_voice("no-such-voice") == DEFAULT_TELNYX_VOICE


@respx.mock
async def test_listen_starts_final_only_transcription_once_per_turn(
    adapter: TelnyxTelephony,
) -> None:
    start = respx.post(action_url("transcription_start")).mock(return_value=ok())
    stop = respx.post(action_url("transcription_stop")).mock(return_value=ok())
    speak = respx.post(action_url("speak")).mock(return_value=ok())
    await adapter.listen(live_call())
    await adapter.listen(live_call())  # already listening: no second start
    assert start.call_count == 1
    body = sent_json(start)
    assert body["transcription_engine"] == "Google"
    assert body["transcription_engine_config"]["interim_results"] is False
    assert body["transcription_engine_config"]["language"] == "en"
    assert body["transcription_tracks"] == "inbound"
    assert decode_client_state(body["client_state"]) == CALL_ID
    # The next prompt stops transcription first; the next listen starts it again.
    await adapter.speak(live_call(), "Next question?", None)
    assert stop.call_count == 1 and speak.call_count == 1
    assert stop.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"
    await adapter.listen(live_call())
    assert start.call_count == 2


@respx.mock
async def test_a_refused_transcription_stop_does_not_block_the_prompt(
    adapter: TelnyxTelephony,
) -> None:
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    respx.post(action_url("transcription_stop")).mock(return_value=httpx.Response(422, json={}))
    speak = respx.post(action_url("speak")).mock(return_value=ok())
    await adapter.listen(live_call())
    await adapter.speak(live_call(), "Still here.", None)
    assert speak.call_count == 1


@respx.mock
async def test_a_fresh_call_speaks_without_stopping_anything(adapter: TelnyxTelephony) -> None:
    respx.post(f"{API}/calls").mock(
        return_value=httpx.Response(200, json={"data": {"call_control_id": PID}})
    )
    stop = respx.post(action_url("transcription_stop")).mock(return_value=ok())
    speak = respx.post(action_url("speak")).mock(return_value=ok())
    await adapter.dial(
        DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", 30)
    )
    await adapter.speak(live_call(), "hi", None)
    assert speak.call_count == 1 and stop.call_count == 0


@respx.mock
async def test_after_a_restart_the_first_prompt_stops_transcription_to_be_sure(
    adapter: TelnyxTelephony,
) -> None:
    # A call this adapter instance never placed or answered: Telnyx may still be
    # transcribing it from before the restart.
    stop = respx.post(action_url("transcription_stop")).mock(return_value=ok())
    speak = respx.post(action_url("speak")).mock(return_value=ok())
    await adapter.speak(live_call(), "Still there?", None)
    await adapter.speak(live_call(), "Hello?", None)
    assert stop.call_count == 1 and speak.call_count == 2
    order = [call.request.url.path.rsplit("/", 1)[-1] for call in respx.calls]
    assert order == ["transcription_stop", "speak", "speak"]


@respx.mock
async def test_speak_on_an_ended_call_is_rejected(adapter: TelnyxTelephony) -> None:
    respx.post(action_url("transcription_stop")).mock(return_value=already_ended())
    respx.post(action_url("speak")).mock(return_value=already_ended())
    with pytest.raises(CarrierRejected):
        await adapter.speak(live_call(), "hello?", None)


@respx.mock
async def test_hangup_posts_the_command(adapter: TelnyxTelephony) -> None:
    route = respx.post(action_url("hangup")).mock(return_value=ok())
    await adapter.hangup(live_call())
    assert route.call_count == 1
    assert route.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent_json(route)["command_id"]


@pytest.mark.parametrize("status", [404, 422])
@respx.mock
async def test_hangup_of_an_ended_call_is_success(adapter: TelnyxTelephony, status: int) -> None:
    respx.post(action_url("hangup")).mock(return_value=already_ended(status))
    await adapter.hangup(live_call())


@respx.mock
async def test_hangup_other_refusals_and_outages_raise(adapter: TelnyxTelephony) -> None:
    route = respx.post(action_url("hangup"))
    route.mock(return_value=httpx.Response(403, json={"errors": [{"code": "10010"}]}))
    with pytest.raises(CarrierRejected):
        await adapter.hangup(live_call())
    route.mock(return_value=httpx.Response(502))
    with pytest.raises(TransientError):
        await adapter.hangup(live_call())


async def test_hangup_without_a_carrier_id_is_a_no_op(adapter: TelnyxTelephony) -> None:
    call = live_call()
    call.provider_call_id = None
    with respx.mock(assert_all_called=False) as mock:
        await adapter.hangup(call)
        assert not mock.calls


@respx.mock
async def test_status_reads_is_alive(adapter: TelnyxTelephony) -> None:
    route = respx.get(f"{API}/calls/{PID}").mock(
        side_effect=[
            httpx.Response(200, json={"data": {"call_control_id": PID, "is_alive": True}}),
            httpx.Response(200, json={"data": {"call_control_id": PID, "is_alive": False}}),
            already_ended(404),
        ]
    )
    assert (await adapter.status(live_call())).kind is CarrierStatusKind.LIVE
    assert (await adapter.status(live_call())).kind is CarrierStatusKind.ENDED
    assert (await adapter.status(live_call())).kind is CarrierStatusKind.ENDED
    assert route.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500),
        httpx.Response(503),
        httpx.Response(401, json={"errors": [{"code": "10009"}]}),
        httpx.Response(200, text="not json"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
    ],
)
@respx.mock
async def test_status_is_unknown_when_it_cannot_be_learned(
    adapter: TelnyxTelephony, failure: Any
) -> None:
    route = respx.get(f"{API}/calls/{PID}")
    if isinstance(failure, Exception):
        route.mock(side_effect=failure)
    else:
        route.mock(return_value=failure)
    status = await adapter.status(live_call())
    assert status.kind is CarrierStatusKind.UNKNOWN


# ------------------------------------------------------------------------------ webhooks


def webhook(body: bytes | dict[str, Any]) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query="",
        headers=(("content-type", "application/json"),),
        body=raw,
        peer="127.0.0.1",
    )


def event(event_type: str, payload: dict[str, Any], event_id: str = "evt-1") -> dict[str, Any]:
    return {
        "data": {
            "record_type": "event",
            "event_type": event_type,
            "id": event_id,
            "occurred_at": "2025-01-01T00:00:00.000000Z",
            "payload": {"call_control_id": PID, **payload},
        },
        "meta": {"attempt": 1, "delivered_to": PUBLIC_URL},
    }


async def test_incoming_call_initiated(adapter: TelnyxTelephony) -> None:
    [parsed] = await adapter.parse_webhook(
        webhook(
            event(
                "call.initiated",
                {"direction": "incoming", "from": "+15551230001", "to": "+15550100000"},
            )
        )
    )
    assert isinstance(parsed, CallInitiated)
    assert parsed.direction is CallDirection.INBOUND
    assert parsed.from_number == "+15551230001" and parsed.to_number == "+15550100000"
    assert parsed.provider_call_id == PID and parsed.call_id is None
    assert parsed.key() == "telnyx:evt-1"


async def test_outgoing_call_initiated_carries_our_call_id(adapter: TelnyxTelephony) -> None:
    [parsed] = await adapter.parse_webhook(
        webhook(
            event(
                "call.initiated",
                {"direction": "outgoing", "client_state": encode_client_state(CALL_ID)},
            )
        )
    )
    assert isinstance(parsed, CallInitiated)
    assert parsed.direction is CallDirection.OUTBOUND and parsed.call_id == CALL_ID


async def test_answered(adapter: TelnyxTelephony) -> None:
    [parsed] = await adapter.parse_webhook(
        webhook(event("call.answered", {"client_state": encode_client_state(CALL_ID)}))
    )
    assert isinstance(parsed, CallAnswered) and parsed.call_id == CALL_ID


@pytest.mark.parametrize(
    ("cause", "state"),
    [
        ("normal_clearing", CallState.COMPLETED),
        ("originator_cancel", CallState.HANGUP_BOT),
        ("user_busy", CallState.BUSY),
        ("call_rejected", CallState.BUSY),
        ("no_answer", CallState.NO_ANSWER),
        ("timeout", CallState.NO_ANSWER),
        ("machine_detected", CallState.VOICEMAIL),
        ("time_limit", CallState.TIMEOUT),
        ("not_found", CallState.FAILED),
        ("unspecified", CallState.FAILED),
        ("something_new", CallState.COMPLETED),
        (None, CallState.COMPLETED),
    ],
)
async def test_hangup_causes(adapter: TelnyxTelephony, cause: str | None, state: CallState) -> None:
    payload: dict[str, Any] = {"hangup_source": "callee", "sip_hangup_cause": "486"}
    if cause is not None:
        payload["hangup_cause"] = cause
    [parsed] = await adapter.parse_webhook(webhook(event("call.hangup", payload)))
    assert isinstance(parsed, CallEnded)
    assert parsed.reason is state
    assert f"hangup_cause={cause or 'none'}" in (parsed.detail or "")


async def test_final_transcription_is_speech(adapter: TelnyxTelephony) -> None:
    payload = {
        "client_state": encode_client_state(CALL_ID),
        "transcription_data": {"transcript": "noon works", "is_final": True, "confidence": 0.97},
    }
    [parsed] = await adapter.parse_webhook(webhook(event("call.transcription", payload)))
    assert isinstance(parsed, CallSpeech)
    assert parsed.transcript == "noon works" and parsed.is_final is True
    assert parsed.confidence == pytest.approx(0.97)
    assert parsed.call_id == CALL_ID


async def test_interim_transcription_is_not_final(adapter: TelnyxTelephony) -> None:
    payload = {"transcription_data": {"transcript": "noo", "is_final": False}}
    [parsed] = await adapter.parse_webhook(webhook(event("call.transcription", payload)))
    assert isinstance(parsed, CallSpeech) and parsed.is_final is False


@pytest.mark.parametrize("event_type", ["call.speak.started", "call.speak.ended", "call.bridged"])
async def test_acknowledged_events_change_nothing(
    adapter: TelnyxTelephony, event_type: str
) -> None:
    assert await adapter.parse_webhook(webhook(event(event_type, {}))) == []


async def test_a_retry_keeps_the_dedupe_key(adapter: TelnyxTelephony) -> None:
    first = event("call.answered", {}, event_id="evt-42")
    retry = json.loads(json.dumps(first))
    retry["meta"]["attempt"] = 2
    [a] = await adapter.parse_webhook(webhook(first))
    [b] = await adapter.parse_webhook(webhook(retry))
    assert a.key() == b.key() == "telnyx:evt-42"


async def test_a_foreign_client_state_is_ignored(adapter: TelnyxTelephony) -> None:
    [parsed] = await adapter.parse_webhook(
        webhook(event("call.answered", {"client_state": "%%% not base64"}))
    )
    assert parsed.call_id is None and parsed.provider_call_id == PID


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"data": []}',
        b'{"data": {"id": "e", "payload": {}}}',
        b'{"data": {"event_type": "call.answered", "payload": {"call_control_id": "x"}}}',
        b'{"data": {"event_type": "call.answered", "id": "e"}}',
        b'{"data": {"event_type": "call.answered", "id": "e", "payload": {}}}',
        b'{"data": {"event_type": "call.answered", "id": "e", "payload": {"call_control_id": 7}}}',
        json.dumps(event("call.initiated", {"direction": "sideways"})).encode(),
        json.dumps(event("call.initiated", {"direction": "incoming", "from": 5})).encode(),
        json.dumps(event("call.transcription", {})).encode(),
        json.dumps(
            event("call.transcription", {"transcription_data": {"transcript": None}})
        ).encode(),
        json.dumps(
            event("call.transcription", {"transcription_data": {"transcript": "a", "is_final": 1}})
        ).encode(),
        b"\xff\xfe",
    ],
)
async def test_malformed_webhooks_are_caller_errors(adapter: TelnyxTelephony, body: bytes) -> None:
    with pytest.raises(CallerError):
        await adapter.parse_webhook(webhook(body))


def test_the_webhook_answer_is_an_empty_200(adapter: TelnyxTelephony) -> None:
    answer = adapter.webhook_response(webhook(event("call.answered", {})), [])
    assert answer.status == 200 and answer.body == b""


def test_signature_headers_are_required(adapter: TelnyxTelephony) -> None:
    assert adapter.has_signature_headers(["Telnyx-Signature-Ed25519", "telnyx-timestamp"])
    assert not adapter.has_signature_headers(["telnyx-timestamp"])


def test_webhooks_are_verified_with_the_configured_key() -> None:
    clock = FakeClock()
    adapter = TelnyxTelephony.from_config(config(), clock)
    body = json.dumps(event("call.answered", {})).encode()
    timestamp = str(int(clock.now()))
    signature = SIGNING_KEY.sign(timestamp.encode() + b"|" + body).signature
    good = WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query="",
        headers=(
            ("telnyx-signature-ed25519", base64.b64encode(signature).decode()),
            ("telnyx-timestamp", timestamp),
        ),
        body=body,
        peer="127.0.0.1",
    )
    assert adapter.verify_webhook(good).ok
    forged = WebhookRequest(
        method=good.method,
        path=good.path,
        query="",
        headers=good.headers,
        body=body.replace(b"answered", b"hangup"),
        peer="127.0.0.1",
    )
    assert not adapter.verify_webhook(forged).ok


def test_client_state_round_trip() -> None:
    assert decode_client_state(encode_client_state(CALL_ID)) == CALL_ID
    assert decode_client_state(None) is None
    assert decode_client_state(base64.b64encode(b"\xff\x00").decode()) is None
