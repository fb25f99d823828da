"""Twilio media streams on the wire.

* The dialect against the messages in Twilio's reference
  (https://www.twilio.com/docs/voice/media-streams/websocket-messages): parsed and built.
* ``connect_stream``: the exact ``<Connect><Stream>`` document (token as a ``<Parameter>``, a
  ``<Redirect>`` back to us after it), where it goes (the answer, or a live update), and the
  fetch after a stream ended read as ``stream.stopped``.
* The simulator follows Twilio's documented stream behaviour: the URL's query is dropped,
  ``<Parameter>``s arrive in ``start``, marks come back once played, ``clear`` sends back the
  dropped marks, and the verbs after ``<Connect>`` run only when the socket ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
import respx

from voicecall.adapters.telephony.twilio import (
    TwilioSignatureVerifier,
    TwilioStreamDialect,
    TwilioTelephony,
)
from voicecall.domain.call import Call, CallDirection, CallMode, CallState
from voicecall.domain.errors import CarrierRejected, TransientError
from voicecall.domain.events import CallEvent, StreamStopped
from voicecall.domain.media import (
    StreamClosed,
    StreamDtmf,
    StreamMark,
    StreamMedia,
    StreamStart,
)
from voicecall.domain.ports import MediaStreaming, StreamDialect, StreamRequest
from voicecall.domain.signed_url import UrlTrustSettings
from voicecall.domain.webhook import WebhookRequest
from voicecall.testing.clock import FakeClock
from voicecall.testing.simtime import ScaledClock
from voicecall.testing.twilio_sim import TwilioSimulator

STREAM_SID = "MZ" + "X" * 32
CALL_SID_DOC = "CA" + "X" * 32

# ---------------------------------------------------------------------------------------------
# The dialect, against the reference's examples
# ---------------------------------------------------------------------------------------------

CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC" + "X" * 32,
        "streamSid": STREAM_SID,
        "callSid": CALL_SID_DOC,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"},
    },
    "streamSid": STREAM_SID,
}
# The reference abbreviates payloads ("no+JhoaJjpzS..."); the part shown is valid base64.
INBOUND_MEDIA = {
    "event": "media",
    "sequenceNumber": "4",
    "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": "no+JhoaJjpzS"},
    "streamSid": STREAM_SID,
}
OUTBOUND_MEDIA = {
    "event": "media",
    "sequenceNumber": "3",
    "media": {"track": "outbound", "chunk": "1", "timestamp": "5", "payload": "no+JhoaJjpz="},
    "streamSid": STREAM_SID,
}
STOP = {
    "event": "stop",
    "sequenceNumber": "5",
    "stop": {"accountSid": "AC" + "X" * 32, "callSid": CALL_SID_DOC},
    "streamSid": STREAM_SID,
}
DTMF = {
    "event": "dtmf",
    "streamSid": STREAM_SID,
    "sequenceNumber": "5",
    "dtmf": {"track": "inbound_track", "digit": "1"},
}
MARK = {
    "event": "mark",
    "sequenceNumber": "4",
    "streamSid": STREAM_SID,
    "mark": {"name": "my label"},
}


def started_dialect(token: str | None = "tok.en") -> TwilioStreamDialect:
    dialect = TwilioStreamDialect()
    start = json.loads(json.dumps(START))
    if token is not None:
        start["start"]["customParameters"]["token"] = token
    [message] = dialect.parse(json.dumps(start))
    assert isinstance(message, StreamStart)
    return dialect


def test_the_dialect_satisfies_the_port() -> None:
    assert isinstance(TwilioStreamDialect(), StreamDialect)


def test_connected_carries_nothing_to_act_on() -> None:
    assert TwilioStreamDialect().parse(json.dumps(CONNECTED)) == []


def test_start_names_the_stream_the_call_and_the_token_from_custom_parameters() -> None:
    dialect = TwilioStreamDialect()
    start = json.loads(json.dumps(START))
    start["start"]["customParameters"]["token"] = "abc.def"
    assert dialect.parse(json.dumps(start)) == [
        StreamStart(stream_id=STREAM_SID, provider_call_id=CALL_SID_DOC, token="abc.def")
    ]
    assert dialect.stream_id == STREAM_SID


def test_the_documented_start_without_our_parameter_has_no_token() -> None:
    assert TwilioStreamDialect().parse(json.dumps(START)) == [
        StreamStart(stream_id=STREAM_SID, provider_call_id=CALL_SID_DOC, token=None)
    ]


def test_the_callers_audio_is_the_inbound_track() -> None:
    dialect = started_dialect()
    assert dialect.parse(json.dumps(INBOUND_MEDIA)) == [
        StreamMedia(payload=base64.b64decode("no+JhoaJjpzS"))
    ]
    # What the call itself plays is not the caller speaking.
    assert dialect.parse(json.dumps(OUTBOUND_MEDIA)) == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (DTMF, [StreamDtmf(digits="1")]),
        (MARK, [StreamMark(name="my label")]),
        (STOP, [StreamClosed(reason="stop")]),
        ({"event": "something-new", "streamSid": STREAM_SID}, []),
    ],
    ids=["dtmf", "mark", "stop", "unknown-event"],
)
def test_the_other_messages_from_twilio(message: dict[str, Any], expected: list[Any]) -> None:
    assert started_dialect().parse(json.dumps(message)) == expected


def _with(base: dict[str, Any], path: Sequence[str], value: Any) -> str:
    data = json.loads(json.dumps(base))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(data)


_DELETE = object()
START_WITHOUT_TOP_SID = json.loads(_with(START, ["streamSid"], _DELETE))


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1, 2]",
        json.dumps({"streamSid": STREAM_SID}),
        _with(START_WITHOUT_TOP_SID, ["start", "streamSid"], _DELETE),
        _with(START, ["start"], "nope"),
        _with(START, ["start", "mediaFormat", "encoding"], "audio/l16"),
        _with(START, ["start", "mediaFormat", "sampleRate"], 16000),
        _with(INBOUND_MEDIA, ["media", "payload"], _DELETE),
        _with(INBOUND_MEDIA, ["media", "payload"], "not base64!"),
        _with(INBOUND_MEDIA, ["media"], None),
        _with(MARK, ["mark", "name"], 7),
        _with(DTMF, ["dtmf", "digit"], ""),
        _with(MARK, ["streamSid"], "MZ-another-stream"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-event",
        "start-without-streamSid",
        "start-not-an-object",
        "not-mulaw",
        "not-8kHz",
        "media-without-payload",
        "media-not-base64",
        "media-not-an-object",
        "mark-without-name",
        "dtmf-without-digit",
        "another-stream",
    ],
)
def test_malformed_messages_are_value_errors(message: str) -> None:
    with pytest.raises(ValueError):
        started_dialect().parse(message)


def test_what_we_send_is_shaped_as_the_reference_shows() -> None:
    dialect = started_dialect()
    assert json.loads(dialect.media(b"\x00\x7f\xff")) == {
        "event": "media",
        "streamSid": STREAM_SID,
        "media": {"payload": base64.b64encode(b"\x00\x7f\xff").decode()},
    }
    assert json.loads(dialect.mark("my label")) == {
        "event": "mark",
        "streamSid": STREAM_SID,
        "mark": {"name": "my label"},
    }
    assert json.loads(dialect.clear()) == {"event": "clear", "streamSid": STREAM_SID}


def test_nothing_is_sent_before_the_stream_sid_is_known() -> None:
    dialect = TwilioStreamDialect()
    dialect.parse(json.dumps(CONNECTED))
    with pytest.raises(RuntimeError):
        dialect.clear()


# ---------------------------------------------------------------------------------------------
# connect_stream: the document, and where it goes
# ---------------------------------------------------------------------------------------------

SID = "AC" + "a" * 32
TOKEN = "wire-token"
BASE = "https://api.twilio.com"
CALLS = f"{BASE}/2010-04-01/Accounts/{SID}/Calls"
PUBLIC = "https://voice.example.com/voice/webhook"
CALL_SID = "CA" + "b" * 32
CALL_ID = "call-1"
WSS = "wss://voice.example.com/voice/stream"
XML = '<?xml version="1.0" encoding="UTF-8"?>'
HOOK = "https://voice.example.com/voice/webhook?callId=call-1&amp;"


def connect_document(token: str) -> str:
    return (
        f'{XML}<Response><Connect><Stream url="{WSS}"><Parameter name="token" value="{token}" />'
        f'</Stream></Connect><Redirect method="POST">{HOOK}hook=stream&amp;turn=T</Redirect>'
        "</Response>"
    )


class Sink:
    def __init__(self) -> None:
        self.events: list[CallEvent] = []

    async def __call__(self, events: Sequence[CallEvent]) -> None:
        self.events.extend(events)


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
    telephony.bind(Sink())
    yield telephony
    await telephony.aclose()
    await http.aclose()


def a_call(state: CallState = CallState.ANSWERED) -> Call:
    return Call(
        call_id=CALL_ID,
        provider="twilio",
        direction=CallDirection.OUTBOUND,
        from_number="+15550100000",
        to_number="+15557654321",
        mode=CallMode.CONVERSATION,
        started_at=0.0,
        state=state,
        provider_call_id=CALL_SID,
    )


def request(**query: str) -> WebhookRequest:
    fields = {"AccountSid": SID, "CallSid": CALL_SID, "CallStatus": "in-progress"}
    return WebhookRequest(
        method="POST",
        path="/voice/webhook",
        query=urlencode({"callId": CALL_ID} | query),
        headers=(("content-type", "application/x-www-form-urlencoded"),),
        body=urlencode(fields).encode(),
        peer="127.0.0.1",
    )


def masked(body: bytes | str) -> str:
    text = body.decode() if isinstance(body, bytes) else body
    return re.sub(r"(turn|n)=[0-9a-f]{12}", r"\1=T", text)


async def answer_with(
    adapter: TwilioTelephony,
    act: Callable[[WebhookRequest], Any] | None = None,
    **query: str,
) -> tuple[list[CallEvent], str]:
    """Twilio fetches with ``query``; ``act`` is what the service does while answering."""
    fetch = request(**query)
    events = list(await adapter.parse_webhook(fetch))
    if act is not None:
        await act(fetch)
    answer = adapter.webhook_response(fetch, [a_call()])
    return events, masked(answer.body)


async def test_the_adapter_streams_with_a_fresh_dialect_per_connection(
    adapter: TwilioTelephony,
) -> None:
    assert isinstance(adapter, MediaStreaming)
    first, second = adapter.stream_dialect(), adapter.stream_dialect()
    assert isinstance(first, TwilioStreamDialect) and first is not second


@respx.mock
async def test_the_answer_connects_the_stream_with_the_token_as_a_parameter(
    adapter: TwilioTelephony,
) -> None:
    rest = respx.post(url__startswith=CALLS).respond(200, json={"sid": CALL_SID})

    async def connect(fetch: WebhookRequest) -> None:
        await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.one"), reply_to=fetch)

    _, answer = await answer_with(adapter, connect, hook="answer")
    assert answer == connect_document("tok.one")
    assert rest.call_count == 0  # it went into the answer


@respx.mock
async def test_the_fetch_after_connect_says_the_stream_stopped_and_its_answer_reconnects(
    adapter: TwilioTelephony,
) -> None:
    rest = respx.post(url__startswith=CALLS).respond(200, json={"sid": CALL_SID})

    async def connect(fetch: WebhookRequest) -> None:
        await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.one"), reply_to=fetch)

    await answer_with(adapter, connect, hook="answer")

    async def reconnect(fetch: WebhookRequest) -> None:
        await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.two"), reply_to=fetch)

    events, answer = await answer_with(adapter, reconnect, hook="stream", turn="abc123")
    assert events == [
        StreamStopped(
            call_id=CALL_ID,
            provider_call_id=CALL_SID,
            reason="the media stream ended; Twilio went on past <Connect>",
            dedupe_key=f"twilio:{CALL_SID}:stream-stopped:abc123",
        )
    ]
    assert answer == connect_document("tok.two")
    assert rest.call_count == 0


async def test_a_stream_that_is_not_reconnected_leaves_the_call_parked(
    adapter: TwilioTelephony,
) -> None:
    _, answer = await answer_with(adapter, None, hook="stream", turn="abc123")
    assert "<Pause" in answer and "hook=wait" in answer and "<Connect>" not in answer


@respx.mock
async def test_a_parked_call_is_connected_by_a_live_update(adapter: TwilioTelephony) -> None:
    update = respx.post(f"{CALLS}/{CALL_SID}.json").respond(200, json={"sid": CALL_SID})
    _, parked = await answer_with(adapter, None, hook="wait", n="1")
    assert "<Pause" in parked
    await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.one"))
    assert update.call_count == 1
    form = parse_qs(update.calls.last.request.content.decode())
    assert masked(form["Twiml"][0]) == connect_document("tok.one")
    # While Twilio runs the <Connect>, an update would end the stream: none goes out, and the
    # next stream waits for Twilio to come back.
    await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.two"))
    assert update.call_count == 1
    _, answer = await answer_with(adapter, None, hook="stream", turn="t1")
    assert answer == connect_document("tok.two")


@respx.mock
async def test_a_failed_update_is_a_carrier_error_and_is_not_served_later(
    adapter: TwilioTelephony,
) -> None:
    update = respx.post(f"{CALLS}/{CALL_SID}.json")
    await answer_with(adapter, None, hook="wait", n="1")
    update.respond(400, json={"code": 21220, "message": "not in-progress", "status": 400})
    with pytest.raises(CarrierRejected):
        await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.one"))
    update.respond(503, json={})
    with pytest.raises(TransientError):
        await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.two"))
    _, answer = await answer_with(adapter, None, hook="wait", n="2")
    assert "<Connect>" not in answer


@pytest.mark.parametrize(
    "url",
    ["wss://voice.example.com/voice/stream?token=abc", "https://voice.example.com/voice/stream"],
)
async def test_a_url_twilio_cannot_stream_to_is_refused(adapter: TwilioTelephony, url: str) -> None:
    with pytest.raises(CarrierRejected):
        await adapter.connect_stream(a_call(), StreamRequest(url, "tok.one"))


@respx.mock
async def test_a_streamed_call_is_hung_up_over_rest(adapter: TwilioTelephony) -> None:
    update = respx.post(f"{CALLS}/{CALL_SID}.json").respond(200, json={"sid": CALL_SID})

    async def connect(fetch: WebhookRequest) -> None:
        await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.one"), reply_to=fetch)

    await answer_with(adapter, connect, hook="answer")
    await adapter.hangup(a_call())
    assert parse_qs(update.calls.last.request.content.decode()) == {"Status": ["completed"]}
    with pytest.raises(CarrierRejected):
        await adapter.connect_stream(a_call(), StreamRequest(WSS, "tok.two"))


# ---------------------------------------------------------------------------------------------
# The simulator streams as Twilio documents it
# ---------------------------------------------------------------------------------------------

SIM_SPEED = 20.0
ACCOUNT = "AC" + "1" * 32
AUTH = "sim-stream-token"
OURS = "https://us.example.test/voice/webhook"


class OurEnd:
    """Our side of one stream socket the simulator opened: what it sent, and our replies."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received: list[dict[str, Any]] = []
        self.closed = False
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()

    # The carrier's view (WsConnection).
    async def send(self, text: str) -> None:
        if not self.closed:
            self.received.append(json.loads(text))

    async def recv(self) -> str | None:
        if self.closed:
            return None
        return await self._inbox.get()

    async def close(self) -> None:
        self.closed = True
        self._inbox.put_nowait(None)

    # Ours.
    def say(self, message: dict[str, Any]) -> None:
        self._inbox.put_nowait(json.dumps(message | {"streamSid": self.stream_sid}))

    def hang_up(self) -> None:
        self._inbox.put_nowait(None)

    @property
    def stream_sid(self) -> str:
        return str(self.events("start")[0]["streamSid"])

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m["event"] == kind]


