"""The Plivo adapter on the wire: exact REST requests (respx) and webhook parsing.

Wire facts: Plivo Voice API reference (Make a Call, Transfer a Call, Hangup a Call, Retrieve a
live call / a CDR, Cancel a queued call) and the XML reference (GetInput action parameters
``InputType``/``Speech``/``SpeechConfidenceScore``, hang-up URL parameters ``CallStatus``/
``HangupCause``/``HangupCauseName``/``HangupSource``), cross-checked with plivo-python.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence
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
    CallEvent,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeech,
    SpeechPlayed,
    SpeechStarted,
)
from voicecall.domain.ports import CarrierStatusKind, DialRequest
from voicecall.domain.speech import AfterSpeech, Playback, SpokenLine
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
        await adapter.reject(call, reply_to=request)
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
        ({"CallStatus": "completed", "HangupSource": "Call recipient"}, CallState.HANGUP_USER),
        ({"CallStatus": "completed", "HangupSource": "Caller"}, CallState.HANGUP_USER),
        ({"CallStatus": "completed", "HangupSource": "Answer XML"}, CallState.COMPLETED),
        (
            {
                "CallStatus": "completed",
                "HangupSource": "Answer XML",
                "HangupCauseName": "Rejected",
            },
            CallState.HANGUP_BOT,
        ),
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
        query={"callId": "call-1", "kind": "input", "doc": "t1", "after": "u-prompt"},
    )
    active, speech = await adapter.parse_webhook(request)
    assert isinstance(active, CallActive)
    assert isinstance(speech, CallSpeech)
    assert speech.transcript == "Noon works." and speech.is_final
    assert speech.confidence == pytest.approx(0.91)
    assert speech.heard_after == "u-prompt"
    assert speech.dedupe_key == f"plivo:{CALL_UUID}:input:t1"
    # Answered with XML that keeps the call up, not an empty document (which hangs up).
    root = ElementTree.fromstring(adapter.webhook_response(request, [live_call()]).body)
    assert [child.tag for child in root] == ["Wait", "Redirect"]


async def test_digits_and_silence_input_webhooks(adapter: PlivoTelephony) -> None:
    digits = webhook(
        {"CallUUID": CALL_UUID, "InputType": "dtmf", "Digits": "42", "Speech": ""},
        query={"callId": "call-1", "kind": "input", "doc": "t2"},
    )
    assert isinstance((await adapter.parse_webhook(digits))[1], CallDtmf)
    nothing = webhook(
        {"CallUUID": CALL_UUID, "InputType": "speech", "Digits": "", "Speech": ""},
        query={"callId": "call-1", "kind": "input", "doc": "t3"},
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
        query={"callId": "call-1", "kind": "partial", "doc": "t1"},
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


# ------------------------------------------------------------------ speech: the documents we serve
#
# One document per turn, at most one line not yet played in it; the URL after the line names
# it, so Plivo's next fetch says it was played. Expected bytes are what Plivo's XML reference
# documents: <GetInput> with the prompt nested (https://plivo.com/docs/voice/xml/getinput),
# <Speak> then <Redirect>, <Wait length> then <Hangup>.


def prompt(utterance_id: str, text: str, voice: str | None = None) -> Playback:
    return Playback(lines=(SpokenLine(utterance_id, text, voice),), then=AfterSpeech.LISTEN)


def notify(utterance_id: str, text: str, hold_s: float) -> Playback:
    return Playback(
        lines=(SpokenLine(utterance_id, text),), then=AfterSpeech.HANGUP, hangup_after_s=hold_s
    )


def url(**query: str) -> str:
    return f"{PUBLIC}?{urlencode({'callId': 'call-1'} | query)}".replace("&", "&amp;")


def fetch(**query: str) -> WebhookRequest:
    return webhook(
        {"CallUUID": CALL_UUID, "CallStatus": "in-progress", "Direction": "outbound"},
        query={"callId": "call-1"} | query,
    )


class Sink:
    """The service's event sink, as the adapter sees it: records what it was given."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    async def __call__(self, events: Sequence[CallEvent]) -> None:
        self.events.extend(events)


async def answered(adapter: PlivoTelephony) -> tuple[WebhookRequest, Call, Sink]:
    sink = Sink()
    adapter.bind(sink)
    answer = fetch(kind="answer")
    assert [type(e) for e in await adapter.parse_webhook(answer)] == [CallAnswered]
    return answer, live_call(state=CallState.ANSWERED), sink


