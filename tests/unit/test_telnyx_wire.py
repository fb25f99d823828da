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
from voicecall.domain.events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallInitiated,
    CallSpeech,
    SpeechPlayed,
    SpeechStarted,
)
from voicecall.domain.ports import CarrierStatusKind, DialRequest
from voicecall.domain.speech import AfterSpeech, Playback, SpokenLine
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


def line(uid: str, text: str, voice: str | None = None) -> SpokenLine:
    return SpokenLine(utterance_id=uid, text=text, voice=voice)


def prompt(*lines: SpokenLine) -> Playback:
    return Playback(lines=lines, then=AfterSpeech.LISTEN)


def commands(since: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The commands sent (from the ``since``-th request on): (action, JSON body)."""
    return [
        (call.request.url.path.rsplit("/", 1)[-1], json.loads(call.request.content))
        for call in list(respx.calls)[since:]
    ]


async def answered_inbound(adapter: TelnyxTelephony) -> int:
    """Answer the inbound call; returns how many requests that took."""
    respx.post(action_url("answer")).mock(return_value=ok())
    await adapter.answer(live_call(CallDirection.INBOUND))
    return len(respx.calls)


@respx.mock
async def test_a_prompt_with_listen_is_a_speak_then_final_only_transcription(
    adapter: TelnyxTelephony,
) -> None:
    since = await answered_inbound(adapter)
    respx.post(action_url("speak")).mock(return_value=ok())
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    await adapter.play(live_call(), prompt(line("u1", "Can you talk?", "onyx")))
    state = encode_client_state(CALL_ID)
    assert commands(since) == [
        (
            "speak",
            {
                "payload": "Can you talk?",
                "payload_type": "text",
                "voice": "AWS.Polly.Stephen-Neural",
                "language": "en-US",
                "client_state": state,
                "command_id": "speak-u1",
            },
        ),
        (
            "transcription_start",
            {
                "transcription_engine": "Google",
                "transcription_engine_config": {
                    "transcription_engine": "Google",
                    "language": "en",
                    "interim_results": False,
                },
                "transcription_tracks": "inbound",
                "client_state": state,
                "command_id": commands(since)[1][1]["command_id"],
            },
        ),
    ]
    assert respx.calls.last.request.headers["authorization"] == f"Bearer {API_KEY}"
    # Transcription stays on: the next prompt is one more speak, nothing stopped or restarted.
    since = len(respx.calls)
    await adapter.play(live_call(), prompt(line("u2", "Lunch at noon?")))
    assert [action for action, _ in commands(since)] == ["speak"]


@respx.mock
async def test_a_notify_is_one_speak_and_the_hold_and_hangup_are_left_to_the_service(
    adapter: TelnyxTelephony,
) -> None:
    respx.post(f"{API}/calls").mock(
        return_value=httpx.Response(200, json={"data": {"call_control_id": PID}})
    )
    respx.post(action_url("speak")).mock(return_value=ok())
    await adapter.dial(
        DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "Ready.", 30)
    )
    since = len(respx.calls)
    notify = Playback(
        lines=(line("u1", "Your table is ready."),), then=AfterSpeech.HANGUP, hangup_after_s=1.0
    )
    await adapter.play(live_call(), notify)
    assert [(action, body["payload"]) for action, body in commands(since)] == [
        ("speak", "Your table is ready.")
    ]
    # Telnyx says when it was heard: the service's hold starts from speech.played.
    state = {"client_state": encode_client_state(CALL_ID)}
    [started] = await adapter.parse_webhook(webhook(event("call.speak.started", state, "e1")))
    [played] = await adapter.parse_webhook(
        webhook(event("call.speak.ended", {**state, "status": "completed"}, "e2"))
    )
    assert isinstance(started, SpeechStarted) and started.utterance_id == "u1"
    assert isinstance(played, SpeechPlayed) and played.utterance_id == "u1"
    assert played.call_id == CALL_ID and played.key() == "telnyx:e2"


@respx.mock
async def test_a_line_queued_while_another_plays_is_another_speak_in_telnyx_queue(
    adapter: TelnyxTelephony,
) -> None:
    since = await answered_inbound(adapter)
    respx.post(action_url("speak")).mock(return_value=ok())
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    await adapter.play(live_call(), prompt(line("u1", "Hello there."), line("u2", "Two lines.")))
    await adapter.play(live_call(), prompt(line("u3", "Can you talk?")))
    speaks = [body for action, body in commands(since) if action == "speak"]
    assert [body["payload"] for body in speaks] == ["Hello there.", "Two lines.", "Can you talk?"]
    # Nothing ever stops or clears what Telnyx has queued.
    assert all("stop" not in body for _, body in commands(since))
    # Webhooks name no command, and client_state is the call's latest: they are told apart
    # by their order. One line's end and the next one's start may arrive swapped.
    state = {"client_state": encode_client_state(CALL_ID)}
    sequence = [
        ("call.speak.started", {}, "s1"),
        ("call.speak.started", {}, "s2"),
        ("call.speak.ended", {"status": "completed"}, "d1"),
        ("call.speak.ended", {"status": "completed"}, "d2"),
        ("call.speak.started", {}, "s3"),
        ("call.speak.ended", {"status": "completed"}, "d3"),
    ]
    seen = []
    for kind, extra, event_id in sequence:
        [parsed] = await adapter.parse_webhook(webhook(event(kind, {**state, **extra}, event_id)))
        assert isinstance(parsed, SpeechStarted | SpeechPlayed)
        seen.append((parsed.type, parsed.utterance_id))
    assert seen == [
        ("speech.started", "u1"),
        ("speech.started", "u2"),
        ("speech.played", "u1"),
        ("speech.played", "u2"),
        ("speech.started", "u3"),
        ("speech.played", "u3"),
    ]


@respx.mock
async def test_no_live_update_exists_on_telnyx_an_idle_call_gets_the_same_speak(
    adapter: TelnyxTelephony,
) -> None:
    # Twilio and Plivo replace a running document with a REST update; Telnyx has no such
    # thing. Whether the call is idle (everything played) or busy, a line is one speak
    # without ``stop``, and nothing else is sent.
    since = await answered_inbound(adapter)
    respx.post(action_url("speak")).mock(return_value=ok())
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    await adapter.play(live_call(), prompt(line("u1", "Hi.")))
    state = {"client_state": encode_client_state(CALL_ID)}
    await adapter.parse_webhook(webhook(event("call.speak.started", state, "s1")))
    await adapter.parse_webhook(
        webhook(event("call.speak.ended", {**state, "status": "completed"}, "d1"))
    )
    since = len(respx.calls)
    await adapter.play(live_call(), prompt(line("u2", "Still there?")))
    assert [(action, body["payload"], "stop" in body) for action, body in commands(since)] == [
        ("speak", "Still there?", False)
    ]


@respx.mock
async def test_a_retried_speak_webhook_names_the_same_line_and_a_cut_one_is_not_played(
    adapter: TelnyxTelephony,
) -> None:
    await answered_inbound(adapter)
    respx.post(action_url("speak")).mock(return_value=ok())
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    await adapter.play(live_call(), prompt(line("u1", "One."), line("u2", "Two.")))
    ended = event("call.speak.ended", {"status": "completed"}, "d1")
    retry = json.loads(json.dumps(ended))
    retry["meta"]["attempt"] = 2
    [first] = await adapter.parse_webhook(webhook(ended))
    [again] = await adapter.parse_webhook(webhook(retry))
    assert isinstance(first, SpeechPlayed) and isinstance(again, SpeechPlayed)
    assert first.utterance_id == again.utterance_id == "u1" and first.key() == again.key()
    # A hang-up stops the second line: Telnyx reports it ended with status call_hangup.
    cut = event("call.speak.ended", {"status": "call_hangup"}, "d2")
    assert await adapter.parse_webhook(webhook(cut)) == []


@respx.mock
async def test_a_transcript_answers_the_line_played_last_before_it(
    adapter: TelnyxTelephony,
) -> None:
    await answered_inbound(adapter)
    respx.post(action_url("speak")).mock(return_value=ok())
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    await adapter.play(live_call(), prompt(line("u1", "Hello there.")))
    await adapter.play(live_call(), prompt(line("u2", "Can you talk?")))
    said = {"transcription_data": {"transcript": "yes", "is_final": True}}

    async def heard_after(event_id: str) -> str | None:
        [parsed] = await adapter.parse_webhook(webhook(event("call.transcription", said, event_id)))
        assert isinstance(parsed, CallSpeech)
        return parsed.heard_after

    assert await heard_after("t0") is None  # nothing played whole yet
    await adapter.parse_webhook(webhook(event("call.speak.ended", {"status": "completed"}, "d1")))
    # u2 may be playing: an answer now is the answer to u1.
    assert await heard_after("t1") == "u1"
    await adapter.parse_webhook(webhook(event("call.speak.ended", {"status": "completed"}, "d2")))
    assert await heard_after("t2") == "u2"


@respx.mock
async def test_after_a_restart_speak_webhooks_still_name_the_lines_telnyx_is_playing(
    adapter: TelnyxTelephony,
) -> None:
    # Before the crash: "One." played, "Two." started, "Three." accepted by Telnyx. A fresh
    # adapter (the restarted gateway) takes the call back from the store.
    call = live_call()
    for position, text in enumerate(("One.", "Two.", "Three."), start=1):
        call.speech.enqueue(f"u{position}", text, at=0.0)
    call.speech.mark_started("u1", at=1.0)
    call.speech.get("u1").finish(at=2.0)  # type: ignore[union-attr]
    call.speech.mark_started("u2", at=2.0)
    adapter.restore(
        call, Playback(lines=(line("u2", "Two."), line("u3", "Three.")), then=AfterSpeech.LISTEN)
    )
    respx.post(action_url("speak")).mock(return_value=ok())
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    # After the restart the agent asks for a fourth line; Telnyx queues it behind the others.
    await adapter.play(call, prompt(line("u4", "Four.")))

    async def parsed(kind: str, status: str | None, event_id: str) -> CallEvent | None:
        extra = {"status": status} if status else {}
        events = await adapter.parse_webhook(webhook(event(kind, extra, event_id)))
        return events[0] if events else None

    ended_two = await parsed("call.speak.ended", "completed", "r1")
    assert isinstance(ended_two, SpeechPlayed) and ended_two.utterance_id == "u2"
    started_three = await parsed("call.speak.started", None, "r2")
    assert isinstance(started_three, SpeechStarted) and started_three.utterance_id == "u3"
    ended_three = await parsed("call.speak.ended", "completed", "r3")
    assert isinstance(ended_three, SpeechPlayed) and ended_three.utterance_id == "u3"
    started_four = await parsed("call.speak.started", None, "r4")
    assert isinstance(started_four, SpeechStarted) and started_four.utterance_id == "u4"
    said = {"transcription_data": {"transcript": "yes", "is_final": True}}
    [answer] = await adapter.parse_webhook(webhook(event("call.transcription", said, "r5")))
    assert isinstance(answer, CallSpeech) and answer.heard_after == "u3"


@respx.mock
async def test_wait_stops_transcription(adapter: TelnyxTelephony) -> None:
    since = await answered_inbound(adapter)
    respx.post(action_url("speak")).mock(return_value=ok())
    respx.post(action_url("transcription_start")).mock(return_value=ok())
    respx.post(action_url("transcription_stop")).mock(return_value=ok())
    await adapter.play(live_call(), prompt(line("u1", "Hi.")))
    await adapter.play(live_call(), Playback(lines=(line("u2", "Hold on."),)))
    assert [action for action, _ in commands(since)] == [
        "speak",
        "transcription_start",
        "speak",
        "transcription_stop",
    ]


@respx.mock
async def test_after_a_restart_a_refused_transcription_start_does_not_fail_the_prompt(
    adapter: TelnyxTelephony,
) -> None:
    # A call this adapter instance never placed or answered: Telnyx may still be
    # transcribing it from before the restart, and refuse a second start.
    respx.post(action_url("speak")).mock(return_value=ok())
    start = respx.post(action_url("transcription_start")).mock(
        return_value=httpx.Response(422, json={"errors": [{"code": "90055", "title": "busy"}]})
    )
    await adapter.play(live_call(), prompt(line("u1", "Still there?")))
    await adapter.play(live_call(), prompt(line("u2", "Hello?")))
    assert start.call_count == 1


@respx.mock
async def test_play_on_an_ended_call_is_rejected(adapter: TelnyxTelephony) -> None:
    respx.post(action_url("speak")).mock(return_value=already_ended())
    with pytest.raises(CarrierRejected):
        await adapter.play(live_call(), prompt(line("u1", "hello?")))


@respx.mock
async def test_commands_other_than_speak_get_a_fresh_command_id(adapter: TelnyxTelephony) -> None:
    route = respx.post(action_url("hangup")).mock(return_value=ok())
    await adapter.hangup(live_call())
    await adapter.hangup(live_call())
    assert sent_json(route, 0)["command_id"] != sent_json(route, 1)["command_id"]


def test_voice_mapping() -> None:
    assert telnyx_voice(None) == DEFAULT_TELNYX_VOICE
    assert telnyx_voice("alloy") == "AWS.Polly.Joanna-Neural"
    assert telnyx_voice("Nova") == "AWS.Polly.Salli-Neural"
    assert telnyx_voice("Azure.en-US-AvaNeural") == "Azure.en-US-AvaNeural"
    assert telnyx_voice("female") == "female"
    assert telnyx_voice("no-such-voice") == DEFAULT_TELNYX_VOICE


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
    route = respx.post(action_url("hangup")).mock(return_value=already_ended(status))
    await adapter.hangup(live_call())  # no CarrierRejected: the call is over, as asked
    assert route.call_count == 1  # asked once, not retried as if the carrier were down


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


@respx.mock
@pytest.mark.parametrize(
    ("direction", "source", "cause", "state"),
    [
        # We dialled: the callee is the person, we are the caller.
        (CallDirection.OUTBOUND, "callee", "normal_clearing", CallState.HANGUP_USER),
        (CallDirection.OUTBOUND, "caller", "normal_clearing", CallState.COMPLETED),
        (CallDirection.OUTBOUND, "caller", "originator_cancel", CallState.HANGUP_BOT),
        (CallDirection.OUTBOUND, "unknown", "normal_clearing", CallState.COMPLETED),
        (CallDirection.OUTBOUND, "callee", "user_busy", CallState.BUSY),
        # We answered: the caller is the person.
        (CallDirection.INBOUND, "caller", "normal_clearing", CallState.HANGUP_USER),
        (CallDirection.INBOUND, "caller", "originator_cancel", CallState.HANGUP_USER),
        (CallDirection.INBOUND, "callee", "normal_clearing", CallState.COMPLETED),
        # Direction not known (a restart): the cause alone decides.
        (None, "callee", "normal_clearing", CallState.COMPLETED),
    ],
)
async def test_hangup_source_says_who_put_the_phone_down(
    adapter: TelnyxTelephony,
    direction: CallDirection | None,
    source: str,
    cause: str,
    state: CallState,
) -> None:
    if direction is CallDirection.OUTBOUND:
        respx.post(f"{API}/calls").mock(
            return_value=httpx.Response(200, json={"data": {"call_control_id": PID}})
        )
        await adapter.dial(
            DialRequest(CALL_ID, "+15557654321", "+15550100000", CallMode.NOTIFY, "hi", 30)
        )
    elif direction is CallDirection.INBOUND:
        respx.post(action_url("answer")).mock(return_value=ok())
        await adapter.answer(live_call(CallDirection.INBOUND))
    payload = {"hangup_cause": cause, "hangup_source": source}
    [parsed] = await adapter.parse_webhook(webhook(event("call.hangup", payload)))
    assert isinstance(parsed, CallEnded) and parsed.reason is state
    assert f"hangup_source={source}" in (parsed.detail or "")


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


# Speak webhooks of a call we sent no speak on (a restart) cannot be told apart: nothing.
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