class Rig:
    def __init__(self, **script: Any) -> None:
        self.ends: list[OurEnd] = []
        self.fetches: list[str] = []
        self.clock = ScaledClock(SIM_SPEED)
        self.webhooks = httpx.AsyncClient(transport=httpx.MockTransport(self._webhook))
        self.sim = TwilioSimulator(
            self.webhooks,
            clock=self.clock,
            account_sid=ACCOUNT,
            auth_token=AUTH,
            answer_delay_s=0.05,
            reply_delay_s=0.2,
            connect_ws=self._connect,
            **script,
        )
        self.rest = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.sim), base_url="http://api.twilio.test"
        )

    async def _connect(self, url: str) -> OurEnd:
        end = OurEnd(url)
        self.ends.append(end)
        return end

    def _webhook(self, request: httpx.Request) -> httpx.Response:
        self.fetches.append(str(request.url))
        # Keep the call up, quietly, after the stream.
        return httpx.Response(200, text='<Response><Pause length="600"/></Response>')

    async def dial(self, twiml: str) -> str:
        response = await self.rest.post(
            f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
            data={"To": "+15557654321", "From": "+15550100000", "Twiml": twiml},
            auth=(ACCOUNT, AUTH),
        )
        assert response.status_code == 201
        return str(response.json()["sid"])

    async def update(self, sid: str, **form: str) -> None:
        response = await self.rest.post(
            f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json", data=form, auth=(ACCOUNT, AUTH)
        )
        assert response.status_code == 200

    async def wait(self, predicate: Callable[[], Any], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        await self.sim.aclose()
        await self.rest.aclose()
        await self.webhooks.aclose()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig(replies=())
    yield made
    await made.close()


STREAM_TWIML = (
    '<Response><Connect><Stream url="wss://us.example.test/voice/stream?dropped=1">'
    '<Parameter name="token" value="tok.en" /><Parameter name="other" value="x" />'
    "</Stream></Connect>"
    f'<Redirect method="POST">{OURS}?hook=stream&amp;turn=t1</Redirect></Response>'
)


async def test_the_query_is_dropped_and_parameters_arrive_in_start(rig: Rig) -> None:
    sid = await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and rig.ends[0].events("start"))
    [end] = rig.ends
    assert end.url == "wss://us.example.test/voice/stream"
    connected, start = end.received[:2]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["sequenceNumber"] == "1"
    assert start["streamSid"].startswith("MZ")
    assert start["start"] == {
        "accountSid": ACCOUNT,
        "streamSid": start["streamSid"],
        "callSid": sid,
        "tracks": ["inbound"],
        "customParameters": {"token": "tok.en", "other": "x"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    # Our own dialect reads what the simulator sends.
    dialect = TwilioStreamDialect()
    parsed = [item for message in end.received[:2] for item in dialect.parse(json.dumps(message))]
    assert parsed == [
        StreamStart(stream_id=start["streamSid"], provider_call_id=sid, token="tok.en")
    ]


async def test_the_caller_is_heard_in_20_ms_frames_of_the_inbound_track(rig: Rig) -> None:
    await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and len(rig.ends[0].events("media")) >= 5)
    media = rig.ends[0].events("media")[:5]
    assert [m["media"]["chunk"] for m in media] == ["1", "2", "3", "4", "5"]
    assert {m["media"]["track"] for m in media} == {"inbound"}
    assert {len(base64.b64decode(m["media"]["payload"])) for m in media} == {160}
    sequence = [int(m["sequenceNumber"]) for m in media]
    assert sequence == sorted(sequence) and len(set(sequence)) == 5


async def test_a_mark_comes_back_only_once_the_audio_before_it_has_played(rig: Rig) -> None:
    sid = await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and rig.ends[0].events("start"))
    end = rig.ends[0]
    end.say({"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 1600).decode()}})
    end.say({"event": "mark", "mark": {"name": "line-1"}})
    await rig.wait(lambda: end.events("mark"))
    handset = rig.sim.stream(sid).handset  # type: ignore[union-attr]
    assert [m["mark"] for m in end.events("mark")] == [{"name": "line-1"}]
    assert handset.frames_played == 10  # 200 ms of audio, all played before the echo
    assert [name for name, _ in handset.marks_echoed] == ["line-1"]


async def test_clear_drops_the_audio_and_sends_the_dropped_marks_back(rig: Rig) -> None:
    sid = await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and rig.ends[0].events("start"))
    end = rig.ends[0]
    handset = rig.sim.stream(sid).handset  # type: ignore[union-attr]
    ten_seconds = base64.b64encode(b"\xff" * 80_000).decode()
    end.say({"event": "media", "media": {"payload": ten_seconds}})
    end.say({"event": "mark", "mark": {"name": "long-line"}})
    await rig.wait(lambda: handset.frames_played >= 3)
    end.say({"event": "clear"})
    await rig.wait(lambda: end.events("mark"))
    assert [m["mark"]["name"] for m in end.events("mark")] == ["long-line"]
    assert handset.buffered_ms == 0 and len(handset.clears) == 1
    assert handset.frames_played < 500  # the ten seconds were not played


async def test_the_verbs_after_connect_run_only_once_the_socket_ends(rig: Rig) -> None:
    sid = await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and len(rig.ends[0].events("media")) >= 3)
    assert rig.fetches == []  # the <Connect> holds the call
    rig.ends[0].hang_up()  # our server closes the socket
    await rig.wait(lambda: rig.fetches)
    assert rig.fetches == [f"{OURS}?hook=stream&turn=t1"]
    assert rig.sim.calls[sid].status == "in-progress"
    assert rig.ends[0].events("stop") == []