async def test_a_prompt_is_a_getinput_with_the_speak_nested(adapter: PlivoTelephony) -> None:
    answer, call, sink = await answered(adapter)
    with respx.mock:  # inside the answer fetch: XML, no REST
        await adapter.play(call, prompt("u1", "Can you talk?", "alloy"), reply_to=answer)
    body = adapter.webhook_response(answer, [call]).body
    assert (
        body
        == (
            "<Response>"
            f'<GetInput action="{url(kind="input", doc="1", played="u1", after="u1")}" '
            'method="POST" inputType="speech" executionTimeout="15" redirect="true">'
            '<Speak voice="Polly.Joanna">Can you talk?</Speak>'
            "</GetInput>"
            '<Redirect method="POST">'
            f"{url(kind='xml', doc='1', played='u1', after='u1', silence='1')}</Redirect>"
            "</Response>"
        ).encode()
    )
    await asyncio.sleep(0)
    assert sink.events == [
        SpeechStarted(
            call_id="call-1",
            provider_call_id=CALL_UUID,
            utterance_id="u1",
            dedupe_key=f"plivo:{CALL_UUID}:started:u1",
        )
    ]
    # The caller answers over the prompt: the prompt is played and the reply names it.
    reply = webhook(
        {"CallUUID": CALL_UUID, "InputType": "speech", "Speech": "Yes.", "Digits": ""},
        query={"callId": "call-1", "kind": "input", "doc": "1", "played": "u1", "after": "u1"},
    )
    active, played, speech = await adapter.parse_webhook(reply)
    assert isinstance(active, CallActive)
    assert isinstance(played, SpeechPlayed) and played.utterance_id == "u1"
    assert isinstance(speech, CallSpeech) and speech.heard_after == "u1"
    # Listening is over; the line is kept open and silent until there is more to say.
    assert (
        adapter.webhook_response(reply, [call]).body
        == (
            f'<Response><Wait length="60"/><Redirect method="POST">{url(kind="xml", doc="2")}'
            "</Redirect></Response>"
        ).encode()
    )


async def test_silence_falls_through_to_a_redirect_that_listens_again(
    adapter: PlivoTelephony,
) -> None:
    answer, call, _ = await answered(adapter)
    await adapter.play(call, prompt("u1", "Still there?"), reply_to=answer)
    adapter.webhook_response(answer, [call])
    # GetInput heard nothing within executionTimeout: Plivo runs the next element.
    silence = fetch(kind="xml", doc="1", played="u1", after="u1", silence="1")
    events = await adapter.parse_webhook(silence)
    assert [type(e) for e in events] == [CallActive, SpeechPlayed, CallSilence]
    assert (
        adapter.webhook_response(silence, [call]).body
        == (
            f'<Response><GetInput action="{url(kind="input", doc="2", after="u1")}" '
            'method="POST" inputType="speech" executionTimeout="15" redirect="true"/>'
            f'<Redirect method="POST">{url(kind="xml", doc="2", silence="1", after="u1")}'
            "</Redirect></Response>"
        ).encode()
    )


async def test_a_notify_message_is_speak_then_redirect_then_hold_and_hang_up(
    adapter: PlivoTelephony,
) -> None:
    answer, call, _ = await answered(adapter)
    call.mode = CallMode.NOTIFY
    await adapter.play(call, notify("u1", "The build is green.", 2.0), reply_to=answer)
    assert (
        adapter.webhook_response(answer, [call]).body
        == (
            "<Response><Speak>The build is green.</Speak>"
            f'<Redirect method="POST">{url(kind="xml", doc="1", played="u1")}</Redirect>'
            "</Response>"
        ).encode()
    )
    # The Redirect fetch is the news that the message was heard whole.
    heard = fetch(kind="xml", doc="1", played="u1")
    active, played = await adapter.parse_webhook(heard)
    assert isinstance(active, CallActive)
    assert isinstance(played, SpeechPlayed) and played.utterance_id == "u1"
    assert played.dedupe_key == f"plivo:{CALL_UUID}:played:u1"
    body = adapter.webhook_response(heard, [call]).body
    assert body == b'<Response><Wait length="2"/><Hangup/></Response>'


