"""Twilio on the wire: the exact REST requests the adapter makes (faked with respx) and how it
reads Twilio's webhooks and answers them."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
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
    CallEvent,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeech,
    SpeechPlayed,
    SpeechStarted,
)
from voicecall.domain.ports import CarrierStatusKind, DialRequest
from voicecall.domain.signed_url import UrlTrustSettings
from voicecall.domain.speech import AfterSpeech, Playback, SpokenLine
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.clock import FakeClock

SID = "AC" + "a" * 32
TOKEN = "wire-token"
BASE = "https://api.twilio.com"
CALLS = f"{BASE}/2010-04-01/Accounts/{SID}/Calls"
PUBLIC = "https://voice.example.com/voice/webhook"
CALL_SID = "CA" + "b" * 32
CALL_ID = "call-1"


class Sink:
    """Collects the events the adapter delivers outside webhooks (speech.started)."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    async def __call__(self, events: Sequence[CallEvent]) -> None:
        self.events.extend(events)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
async def adapter(clock: FakeClock, sink: Sink) -> AsyncIterator[TwilioTelephony]:
    http = httpx.AsyncClient()
    telephony = TwilioTelephony(
        account_sid=SID,
        auth_token=TOKEN,
        api_base_url=BASE,
        public_url=PUBLIC,
        verifier=TwilioSignatureVerifier(TOKEN, UrlTrustSettings(public_url=PUBLIC)),
        clock=clock,
        http=http,
    )
    telephony.bind(sink)
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
        # Twilio does not say who hung up: a call we did not end was ended by the caller.
        ("completed", CallState.HANGUP_USER),
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


async def test_an_ended_call_is_hung_up_in_the_answer(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="wait", n="2")
    await adapter.parse_webhook(request)
    root = ET.fromstring(adapter.webhook_response(request, [a_call(CallState.TIMEOUT)]).body)
    assert [verb.tag for verb in root] == ["Hangup"]


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


# --------------------------------------------------------------------------------------------
# Speech: the TwiML documents, one per turn (documents.py), and when a live update is used
# --------------------------------------------------------------------------------------------

XML = '<?xml version="1.0" encoding="UTF-8"?>'
HOOK = "https://voice.example.com/voice/webhook?callId=call-1&amp;"
GATHER = 'actionOnEmptyResult="true" input="speech" method="POST" speechTimeout="auto"'


def masked(body: bytes | str) -> str:
    """The TwiML with the per-document tokens (turn, n) replaced by ``T``."""
    text = body.decode() if isinstance(body, bytes) else body
    return re.sub(r"(turn|n)=[0-9a-f]{12}", r"\1=T", text)


def line(uid: str, text: str, voice: str | None = None) -> SpokenLine:
    return SpokenLine(uid, text, voice)


def prompt(uid: str, text: str) -> Playback:
    return Playback(lines=(line(uid, text),), then=AfterSpeech.LISTEN)


async def fetch(
    adapter: TwilioTelephony, call: Call | None = None, **query: str
) -> tuple[list[CallEvent], str]:
    """Twilio requests TwiML with ``query``; returns the events and the masked answer."""
    extra = {k: v for k, v in query.items() if k in ("SpeechResult", "Confidence")}
    query = {"callId": CALL_ID} | {k: v for k, v in query.items() if k not in extra}
    request = webhook(fields(CallStatus="in-progress", **extra), **query)
    events = list(await adapter.parse_webhook(request))
    answer = adapter.webhook_response(request, [call or a_call()])
    assert answer.content_type == "text/xml"
    return events, masked(answer.body)


async def started(clock: FakeClock, sink: Sink) -> list[str]:
    await clock.advance(0)
    return [e.utterance_id for e in sink.events if isinstance(e, SpeechStarted)]