async def test_a_lost_socket_also_ends_the_connect_and_the_call_goes_on(rig: Rig) -> None:
    sid = await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and rig.ends[0].events("start"))
    await rig.sim.drop_stream(sid)
    await rig.wait(lambda: rig.fetches)
    assert rig.ends[0].closed and rig.ends[0].events("stop") == []
    assert rig.sim.calls[sid].status == "in-progress"
    assert rig.sim.stream(sid).connections == 1  # type: ignore[union-attr]


async def test_an_update_stops_the_stream_and_its_twiml_replaces_the_connect(rig: Rig) -> None:
    sid = await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and rig.ends[0].events("start"))
    end = rig.ends[0]
    await rig.update(sid, Twiml='<Response><Pause length="600"/></Response>')
    await rig.wait(lambda: end.closed)
    [stop] = end.events("stop")
    assert stop["stop"] == {"accountSid": ACCOUNT, "callSid": sid}
    assert stop["streamSid"] == end.stream_sid
    await rig.clock.sleep(0.5)
    assert rig.fetches == []  # the Redirect after <Connect> never ran


async def test_a_hangup_stops_the_stream_and_silences_the_handset(rig: Rig) -> None:
    sid = await rig.dial(STREAM_TWIML)
    await rig.wait(lambda: rig.ends and rig.ends[0].events("start"))
    end = rig.ends[0]
    await rig.update(sid, Status="completed")
    await rig.wait(lambda: end.closed)
    assert len(end.events("stop")) == 1
    handset = rig.sim.stream(sid).handset  # type: ignore[union-attr]
    sent = len(end.received)
    await rig.clock.sleep(0.5)
    assert len(end.received) == sent and rig.fetches == []  # the caller's audio stopped too
    assert rig.sim.calls[sid].status == "completed"
    assert handset.frames_played == 0


async def test_a_caller_with_nothing_to_say_hangs_up_once_the_bot_is_quiet() -> None:
    rig = Rig(replies=("Hi.",))
    try:
        sid = await rig.dial(STREAM_TWIML)
        await rig.wait(lambda: rig.ends and rig.ends[0].events("start"))
        end = rig.ends[0]
        end.say({"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}})
        await rig.wait(lambda: rig.sim.calls[sid].stream.handset.said)  # type: ignore[union-attr]
        await rig.clock.sleep(1.0)  # the caller's line is over: bot audio now is heard as such
        assert not rig.sim.calls[sid].ended
        end.say({"event": "media", "media": {"payload": base64.b64encode(b"\xff" * 160).decode()}})
        await rig.wait(lambda: rig.sim.calls[sid].ended)
        assert rig.sim.calls[sid].status == "completed"
        await rig.wait(lambda: end.closed)
        assert len(end.events("stop")) == 1
    finally:
        await rig.close()
