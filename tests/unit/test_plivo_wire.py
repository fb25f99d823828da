"""The Plivo adapter on the wire: exact REST requests (respx) and webhook parsing.

Wire facts: Plivo Voice API reference (Make a Call, Transfer a Call, Hangup a Call, Retrieve a
live call / a CDR, Cancel a queued call) and the XML reference (GetInput action parameters
``InputType``/``Speech``/``SpeechConfidenceScore``, hang-up URL parameters ``CallStatus``/
``HangupCause``/``HangupCauseName``/``HangupSource``), cross-checked with plivo-python.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
import respx

from voicecall.adapters.telephony.plivo import PlivoTelephony, native_voice
from voicecall.config import parse_config
from voicecall.domain.call import Call, CallDirection, CallMode, CallState
from voicecall.domain.errors import CallerError, CarrierRejected, TransientError
from voicecall.domain.events import (
    CallActive,
    CallAnswered,
    CallDtmf,
    CallEnded,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeech,
)
from voicecall.domain.ports import CarrierStatusKind, DialRequest
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.clock import FakeClock

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
AUTH_TOKEN = "plivo-test-token"
API = "https://api.plivo.test"
ACCOUNT = f"{API}/v1/Account/{AUTH_ID}"
PUBLIC = "https://voice.example.com/voice/webhook"
CALL_UUID = "1a2b3c4d-0000-4000-8000-000000000001"
REQUEST_UUID = "9f8e7d6c-0000-4000-8000-000000000002"


def make_adapter(clock: FakeClock | None = None) -> tuple[PlivoTelephony, httpx.AsyncClient]:
    config = parse_config(
        {
            "plugins": {
                "entries": {
                    "voice-call": {
                        "config": {
                            "enabled": True,
                            "provider": "plivo",
                            "fromNumber": "+15550100000",
                            "publicUrl": PUBLIC,
                            "plivo": {
                                "authId": AUTH_ID,
                                "authToken": AUTH_TOKEN,
                                "apiBaseUrl": API,
                            },
                        }
                    }
                }
            }
        },
        env={},
    )
    http = httpx.AsyncClient()
    return PlivoTelephony.from_config(config, clock or FakeClock(), http), http


@pytest.fixture
async def adapter() -> Any:
    carrier, http = make_adapter()
    yield carrier
    await carrier.aclose()
    await http.aclose()


def live_call(call_uuid: str | None = CALL_UUID, state: CallState = CallState.LISTENING) -> Call:
    return Call(
        call_id="call-1",
        provider="plivo",
        direction=CallDirection.OUTBOUND,
        from_number="+15550100000",
        to_number="+15557654321",
        mode=CallMode.CONVERSATION,
        started_at=1.0,
        state=state,
        provider_call_id=call_uuid,
    )


def basic_auth(request: httpx.Request) -> str:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def webhook(
    params: dict[str, str], *, query: dict[str, str] | None = None, content_type: str | None = None
) -> WebhookRequest:
    headers = [("Content-Type", content_type or "application/x-www-form-urlencoded")]
    return WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query=urlencode(query or {}),
        headers=tuple(headers),
        body=urlencode(params).encode(),
        peer="127.0.0.1",
    )


# ------------------------------------------------------------------ REST


@respx.mock
async def test_dial_posts_the_documented_make_call_request(adapter: PlivoTelephony) -> None:
    route = respx.post(f"{ACCOUNT}/Call/").mock(
        return_value=httpx.Response(
            201, json={"api_id": "a", "message": "call fired", "request_uuid": REQUEST_UUID}
        )
    )
    result = await adapter.dial(
        DialRequest(
            call_id="call-1",
            to_number="+15557654321",
            from_number="+15550100000",
            mode=CallMode.NOTIFY,
            message="hi",
            ring_timeout_s=30.0,
        )
    )
    assert result.provider_call_id == REQUEST_UUID
    sent = route.calls.last.request
    assert basic_auth(sent) == f"{AUTH_ID}:{AUTH_TOKEN}"
    body = json.loads(sent.content)
    assert body["from"] == "15550100000" and body["to"] == "15557654321"
    assert body["ring_timeout"] == 30
    assert body["answer_method"] == body["hangup_method"] == body["ring_method"] == "POST"
    for field, kind in (("answer_url", "answer"), ("hangup_url", "hangup"), ("ring_url", "ring")):
        assert body[field].startswith(PUBLIC + "?")
        assert query_of(body[field]) == {"callId": "call-1", "kind": kind}


@pytest.mark.parametrize(
    ("status", "error"), [(400, CarrierRejected), (401, CarrierRejected), (503, TransientError)]
)
@respx.mock
async def test_dial_failures_are_classified(
    adapter: PlivoTelephony, status: int, error: type[Exception]
) -> None:
    respx.post(f"{ACCOUNT}/Call/").mock(return_value=httpx.Response(status, json={"error": "nope"}))
    request = DialRequest("c", "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", 30.0)
    with pytest.raises(error, match="nope"):
        await adapter.dial(request)


@respx.mock
async def test_dial_timeout_is_transient(adapter: PlivoTelephony) -> None:
    respx.post(f"{ACCOUNT}/Call/").mock(side_effect=httpx.ConnectTimeout("slow"))
    request = DialRequest("c", "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", 30.0)
    with pytest.raises(TransientError):
        await adapter.dial(request)


@respx.mock
async def test_speak_then_listen_transfers_the_call_once(adapter: PlivoTelephony) -> None:
    route = respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(
        return_value=httpx.Response(202, json={"message": "call transferred"})
    )
    call = live_call()
    await adapter.speak(call, "Hello there.", "alloy")
    await adapter.listen(call)
    assert route.call_count == 1  # the listen rides on the fetch the transfer triggered
    sent = route.calls.last.request
    assert basic_auth(sent) == f"{AUTH_ID}:{AUTH_TOKEN}"
    body = json.loads(sent.content)
    assert body["legs"] == "aleg" and body["aleg_method"] == "POST"
    assert query_of(body["aleg_url"]) == {"callId": "call-1", "kind": "xml"}

    # Plivo fetches aleg_url: we serve the speech inside a speech GetInput.
    fetch = webhook(
        {"CallUUID": CALL_UUID, "CallStatus": "in-progress", "Direction": "outbound"},
        query={"callId": "call-1", "kind": "xml"},
    )
    events = await adapter.parse_webhook(fetch)
    assert [type(e) for e in events] == [CallActive]
    answer = adapter.webhook_response(fetch, [call])
    assert answer.status == 200 and answer.content_type == "application/xml"
    root = ElementTree.fromstring(answer.body)
    gather, redirect = list(root)
    assert gather.tag == "GetInput" and gather.get("inputType") == "speech"
    assert gather.get("method") == "POST"
    action = query_of(gather.get("action") or "")
    assert action["kind"] == "input" and action["callId"] == "call-1" and action["turn"]
    [speak] = list(gather)
    assert speak.tag == "Speak" and speak.text == "Hello there."
    assert speak.get("voice") == "Polly.Joanna"
    assert redirect.tag == "Redirect" and query_of(redirect.text or "")["kind"] == "xml"


@respx.mock
async def test_listening_call_is_transferred_again_for_new_speech(
    adapter: PlivoTelephony,
) -> None:
    route = respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(return_value=httpx.Response(202))
    call = live_call()
    await adapter.listen(call)
    fetch = webhook({"CallUUID": CALL_UUID}, query={"callId": "call-1", "kind": "xml"})
    await adapter.parse_webhook(fetch)
    adapter.webhook_response(fetch, [call])
    await adapter.speak(call, "One more thing.", None)
    assert route.call_count == 2


@respx.mock
async def test_transfer_of_an_ended_call_is_rejected(adapter: PlivoTelephony) -> None:
    respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(
        return_value=httpx.Response(404, json={"error": "not found"})
    )
    with pytest.raises(CarrierRejected):
        await adapter.speak(live_call(), "hi", None)


@respx.mock
async def test_transfer_5xx_is_transient(adapter: PlivoTelephony) -> None:
    respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(return_value=httpx.Response(502))
    with pytest.raises(TransientError):
        await adapter.listen(live_call())


@respx.mock
async def test_hangup_deletes_the_call(adapter: PlivoTelephony) -> None:
    route = respx.delete(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(return_value=httpx.Response(204))
    await adapter.hangup(live_call())
    assert route.call_count == 1
    assert basic_auth(route.calls.last.request) == f"{AUTH_ID}:{AUTH_TOKEN}"


@respx.mock
async def test_hangup_of_an_ended_call_is_success(adapter: PlivoTelephony) -> None:
    call_route = respx.delete(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(
        return_value=httpx.Response(404, json={"error": "call not found"})
    )
    request_route = respx.delete(f"{ACCOUNT}/Request/{CALL_UUID}/").mock(
        return_value=httpx.Response(404, json={"error": "request not found"})
    )
    await adapter.hangup(live_call())
    assert call_route.call_count == 1 and request_route.call_count == 1


@respx.mock
async def test_hangup_cancels_a_queued_request(adapter: PlivoTelephony) -> None:
    respx.delete(f"{ACCOUNT}/Call/{REQUEST_UUID}/").mock(return_value=httpx.Response(404))
    cancel = respx.delete(f"{ACCOUNT}/Request/{REQUEST_UUID}/").mock(
        return_value=httpx.Response(204)
    )
    await adapter.hangup(live_call(REQUEST_UUID, CallState.INITIATED))
    assert cancel.call_count == 1


@respx.mock
async def test_hangup_5xx_is_transient(adapter: PlivoTelephony) -> None:
    respx.delete(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(return_value=httpx.Response(500))
    with pytest.raises(TransientError):
        await adapter.hangup(live_call())


@respx.mock
async def test_status_live(adapter: PlivoTelephony) -> None:
    route = respx.get(f"{ACCOUNT}/Call/{CALL_UUID}/", params={"status": "live"}).mock(
        return_value=httpx.Response(
            200, json={"call_uuid": CALL_UUID, "call_status": "in-progress"}
        )
    )
    status = await adapter.status(live_call())
    assert status.kind is CarrierStatusKind.LIVE
    assert route.calls.last.request.url.params["status"] == "live"


@respx.mock
async def test_status_ended_reads_the_cdr(adapter: PlivoTelephony) -> None:
    respx.get(f"{ACCOUNT}/Call/{CALL_UUID}/", params={"status": "live"}).mock(
        return_value=httpx.Response(404, json={"error": "not found"})
    )
    respx.get(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(
        return_value=httpx.Response(
            200,
            json={
                "call_uuid": CALL_UUID,
                "answer_time": "2024-01-01 10:00:00",
                "end_time": "2024-01-01 10:01:00",
                "hangup_cause_name": "Normal Hangup",
                "hangup_source": "Callee",
            },
        )
    )
    status = await adapter.status(live_call())
    assert status.kind is CarrierStatusKind.ENDED
    assert status.end_state is CallState.HANGUP_USER


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503),
        httpx.Response(500, json={"error": "boom"}),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
    ],
)
@respx.mock
async def test_status_unknown_on_trouble(adapter: PlivoTelephony, failure: Any) -> None:
    route = respx.get(f"{ACCOUNT}/Call/{CALL_UUID}/")
    if isinstance(failure, httpx.Response):
        route.mock(return_value=failure)
    else:
        route.mock(side_effect=failure)
    status = await adapter.status(live_call())
    assert status.kind is CarrierStatusKind.UNKNOWN


@respx.mock
async def test_status_without_any_record_is_unknown(adapter: PlivoTelephony) -> None:
    respx.get(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(return_value=httpx.Response(404))
    status = await adapter.status(live_call())
    assert status.kind is CarrierStatusKind.UNKNOWN


# ------------------------------------------------------------------ webhooks


async def test_outbound_answer_webhook(adapter: PlivoTelephony) -> None:
    request = webhook(
        {
            "CallUUID": CALL_UUID,
            "CallStatus": "in-progress",
            "Direction": "outbound",
            "From": "15550100000",
            "To": "15557654321",
            "ALegRequestUUID": REQUEST_UUID,
        },
        query={"callId": "call-1", "kind": "answer"},
    )
    [event] = await adapter.parse_webhook(request)
    assert isinstance(event, CallAnswered)
    assert event.call_id == "call-1" and event.provider_call_id == CALL_UUID
    again = await adapter.parse_webhook(request)
    assert again[0].key() == event.key()


async def test_answer_webhook_serves_queued_speech_without_rest(adapter: PlivoTelephony) -> None:
    request = webhook(
        {"CallUUID": CALL_UUID, "CallStatus": "in-progress", "Direction": "outbound"},
        query={"callId": "call-1", "kind": "answer"},
    )
    await adapter.parse_webhook(request)
    call = live_call(state=CallState.SPEAKING)
    with respx.mock:  # any REST call here would fail the test
        await adapter.speak(call, "The build is green.", None)
    answer = adapter.webhook_response(request, [call])
    root = ElementTree.fromstring(answer.body)
    assert [child.tag for child in root] == ["Speak", "Redirect"]
    assert root[0].text == "The build is green."


async def test_a_retried_answer_fetch_gets_the_first_document_again(
    adapter: PlivoTelephony,
) -> None:
    request = webhook(
        {"CallUUID": CALL_UUID, "CallStatus": "in-progress", "Direction": "outbound"},
        query={"callId": "call-1", "kind": "answer"},
    )
    await adapter.parse_webhook(request)
    call = live_call(state=CallState.LISTENING)
    await adapter.speak(call, "Hello there.", None)
    await adapter.listen(call)
    first = adapter.webhook_response(request, [call])
    await adapter.parse_webhook(request)  # Plivo retries with a fresh nonce
    assert adapter.webhook_response(request, [call]).body == first.body


async def test_inbound_answer_webhook(adapter: PlivoTelephony) -> None:
    request = webhook(
        {
            "CallUUID": CALL_UUID,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "From": "15551230001",
            "To": "15550100000",
        }
    )
    initiated, answered = await adapter.parse_webhook(request)
    assert isinstance(initiated, CallInitiated) and isinstance(answered, CallAnswered)
    assert initiated.direction is CallDirection.INBOUND
    assert initiated.from_number == "+15551230001" and initiated.to_number == "+15550100000"
    assert initiated.provider_call_id == answered.provider_call_id == CALL_UUID


async def test_inbound_withheld_caller_has_no_number(adapter: PlivoTelephony) -> None:
    request = webhook({"CallUUID": CALL_UUID, "Direction": "inbound", "From": "", "To": "1555"})
    initiated, _ = await adapter.parse_webhook(request)
    assert isinstance(initiated, CallInitiated) and initiated.from_number is None


async def test_rejected_inbound_call_is_answered_with_hangup_rejected(
    adapter: PlivoTelephony,
) -> None:
    request = webhook({"CallUUID": CALL_UUID, "Direction": "inbound", "From": "15559990000"})
    await adapter.parse_webhook(request)
    call = live_call()
    call.direction = CallDirection.INBOUND
    with respx.mock:  # rejecting inside the answer webhook is XML, not REST
        await adapter.reject(call)
    call.transition(CallState.HANGUP_BOT, 2.0, detail="rejected: not allowed")
    answer = adapter.webhook_response(request, [call])
    assert answer.body == b'<Response><Hangup reason="rejected"/></Response>'


async def test_ring_webhook(adapter: PlivoTelephony) -> None:
    request = webhook(
        {"CallUUID": CALL_UUID, "CallStatus": "ringing", "Direction": "outbound"},
        query={"callId": "call-1", "kind": "ring"},
    )
    [event] = await adapter.parse_webhook(request)
    assert isinstance(event, CallRinging) and event.provider_call_id == CALL_UUID
    assert adapter.webhook_response(request, []).body == b"<Response/>"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"CallStatus": "completed", "HangupSource": "Callee"}, CallState.HANGUP_USER),
        ({"CallStatus": "completed", "HangupSource": "API Request"}, CallState.HANGUP_BOT),
        ({"CallStatus": "completed", "HangupCauseName": "End Of XML Instructions"}, None),
        ({"CallStatus": "busy", "HangupCause": "USER_BUSY"}, CallState.BUSY),
        ({"CallStatus": "no-answer", "HangupCause": "NO_ANSWER"}, CallState.NO_ANSWER),
        ({"CallStatus": "failed"}, CallState.FAILED),
        ({"CallStatus": "timeout"}, CallState.FAILED),
    ],
)
async def test_hangup_webhook(
    adapter: PlivoTelephony, fields: dict[str, str], reason: CallState | None
) -> None:
    request = webhook(
        {"CallUUID": CALL_UUID, "Direction": "outbound", "HangupCause": "NORMAL_CLEARING"} | fields,
        query={"callId": "call-1", "kind": "hangup"},
    )
    [event] = await adapter.parse_webhook(request)
    assert isinstance(event, CallEnded)
    assert event.reason is (reason or CallState.COMPLETED)
    assert event.call_id == "call-1" and event.dedupe_key == f"plivo:{CALL_UUID}:ended"
    assert adapter.webhook_response(request, []).body == b"<Response/>"


async def test_hangup_webhook_without_our_query_is_recognised(adapter: PlivoTelephony) -> None:
    request = webhook(
        {"CallUUID": CALL_UUID, "Direction": "inbound", "CallStatus": "completed"}
        | {"HangupCause": "NORMAL_CLEARING", "HangupSource": "Caller"}
    )
    [event] = await adapter.parse_webhook(request)
    assert isinstance(event, CallEnded) and event.reason is CallState.HANGUP_USER


async def test_speech_input_webhook(adapter: PlivoTelephony) -> None:
    request = webhook(
        {
            "CallUUID": CALL_UUID,
            "Direction": "outbound",
            "InputType": "speech",
            "Speech": "Noon works.",
            "Digits": "",
            "SpeechConfidenceScore": "0.91",
        },
        query={"callId": "call-1", "kind": "input", "turn": "t1"},
    )
    active, speech = await adapter.parse_webhook(request)
    assert isinstance(active, CallActive)
    assert isinstance(speech, CallSpeech)
    assert speech.transcript == "Noon works." and speech.is_final
    assert speech.confidence == pytest.approx(0.91)
    assert speech.dedupe_key == f"plivo:{CALL_UUID}:input:t1"
    # Answered with XML that keeps the call up, not an empty document (which hangs up).
    root = ElementTree.fromstring(adapter.webhook_response(request, [live_call()]).body)
    assert [child.tag for child in root] == ["Wait", "Redirect"]


async def test_digits_and_silence_input_webhooks(adapter: PlivoTelephony) -> None:
    digits = webhook(
        {"CallUUID": CALL_UUID, "InputType": "dtmf", "Digits": "42", "Speech": ""},
        query={"callId": "call-1", "kind": "input", "turn": "t2"},
    )
    assert isinstance((await adapter.parse_webhook(digits))[1], CallDtmf)
    nothing = webhook(
        {"CallUUID": CALL_UUID, "InputType": "speech", "Digits": "", "Speech": ""},
        query={"callId": "call-1", "kind": "input", "turn": "t3"},
    )
    assert isinstance((await adapter.parse_webhook(nothing))[1], CallSilence)


async def test_interim_speech_is_not_final(adapter: PlivoTelephony) -> None:
    request = webhook(
        {
            "CallUUID": CALL_UUID,
            "StableSpeech": "noon",
            "UnstableSpeech": "works",
            "Stability": "0.4",
        }
        | {"SequenceNumber": "3"},
        query={"callId": "call-1", "kind": "partial", "turn": "t1"},
    )
    [event] = await adapter.parse_webhook(request)
    assert isinstance(event, CallSpeech) and not event.is_final
    assert event.transcript == "noon works"


@pytest.mark.parametrize(
    "request_",
    [
        webhook({"CallStatus": "completed"}, query={"kind": "hangup"}),  # no CallUUID
        webhook({"CallUUID": CALL_UUID}, query={"kind": "bogus"}),
        webhook({"CallUUID": CALL_UUID, "Direction": "sideways"}),
        webhook({"CallUUID": CALL_UUID}, content_type="application/json"),
        WebhookRequest(
            method="POST",
            path="/voice/webhook",
            query="",
            headers=(("content-type", "application/x-www-form-urlencoded"),),
            body=b"CallUUID=\xff\xfe",
            peer=None,
        ),
    ],
    ids=["no-call-uuid", "unknown-kind", "bad-direction", "json-body", "not-utf8"],
)
async def test_malformed_webhooks_are_caller_errors(
    adapter: PlivoTelephony, request_: WebhookRequest
) -> None:
    with pytest.raises(CallerError):
        await adapter.parse_webhook(request_)


def test_openai_voices_map_to_polly() -> None:
    assert native_voice("alloy") == "Polly.Joanna"
    assert native_voice("onyx") == "Polly.Matthew"
    assert native_voice("Polly.Amy") == "Polly.Amy"
    assert native_voice(None) is None and native_voice("unknown-voice") is None