async def test_a_prompt_is_said_inside_the_gather_and_nothing_follows(
    adapter: TwilioTelephony, clock: FakeClock, sink: Sink
) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    await adapter.parse_webhook(request)
    # The service answers the webhook it is handling: the prompt goes into its answer.
    await adapter.play(a_call(CallState.SPEAKING), prompt("u1", "Can you talk?"), reply_to=request)
    body = masked(adapter.webhook_response(request, [a_call()]).body)
    assert body == (
        f"{XML}<Response>"
        f'<Gather action="{HOOK}hook=gather&amp;u=u1&amp;turn=T" {GATHER}>'
        "<Say>Can you talk?</Say></Gather></Response>"
    )
    assert await started(clock, sink) == ["u1"]
    # The caller's answer names the prompt it went with and reports the prompt played.
    events, answer = await fetch(
        adapter, hook="gather", u="u1", turn="t1", SpeechResult="Yes.", Confidence="0.9"
    )
    assert events == [
        SpeechPlayed(
            call_id=CALL_ID,
            provider_call_id=CALL_SID,
            utterance_id="u1",
            dedupe_key=f"twilio:{CALL_SID}:played:u1",
        ),
        CallSpeech(
            call_id=CALL_ID,
            provider_call_id=CALL_SID,
            transcript="Yes.",
            is_final=True,
            confidence=0.9,
            heard_after="u1",
            dedupe_key=f"twilio:{CALL_SID}:speech:t1",
        ),
    ]
    # The listen is answered and the bot has nothing to say: the call is parked.
    assert answer == (
        f'{XML}<Response><Pause length="30" />'
        f'<Redirect method="POST">{HOOK}hook=wait&amp;n=T</Redirect></Response>'
    )


async def test_silence_in_the_gather_listens_again_after_the_same_line(
    adapter: TwilioTelephony,
) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    await adapter.parse_webhook(request)
    await adapter.play(a_call(), prompt("u1", "Hello?"), reply_to=request)
    adapter.webhook_response(request, [a_call()])
    events, answer = await fetch(adapter, hook="gather", u="u1", turn="t2")
    assert isinstance(events[1], CallSilence)
    assert answer == (
        f'{XML}<Response><Gather action="{HOOK}hook=gather&amp;u=u1&amp;turn=T" {GATHER} />'
        "</Response>"
    )


async def test_notify_says_the_message_then_holds_and_hangs_up(
    adapter: TwilioTelephony, clock: FakeClock, sink: Sink
) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    await adapter.parse_webhook(request)
    notify = Playback(
        lines=(line("m1", "Your order shipped.", "alloy"),),
        then=AfterSpeech.HANGUP,
        hangup_after_s=2.0,
    )
    await adapter.play(a_call(CallState.SPEAKING), notify, reply_to=request)
    body = masked(adapter.webhook_response(request, [a_call()]).body)
    assert body == (
        f'{XML}<Response><Say voice="Polly.Joanna">Your order shipped.</Say>'
        f'<Redirect method="POST">{HOOK}hook=wait&amp;u=m1&amp;n=T</Redirect></Response>'
    )
    assert await started(clock, sink) == ["m1"]
    # The Redirect's fetch comes once the Say was said: the message was played.
    events, answer = await fetch(adapter, hook="wait", u="m1", n="1")
    assert events == [
        SpeechPlayed(
            call_id=CALL_ID,
            provider_call_id=CALL_SID,
            utterance_id="m1",
            dedupe_key=f"twilio:{CALL_SID}:played:m1",
        )
    ]
    assert answer == f'{XML}<Response><Pause length="2" /><Hangup /></Response>'
    # That hang-up was ours: Twilio's "completed" is then not the callee's.
    status = webhook(fields(CallStatus="completed"), callId=CALL_ID, hook="status")
    [ended] = await adapter.parse_webhook(status)
    assert isinstance(ended, CallEnded) and ended.reason is CallState.COMPLETED


@respx.mock
async def test_a_line_asked_for_while_another_plays_joins_the_next_fetch(
    adapter: TwilioTelephony, clock: FakeClock, sink: Sink
) -> None:
    update = respx.post(f"{CALLS}/{CALL_SID}.json").respond(200, json={"sid": CALL_SID})
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    await adapter.parse_webhook(request)
    await adapter.play(a_call(), Playback(lines=(line("u1", "First line."),)), reply_to=request)
    adapter.webhook_response(request, [a_call()])
    # Twilio is saying "First line." now: a live update would cut it, so none is made.
    await adapter.play(a_call(), prompt("u2", "Second line?"))
    assert update.call_count == 0
    assert await started(clock, sink) == ["u1"]
    events, answer = await fetch(adapter, hook="wait", u="u1", n="1")
    assert [e.utterance_id for e in events if isinstance(e, SpeechPlayed)] == ["u1"]
    assert answer == (
        f'{XML}<Response><Gather action="{HOOK}hook=gather&amp;u=u2&amp;turn=T" {GATHER}>'
        "<Say>Second line?</Say></Gather></Response>"
    )
    assert await started(clock, sink) == ["u1", "u2"]


