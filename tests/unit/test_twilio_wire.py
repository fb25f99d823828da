"""Twilio on the wire: the exact REST requests the adapter makes (faked with respx) and how it
reads Twilio's webhooks and answers them."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
import respx

from voicecall.adapters.telephony.twilio import (
    OPENAI_TO_TWILIO_VOICE,
    TwilioSignatureVerifier,
    TwilioTelephony,
    twilio_voice,
)
from voicecall.domain.call import Call, CallDirection, CallMode, CallState
from voicecall.domain.errors import CallerError, CarrierRejected, TransientError
from voicecall.domain.events import (
    CallAnswered,
    CallEnded,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeech,
)
from voicecall.domain.ports import CarrierStatusKind, DialRequest
from voicecall.domain.signed_url import UrlTrustSettings
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.clock import FakeClock

SID = "AC" + "a" * 32
TOKEN = "wire-token"
BASE = "https://api.twilio.com"
CALLS = f"{BASE}/2010-04-01/Accounts/{SID}/Calls"
PUBLIC = "https://voice.example.com/voice/webhook"
CALL_SID = "CA" + "b" * 32
CALL_ID = "call-1"


@pytest.fixture
async def adapter() -> AsyncIterator[TwilioTelephony]:
    http = httpx.AsyncClient()
    telephony = TwilioTelephony(
        account_sid=SID,
        auth_token=TOKEN,
        api_base_url=BASE,
        public_url=PUBLIC,
        verifier=TwilioSignatureVerifier(TOKEN, UrlTrustSettings(public_url=PUBLIC)),
        clock=FakeClock(),
        http=http,
    )
    yield telephony
    await telephony.aclose()
    await http.aclose()


def a_call(state: CallState = CallState.LISTENING, pid: str | None = CALL_SID) -> Call:
    return Call(
        call_id=CALL_ID,
        provider="twilio",
        direction=CallDirection.OUTBOUND,
        from_number="+15550100000",
        to_number="+15557654321",
        mode=CallMode.CONVERSATION,
        started_at=0.0,
        state=state,
        provider_call_id=pid,
    )


def webhook(fields: dict[str, str], **query: str) -> WebhookRequest:
    return WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query=urlencode(query),
        headers=(("content-type", "application/x-www-form-urlencoded"),),
        body=urlencode(fields).encode(),
        peer="127.0.0.1",
    )


def fields(**extra: str) -> dict[str, str]:
    return {
        "AccountSid": SID,
        "CallSid": CALL_SID,
        "From": "+15557654321",
        "To": "+15550100000",
    } | extra


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), keep_blank_values=True)


def twiml_of(request: httpx.Request) -> ET.Element:
    return ET.fromstring(form_of(request)["Twiml"][0])


def basic(request: httpx.Request) -> str:
    header = request.headers["authorization"]
    assert header.startswith("Basic ")
    return base64.b64decode(header[6:]).decode()


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --------------------------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------------------------


@respx.mock
async def test_dial_creates_the_call_with_callbacks_carrying_our_id(
    adapter: TwilioTelephony,
) -> None:
    route = respx.post(f"{CALLS}.json").respond(201, json={"sid": CALL_SID, "status": "queued"})
    result = await adapter.dial(
        DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", 29.2)
    )
    assert result.provider_call_id == CALL_SID
    request = route.calls.last.request
    assert basic(request) == f"{SID}:{TOKEN}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = form_of(request)
    assert form["To"] == ["+15557654321"] and form["From"] == ["+15550100000"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert form["Timeout"] == ["30"]
    assert form["StatusCallbackMethod"] == ["POST"] and form["Method"] == ["POST"]
    assert form["Url"][0].startswith(PUBLIC + "?")
    assert query_of(form["Url"][0]) == {"callId": CALL_ID, "hook": "answer"}
    assert query_of(form["StatusCallback"][0]) == {"callId": CALL_ID, "hook": "status"}


@respx.mock
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(400, json={"code": 21211, "message": "Invalid 'To'"}), CarrierRejected),
        (httpx.Response(401, json={"code": 20003, "message": "Authenticate"}), CarrierRejected),
        (httpx.Response(503), TransientError),
        (httpx.Response(429, json={"code": 20429}), TransientError),
        (httpx.ConnectTimeout("slow"), TransientError),
        (httpx.ConnectError("refused"), TransientError),
    ],
)
async def test_dial_failures_are_translated(
    adapter: TwilioTelephony, answer: object, error: type[Exception]
) -> None:
    route = respx.post(f"{CALLS}.json")
    if isinstance(answer, Exception):
        route.side_effect = answer
    else:
        route.return_value = answer
    with pytest.raises(error):
        await adapter.dial(
            DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", 30)
        )


@respx.mock
async def test_speak_outside_a_webhook_updates_the_live_call(adapter: TwilioTelephony) -> None:
    route = respx.post(f"{CALLS}/{CALL_SID}.json").respond(200, json={"sid": CALL_SID})
    await adapter.speak(a_call(), "Hello & welcome", "alloy")
    request = route.calls.last.request
    assert basic(request) == f"{SID}:{TOKEN}"
    root = twiml_of(request)
    assert [verb.tag for verb in root] == ["Say", "Redirect"]
    assert root[0].text == "Hello & welcome" and root[0].get("voice") == "Polly.Joanna"
    # The redirect comes straight back so the next verbs need not cut the words off.
    assert query_of(root[1].text or "")["hook"] == "wait"
    assert root[1].get("method") == "POST"


@respx.mock
async def test_listen_outside_a_webhook_gathers_speech(adapter: TwilioTelephony) -> None:
    route = respx.post(f"{CALLS}/{CALL_SID}.json").respond(200, json={"sid": CALL_SID})
    await adapter.listen(a_call())
    [gather] = list(twiml_of(route.calls.last.request))
    assert gather.tag == "Gather"
    assert gather.get("input") == "speech"
    assert gather.get("speechTimeout") == "auto"
    assert gather.get("actionOnEmptyResult") == "true"
    action = query_of(gather.get("action") or "")
    assert action["callId"] == CALL_ID and action["hook"] == "gather" and action["turn"]
    # Listening again while Twilio already gathers sends nothing.
    await adapter.listen(a_call())
    assert route.call_count == 1


@respx.mock
async def test_verbs_before_the_answer_fetch_wait_for_it(adapter: TwilioTelephony) -> None:
    respx.post(f"{CALLS}.json").respond(201, json={"sid": CALL_SID})
    update = respx.post(f"{CALLS}/{CALL_SID}.json")
    await adapter.dial(
        DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "x", 30)
    )
    # The "answered" status callback came first; the service speaks from inside it.
    status = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="status")
    assert await adapter.parse_webhook(status) == [
        CallAnswered(
            call_id=CALL_ID, provider_call_id=CALL_SID, dedupe_key=f"twilio:{CALL_SID}:answered"
        )
    ]
    await adapter.speak(a_call(CallState.SPEAKING), "The build is green.", None)
    assert adapter.webhook_response(status, []).body.endswith(b"<Response />")
    assert update.call_count == 0
    fetch = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    await adapter.parse_webhook(fetch)
    root = ET.fromstring(adapter.webhook_response(fetch, [a_call()]).body)
    assert (root[0].tag, root[0].text) == ("Say", "The build is green.")


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"sid": CALL_SID, "status": "completed"}),
        httpx.Response(404, json={"code": 20404, "message": "not found", "status": 404}),
        httpx.Response(400, json={"code": 21220, "message": "not in-progress", "status": 400}),
    ],
)
async def test_hangup_is_idempotent(adapter: TwilioTelephony, answer: httpx.Response) -> None:
    route = respx.post(f"{CALLS}/{CALL_SID}.json").mock(return_value=answer)
    await adapter.hangup(a_call())
    assert form_of(route.calls.last.request) == {"Status": ["completed"]}


@respx.mock
async def test_hangup_failures_surface(adapter: TwilioTelephony) -> None:
    respx.post(f"{CALLS}/{CALL_SID}.json").respond(500)
    with pytest.raises(TransientError):
        await adapter.hangup(a_call())


@respx.mock
@pytest.mark.parametrize(
    ("twilio_status", "kind", "end"),
    [
        ("queued", CarrierStatusKind.LIVE, None),
        ("ringing", CarrierStatusKind.LIVE, None),
        ("in-progress", CarrierStatusKind.LIVE, None),
        ("completed", CarrierStatusKind.ENDED, CallState.COMPLETED),
        ("busy", CarrierStatusKind.ENDED, CallState.BUSY),
        ("no-answer", CarrierStatusKind.ENDED, CallState.NO_ANSWER),
        ("failed", CarrierStatusKind.ENDED, CallState.FAILED),
        ("canceled", CarrierStatusKind.ENDED, CallState.HANGUP_BOT),
    ],
)
async def test_status_reads_the_call(
    adapter: TwilioTelephony,
    twilio_status: str,
    kind: CarrierStatusKind,
    end: CallState | None,
) -> None:
    route = respx.get(f"{CALLS}/{CALL_SID}.json").respond(200, json={"status": twilio_status})
    status = await adapter.status(a_call())
    assert (status.kind, status.end_state) == (kind, end)
    assert basic(route.calls.last.request) == f"{SID}:{TOKEN}"


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [httpx.Response(503), httpx.Response(500), httpx.ReadTimeout("slow"), httpx.ConnectError("x")],
)
async def test_status_is_unknown_when_twilio_is_down(
    adapter: TwilioTelephony, answer: object
) -> None:
    route = respx.get(f"{CALLS}/{CALL_SID}.json")
    if isinstance(answer, Exception):
        route.side_effect = answer
    else:
        route.return_value = answer
    assert (await adapter.status(a_call())).kind is CarrierStatusKind.UNKNOWN


def test_openai_voices_map_to_polly() -> None:
    assert OPENAI_TO_TWILIO_VOICE == {
        "alloy": "Polly.Joanna",
        "echo": "Polly.Matthew",
        "fable": "Polly.Amy",
        "onyx": "Polly.Brian",
        "nova": "Polly.Salli",
        "shimmer": "Polly.Kimberly",
    }
    assert twilio_voice("Polly.Joey") == "Polly.Joey"
    assert twilio_voice(None) is None and twilio_voice("rachel") is None


# --------------------------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("twilio_status", "expected"),
    [
        (
            "queued",
            CallInitiated(
                call_id=CALL_ID,
                provider_call_id=CALL_SID,
                dedupe_key=f"twilio:{CALL_SID}:initiated",
            ),
        ),
        (
            "initiated",
            CallInitiated(
                call_id=CALL_ID,
                provider_call_id=CALL_SID,
                dedupe_key=f"twilio:{CALL_SID}:initiated",
            ),
        ),
        (
            "ringing",
            CallRinging(
                call_id=CALL_ID, provider_call_id=CALL_SID, dedupe_key=f"twilio:{CALL_SID}:ringing"
            ),
        ),
        (
            "in-progress",
            CallAnswered(
                call_id=CALL_ID, provider_call_id=CALL_SID, dedupe_key=f"twilio:{CALL_SID}:answered"
            ),
        ),
    ],
)
async def test_status_callbacks_become_progress_events(
    adapter: TwilioTelephony, twilio_status: str, expected: object
) -> None:
    request = webhook(fields(CallStatus=twilio_status), callId=CALL_ID, hook="status")
    assert await adapter.parse_webhook(request) == [expected]
    answer = adapter.webhook_response(request, [])
    assert answer.content_type == "text/xml" and answer.body.endswith(b"<Response />")


@pytest.mark.parametrize(
    ("twilio_status", "reason"),
    [
        ("completed", CallState.COMPLETED),
        ("busy", CallState.BUSY),
        ("failed", CallState.FAILED),
        ("no-answer", CallState.NO_ANSWER),
        ("canceled", CallState.HANGUP_BOT),
    ],
)
async def test_final_status_callbacks_end_the_call(
    adapter: TwilioTelephony, twilio_status: str, reason: CallState
) -> None:
    request = webhook(fields(CallStatus=twilio_status), callId=CALL_ID, hook="status")
    [event] = await adapter.parse_webhook(request)
    assert isinstance(event, CallEnded)
    assert event.reason is reason and event.call_id == CALL_ID
    assert event.key() == f"twilio:{CALL_SID}:ended"


async def test_inbound_voice_request_creates_and_answers(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="ringing", Direction="inbound", From="+15551230001"))
    initiated, answered = await adapter.parse_webhook(request)
    assert isinstance(initiated, CallInitiated)
    assert initiated.direction is CallDirection.INBOUND
    assert (initiated.from_number, initiated.to_number) == ("+15551230001", "+15550100000")
    assert initiated.provider_call_id == CALL_SID and initiated.call_id is None
    assert isinstance(answered, CallAnswered) and answered.provider_call_id == CALL_SID
    # The service answers, greets and listens while the webhook is being handled.
    inbound = a_call(CallState.ANSWERED)
    await adapter.answer(inbound)
    await adapter.speak(inbound, "Hello!", "nova")
    await adapter.listen(inbound)
    answer = adapter.webhook_response(request, [inbound])
    assert answer.content_type == "text/xml"
    root = ET.fromstring(answer.body)
    assert [verb.tag for verb in root] == ["Say", "Gather"]
    assert root[0].get("voice") == "Polly.Salli"
    assert query_of(root[1].get("action") or "")["callId"] == CALL_ID


async def test_rejected_inbound_call_gets_reject(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="ringing", Direction="inbound", From="anonymous"))
    await adapter.parse_webhook(request)
    await adapter.reject(a_call(CallState.RINGING))
    root = ET.fromstring(adapter.webhook_response(request, []).body)
    assert [(verb.tag, verb.get("reason")) for verb in root] == [("Reject", "rejected")]


async def test_notify_words_then_the_call_is_kept_open(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    [event] = await adapter.parse_webhook(request)
    assert event == CallAnswered(
        call_id=CALL_ID, provider_call_id=CALL_SID, dedupe_key=f"twilio:{CALL_SID}:answered"
    )
    await adapter.speak(a_call(CallState.SPEAKING), "Your order shipped.", None)
    root = ET.fromstring(adapter.webhook_response(request, [a_call(CallState.SPEAKING)]).body)
    assert [verb.tag for verb in root] == ["Say", "Redirect"]
    # Nothing to say: the wait fetch parks the call in a pause, then comes back.
    wait = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="wait", n="1")
    assert await adapter.parse_webhook(wait) == []
    root = ET.fromstring(adapter.webhook_response(wait, []).body)
    assert [verb.tag for verb in root] == ["Pause", "Redirect"]
    assert int(root[0].get("length") or 0) >= 10


async def test_an_ended_call_is_hung_up_in_the_answer(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="wait", n="2")
    await adapter.parse_webhook(request)
    root = ET.fromstring(adapter.webhook_response(request, [a_call(CallState.TIMEOUT)]).body)
    assert [verb.tag for verb in root] == ["Hangup"]


async def test_gather_result_is_final_speech_with_a_per_turn_key(adapter: TwilioTelephony) -> None:
    request = webhook(
        fields(CallStatus="in-progress", SpeechResult="Noon works.", Confidence="0.87"),
        callId=CALL_ID,
        hook="gather",
        turn="t1",
    )
    [event] = await adapter.parse_webhook(request)
    assert event == CallSpeech(
        call_id=CALL_ID,
        provider_call_id=CALL_SID,
        transcript="Noon works.",
        is_final=True,
        confidence=0.87,
        dedupe_key=f"twilio:{CALL_SID}:speech:t1",
    )
    # A Twilio retry of the same request carries the same key; the next turn another.
    assert (await adapter.parse_webhook(request))[0].key() == event.key()
    later = webhook(
        fields(CallStatus="in-progress", SpeechResult="Noon works."),
        callId=CALL_ID,
        hook="gather",
        turn="t2",
    )
    assert (await adapter.parse_webhook(later))[0].key() != event.key()


async def test_empty_gather_is_silence_and_listening_goes_on(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="gather", turn="t3")
    [event] = await adapter.parse_webhook(request)
    assert isinstance(event, CallSilence)
    root = ET.fromstring(adapter.webhook_response(request, [a_call()]).body)
    assert [verb.tag for verb in root] == ["Gather"]


@pytest.mark.parametrize(
    "request_",
    [
        webhook({"CallStatus": "completed"}, hook="status"),  # no CallSid
        webhook(fields(), callId=CALL_ID, hook="status"),  # no CallStatus
        webhook(fields(CallStatus="in-progress"), hook="bogus"),
        webhook(fields(CallStatus="in-progress", Direction="outbound-api")),  # no hook
        WebhookRequest("POST", "/voice/webhook", "", (), b"\xff\xfe", None),
        WebhookRequest("POST", "/voice/webhook", "", (), b'{"CallSid": "CA1"}', None),
        WebhookRequest("POST", "/voice/webhook", "hook=status", (), b"CallSid=CA%ZZ&x", None),
    ],
)
async def test_malformed_webhooks_are_caller_errors(
    adapter: TwilioTelephony, request_: WebhookRequest
) -> None:
    with pytest.raises(CallerError):
        await adapter.parse_webhook(request_)


async def test_unknown_call_status_is_ignored(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="teleported"), callId=CALL_ID, hook="status")
    assert await adapter.parse_webhook(request) == []


@respx.mock
async def test_twilio_coming_back_before_the_update_answer_is_not_missed(
    adapter: TwilioTelephony,
) -> None:
    """Twilio may run an update's TwiML, reach its <Redirect> and fetch from us before the
    update's REST answer arrives. That fetch parks the call; a verb asked for afterwards must
    go out at once, not wait for a fetch that comes only after the long <Pause>."""
    answers: list[ET.Element] = []

    async def update_then_fetch_first(request: httpx.Request) -> httpx.Response:
        if [verb.tag for verb in twiml_of(request)] == ["Say", "Redirect"]:
            redirect = twiml_of(request)[1].text or ""
            wait = webhook(fields(CallStatus="in-progress"), **query_of(redirect))
            await adapter.parse_webhook(wait)
            answered = adapter.webhook_response(wait, [a_call()])
            answers.append(ET.fromstring(answered.body))
        return httpx.Response(200, json={"sid": CALL_SID})

    update = respx.post(f"{CALLS}/{CALL_SID}.json").mock(side_effect=update_then_fetch_first)
    await adapter.speak(a_call(), "Here is my answer.", None)
    assert [verb.tag for verb in answers[0]] == ["Pause", "Redirect"]  # parked
    await adapter.listen(a_call())
    assert update.call_count == 2
    assert [verb.tag for verb in twiml_of(update.calls.last.request)] == ["Gather"]