async def test_a_line_asked_for_while_another_plays_joins_the_next_fetch(
    adapter: PlivoTelephony,
) -> None:
    answer, call, _ = await answered(adapter)
    await adapter.play(call, prompt("u1", "Hello there."), reply_to=answer)
    adapter.webhook_response(answer, [call])
    with respx.mock:  # u1 is playing: no transfer, which would cut it
        await adapter.play(call, prompt("u2", "First of two."))
        await adapter.play(call, prompt("u3", "Second of two."))
    # The caller answers the opening: the next line rides on that fetch, alone.
    reply = webhook(
        {"CallUUID": CALL_UUID, "InputType": "speech", "Speech": "Hi.", "Digits": ""},
        query={"callId": "call-1", "kind": "input", "doc": "1", "played": "u1", "after": "u1"},
    )
    await adapter.parse_webhook(reply)
    assert (
        adapter.webhook_response(reply, [call]).body
        == (
            "<Response><Speak>First of two.</Speak>"
            f'<Redirect method="POST">{url(kind="xml", doc="2", played="u2")}</Redirect>'
            "</Response>"
        ).encode()
    )
    after_first = fetch(kind="xml", doc="2", played="u2")
    await adapter.parse_webhook(after_first)
    root = ElementTree.fromstring(adapter.webhook_response(after_first, [call]).body)
    gather, _redirect = list(root)
    assert gather.tag == "GetInput" and [s.text for s in gather] == ["Second of two."]
    assert query_of(gather.get("action") or "")["after"] == "u3"


@respx.mock
async def test_a_transfer_is_used_only_when_nothing_plays(adapter: PlivoTelephony) -> None:
    route = respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(
        return_value=httpx.Response(202, json={"message": "call transferred"})
    )
    answer, call, _ = await answered(adapter)
    await adapter.play(call, prompt("u1", "Hello there."), reply_to=answer)
    adapter.webhook_response(answer, [call])
    reply = webhook(
        {"CallUUID": CALL_UUID, "InputType": "speech", "Speech": "Hi.", "Digits": ""},
        query={"callId": "call-1", "kind": "input", "doc": "1", "played": "u1", "after": "u1"},
    )
    await adapter.parse_webhook(reply)
    adapter.webhook_response(reply, [call])  # parked in <Wait>: nothing plays
    assert route.call_count == 0

    await adapter.play(call, prompt("u2", "One more thing."))
    assert route.call_count == 1
    sent = route.calls.last.request
    assert basic_auth(sent) == f"{AUTH_ID}:{AUTH_TOKEN}"
    body = json.loads(sent.content)
    assert body["legs"] == "aleg" and body["aleg_method"] == "POST"
    token = query_of(body["aleg_url"])["doc"]
    assert query_of(body["aleg_url"]) == {"callId": "call-1", "kind": "xml", "doc": token}

    # A GetInput action from the document the transfer abandoned crosses it: the caller's
    # words still count, but its answer (which Plivo drops) takes nothing from the queue.
    crossing = webhook(
        {"CallUUID": CALL_UUID, "InputType": "speech", "Speech": "Wait!", "Digits": ""},
        query={"callId": "call-1", "kind": "input", "doc": "2", "after": "u1"},
    )
    events = await adapter.parse_webhook(crossing)
    assert any(isinstance(e, CallSpeech) and e.transcript == "Wait!" for e in events)
    stale = ElementTree.fromstring(adapter.webhook_response(crossing, [call]).body)
    assert [child.tag for child in stale] == ["Wait", "Redirect"]

    transferred = fetch(kind="xml", doc=token)
    await adapter.parse_webhook(transferred)
    root = ElementTree.fromstring(adapter.webhook_response(transferred, [call]).body)
    assert [s.text for s in root[0]] == ["One more thing."]
    # Playing again: the next line waits for Plivo's next fetch.
    await adapter.play(call, prompt("u3", "And another."))
    assert route.call_count == 1


@respx.mock
async def test_transfer_of_an_ended_call_is_rejected(adapter: PlivoTelephony) -> None:
    respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(
        return_value=httpx.Response(404, json={"error": "not found"})
    )
    with pytest.raises(CarrierRejected):
        await adapter.play(live_call(), prompt("u1", "hi"))


@respx.mock
async def test_transfer_5xx_is_transient(adapter: PlivoTelephony) -> None:
    respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(return_value=httpx.Response(502))
    with pytest.raises(TransientError):
        await adapter.play(live_call(), prompt("u1", "hi"))