async def test_one_new_line_per_document(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    await adapter.parse_webhook(request)
    two = Playback(lines=(line("u1", "One."), line("u2", "Two?")), then=AfterSpeech.LISTEN)
    await adapter.play(a_call(), two, reply_to=request)
    first = masked(adapter.webhook_response(request, [a_call()]).body)
    assert first == (
        f'{XML}<Response><Say>One.</Say><Redirect method="POST">'
        f"{HOOK}hook=wait&amp;u=u1&amp;n=T</Redirect></Response>"
    )
    _, second = await fetch(adapter, hook="wait", u="u1", n="1")
    assert "<Say>Two?</Say></Gather>" in second and "u=u2" in second


@respx.mock
async def test_a_live_update_is_used_only_when_nothing_plays(
    adapter: TwilioTelephony, clock: FakeClock, sink: Sink
) -> None:
    update = respx.post(f"{CALLS}/{CALL_SID}.json").respond(200, json={"sid": CALL_SID})
    # The call is parked: nothing is being said.
    _, parked = await fetch(adapter, hook="wait", n="1")
    assert "<Pause" in parked
    await adapter.play(a_call(), prompt("u3", "Lunch at noon?"))
    assert update.call_count == 1
    request = update.calls.last.request
    assert basic(request) == f"{SID}:{TOKEN}"
    assert masked(form_of(request)["Twiml"][0]) == (
        f'{XML}<Response><Gather action="{HOOK}hook=gather&amp;u=u3&amp;turn=T" {GATHER}>'
        "<Say>Lunch at noon?</Say></Gather></Response>"
    )
    assert await started(clock, sink) == ["u3"]
    # Now Twilio says it: the next line waits for the Gather's action.
    await adapter.play(a_call(), prompt("u4", "Or one?"))
    assert update.call_count == 1
    _, answer = await fetch(adapter, hook="gather", u="u3", turn="t", SpeechResult="Sure.")
    assert "<Say>Or one?</Say></Gather>" in answer


@respx.mock
async def test_twilio_coming_back_before_the_update_answer_is_not_missed(
    adapter: TwilioTelephony,
) -> None:
    """Twilio may run an update's TwiML and fetch from us before the update's REST answer
    arrives; the state is recorded before the request, so that fetch is answered right."""
    answers: list[str] = []

    async def update_then_fetch_first(request: httpx.Request) -> httpx.Response:
        document = twiml_of(request)
        if [verb.tag for verb in document] == ["Say", "Redirect"]:
            _, answer = await fetch(adapter, **query_of(document[1].text or ""))
            answers.append(answer)
        return httpx.Response(200, json={"sid": CALL_SID})

    update = respx.post(f"{CALLS}/{CALL_SID}.json").mock(side_effect=update_then_fetch_first)
    await fetch(adapter, hook="wait", n="0")  # parked
    await adapter.play(a_call(), Playback(lines=(line("u1", "Here is my answer."),)))
    assert update.call_count == 1
    assert "<Pause" in answers[0]  # played, nothing more to say: parked again
    await adapter.play(a_call(), prompt("u2", "Anything else?"))
    assert update.call_count == 2  # parked, so the update goes out at once


@respx.mock
async def test_a_failed_update_drops_the_lines_and_says_so(adapter: TwilioTelephony) -> None:
    respx.post(f"{CALLS}/{CALL_SID}.json").respond(
        400, json={"code": 21220, "message": "not in-progress", "status": 400}
    )
    await fetch(adapter, hook="wait", n="0")
    with pytest.raises(CarrierRejected):
        await adapter.play(a_call(), prompt("u1", "Hello?"))
    # The failed line is not said later either.
    _, answer = await fetch(adapter, hook="wait", n="1")
    assert "Hello?" not in answer


@respx.mock
async def test_a_hangup_we_asked_for_ends_completed(adapter: TwilioTelephony) -> None:
    respx.post(f"{CALLS}/{CALL_SID}.json").respond(200, json={"sid": CALL_SID})
    await adapter.hangup(a_call())
    status = webhook(fields(CallStatus="completed"), callId=CALL_ID, hook="status")
    [ended] = await adapter.parse_webhook(status)
    assert isinstance(ended, CallEnded) and ended.reason is CallState.COMPLETED


async def test_inbound_is_greeted_in_the_voice_answer(
    adapter: TwilioTelephony, clock: FakeClock, sink: Sink
) -> None:
    request = webhook(fields(CallStatus="ringing", Direction="inbound", From="+15551230001"))
    initiated, answered = await adapter.parse_webhook(request)
    assert isinstance(initiated, CallInitiated)
    assert initiated.direction is CallDirection.INBOUND
    assert (initiated.from_number, initiated.to_number) == ("+15551230001", "+15550100000")
    assert initiated.provider_call_id == CALL_SID and initiated.call_id is None
    assert isinstance(answered, CallAnswered) and answered.provider_call_id == CALL_SID
    inbound = a_call(CallState.ANSWERED)
    await adapter.answer(inbound, reply_to=request)
    greeting = Playback(lines=(line("g1", "Hello!", "nova"),), then=AfterSpeech.LISTEN)
    await adapter.play(inbound, greeting, reply_to=request)
    body = masked(adapter.webhook_response(request, [inbound]).body)
    assert body == (
        f'{XML}<Response><Gather action="{HOOK}hook=gather&amp;u=g1&amp;turn=T" {GATHER}>'
        '<Say voice="Polly.Salli">Hello!</Say></Gather></Response>'
    )
    assert await started(clock, sink) == ["g1"]


async def test_rejected_inbound_call_gets_reject(adapter: TwilioTelephony) -> None:
    request = webhook(fields(CallStatus="ringing", Direction="inbound", From="anonymous"))
    await adapter.parse_webhook(request)
    await adapter.reject(a_call(CallState.RINGING), reply_to=request)
    root = ET.fromstring(adapter.webhook_response(request, []).body)
    assert [(verb.tag, verb.get("reason")) for verb in root] == [("Reject", "rejected")]


async def test_status_callbacks_get_the_empty_answer_and_carry_no_verbs(
    adapter: TwilioTelephony,
) -> None:
    # The "answered" status callback may come before the answer fetch (it travels apart):
    # its answer cannot carry verbs, so the opening line waits for the fetch.
    status = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="status")
    await adapter.parse_webhook(status)
    await adapter.play(a_call(CallState.SPEAKING), prompt("u1", "Hi."), reply_to=status)
    assert adapter.webhook_response(status, []).body.endswith(b"<Response />")
    _, answer = await fetch(adapter, hook="answer")
    assert "<Say>Hi.</Say></Gather>" in answer


# --------------------------------------------------------------------------------------------
# Fetches for calls we do not hold
# --------------------------------------------------------------------------------------------

UNKNOWN_SID = "CA" + "f" * 32


@pytest.mark.parametrize(
    "request_",
    [
        webhook(fields(CallSid=UNKNOWN_SID, CallStatus="in-progress"), callId="nope", hook="wait"),
        webhook(
            fields(CallSid=UNKNOWN_SID, CallStatus="in-progress", SpeechResult="hello"),
            callId="nope",
            hook="gather",
        ),
        webhook(fields(CallSid=UNKNOWN_SID, CallStatus="in-progress"), hook="stream", turn="t"),
    ],
    ids=["wait", "gather", "stream"],
)
async def test_a_mid_call_fetch_for_an_unknown_call_is_hung_up_not_parked(
    adapter: TwilioTelephony, request_: WebhookRequest
) -> None:
    # Found probing a gateway: a signed wait fetch for a call it did not know was answered
    # <Pause length="30"/><Redirect>, and so was every one after it, for as long as Twilio
    # kept the call up.
    await adapter.parse_webhook(request_)
    root = ET.fromstring(adapter.webhook_response(request_, []).body)
    assert [verb.tag for verb in root] == ["Hangup"]
    again = webhook(fields(CallSid=UNKNOWN_SID, CallStatus="in-progress"), hook="wait")
    await adapter.parse_webhook(again)
    assert [verb.tag for verb in ET.fromstring(adapter.webhook_response(again, []).body)] == [
        "Hangup"
    ]


@respx.mock
async def test_a_dialled_call_parked_between_lines_stays_parked(adapter: TwilioTelephony) -> None:
    respx.post(f"{CALLS}.json").respond(201, json={"sid": CALL_SID, "status": "queued"})
    await adapter.dial(
        DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.CONVERSATION, "hi", 30)
    )
    answer = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="answer")
    await adapter.parse_webhook(answer)
    adapter.webhook_response(answer, [a_call(CallState.ANSWERED)])
    # A parked call's round trip carries no news, so the service hands back no call.
    wait = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="wait", n="1")
    await adapter.parse_webhook(wait)
    root = ET.fromstring(adapter.webhook_response(wait, []).body)
    assert [verb.tag for verb in root] == ["Pause", "Redirect"]


async def test_a_call_restored_after_a_restart_stays_parked(adapter: TwilioTelephony) -> None:
    adapter.restore(a_call(CallState.LISTENING), Playback(lines=()))
    wait = webhook(fields(CallStatus="in-progress"), callId=CALL_ID, hook="wait", n="1")
    await adapter.parse_webhook(wait)
    root = ET.fromstring(adapter.webhook_response(wait, []).body)
    assert [verb.tag for verb in root] == ["Pause", "Redirect"]
