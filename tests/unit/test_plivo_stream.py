"""Plivo media streams on the wire: the stream dialect, the ``<Stream>`` we serve, and the
simulated Plivo's end of the socket.

Wire facts: the Stream Event Protocol (https://plivo.com/docs/voice/audio-streaming/audio-streaming:
``start``/``media``/``dtmf``/``playedStream``/``clearedAudio`` in, ``playAudio``/``checkpoint``/
``clearAudio`` out, examples used below), the checkpoint page
(https://plivo.com/docs/voice/xml/the-stream-element/checkpoint-event), the clearAudio answer
(``{"sequenceNumber": 0, "event": "clearedAudio", "streamId"}``, Plivo support) and the
``<Stream>`` element (https://docs.plivo.com/docs/voice/xml/audiostream: extraHeaders
"Only characters [A-Z], [a-z], [0-9] allowed", keepCallAlive).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import httpx
import pytest
import respx

from voicecall.adapters.telephony.plivo import PlivoStreamDialect, PlivoTelephony
from voicecall.adapters.telephony.plivo.stream import (
    TOKEN_HEADER,
    decode_token,
    encode_token,
    fits_extra_headers,
    read_extra_headers,
    stream_document,
)
from voicecall.domain.call import CallState
from voicecall.domain.errors import CarrierRejected
from voicecall.domain.events import CallActive, StreamStopped
from voicecall.domain.media import (
    StreamClosed,
    StreamDtmf,
    StreamMark,
    StreamMedia,
    StreamStart,
    mint_stream_token,
    read_stream_token,
)
from voicecall.domain.ports import StreamRequest
from voicecall.domain.speech import AfterSpeech, Playback, SpokenLine
from voicecall.testing.plivo_sim import PlivoSimulator, SimCall
from voicecall.testing.simtime import ScaledClock

from .test_plivo_wire import (
    ACCOUNT,
    CALL_UUID,
    answered,
    fetch,
    live_call,
    make_adapter,
    query_of,
    url,
)

STREAM_ID = "87654321-4321-4321-4321-cba987654321"
SECRET = b"s" * 32
TOKEN = mint_stream_token(SECRET, "2f0c4b8e-6d7a-4e39-9a51-0b8d7c6e5f41", 1_900_000_000, "0" * 16)
STREAM = StreamRequest("wss://voice.example.com/voice/stream", TOKEN)
L16 = {"encoding": "audio/x-l16", "sampleRate": 8000}


def documented_start(extra_headers: str) -> str:
    # The protocol page's start example, with our extraHeaders.
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": 1,
            "start": {
                "callId": "12345678-1234-1234-1234-123456789abc",
                "streamId": STREAM_ID,
                "accountId": "MAXXXXXXXXXXXXXXXXXX",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
            "extra_headers": extra_headers,
        }
    )


# ------------------------------------------------------------------ the token in extraHeaders


def test_the_token_travels_hex_encoded_in_the_characters_extra_headers_allows() -> None:
    encoded = encode_token(TOKEN)
    assert encoded.isalnum() and encoded == TOKEN.encode().hex()
    assert decode_token(encoded) == TOKEN
    assert decode_token("zz") is None and decode_token("abc") is None
    # A real token (a UUID call id) fits Plivo's 512 bytes with room to spare.
    assert len(f"{TOKEN_HEADER}={encoded}") < 300 and fits_extra_headers(TOKEN)
    assert not fits_extra_headers("x" * 300)


@pytest.mark.parametrize(
    ("raw", "pairs"),
    [
        ("test1=12,test2=123", {"test1": "12", "test2": "123"}),  # the XML page's example
        ("userId=12345;sessionId=abc-xyz", {"userId": "12345", "sessionId": "abc-xyz"}),
        ('{"voicecallToken": "ab"}', {"voicecallToken": "ab"}),
        ({"voicecallToken": "ab"}, {"voicecallToken": "ab"}),
        ("", {}),
        ("novalue", {}),
        (None, {}),
        (42, {}),
    ],
)
def test_extra_headers_are_read_in_either_documented_shape(raw: Any, pairs: dict[str, str]) -> None:
    assert read_extra_headers(raw) == pairs


def test_the_stream_document_opens_a_two_way_mulaw_stream_that_keeps_the_call_alive() -> None:
    body = stream_document(STREAM.url, TOKEN, "https://voice.example.com/voice/webhook?a=1&b=2")
    assert (
        body
        == (
            '<Response><Stream bidirectional="true" contentType="audio/x-mulaw;rate=8000" '
            f'extraHeaders="voicecallToken={TOKEN.encode().hex()}" keepCallAlive="true">'
            "wss://voice.example.com/voice/stream</Stream>"
            '<Redirect method="POST">https://voice.example.com/voice/webhook?a=1&amp;b=2</Redirect>'
            "</Response>"
        ).encode()
    )
    with pytest.raises(ValueError, match="512"):
        stream_document(STREAM.url, "x" * 300, "https://voice.example.com/")


# ------------------------------------------------------------------ the dialect


def test_start_carries_the_stream_the_call_and_our_token() -> None:
    dialect = PlivoStreamDialect()
    [start] = dialect.parse(documented_start(f"voicecallToken={encode_token(TOKEN)}"))
    assert start == StreamStart(
        stream_id=STREAM_ID, provider_call_id="12345678-1234-1234-1234-123456789abc", token=TOKEN
    )
    assert dialect.stream_id == STREAM_ID
    grant = read_stream_token(SECRET, start.token or "", 1_800_000_000)
    assert not isinstance(grant, str) and grant.call_id == "2f0c4b8e-6d7a-4e39-9a51-0b8d7c6e5f41"


@pytest.mark.parametrize(
    "extra",
    ["userId=12345;sessionId=abc-xyz", "voicecallToken=not-hex!", "voicecallToken=zz", ""],
)
def test_start_without_a_readable_token_has_none(extra: str) -> None:
    [start] = PlivoStreamDialect().parse(documented_start(extra))
    assert isinstance(start, StreamStart) and start.token is None


def test_caller_audio_dtmf_checkpoints_and_the_rest() -> None:
    dialect = PlivoStreamDialect()
    audio = bytes(range(160))
    media = {
        "event": "media",
        "sequenceNumber": 42,
        "streamId": STREAM_ID,
        "media": {
            "track": "inbound",
            "timestamp": "1705312200000",
            "chunk": 41,
            "payload": base64.b64encode(audio).decode(),
        },
    }
    assert dialect.parse(json.dumps(media)) == [StreamMedia(payload=audio)]
    outbound = {**media, "media": {**media["media"], "track": "outbound"}}  # type: ignore[dict-item]
    assert dialect.parse(json.dumps(outbound)) == []
    played = {"event": "playedStream", "streamId": STREAM_ID, "name": "customer greeting audio"}
    assert dialect.parse(json.dumps(played)) == [StreamMark(name="customer greeting audio")]
    dtmf = {"event": "dtmf", "sequenceNumber": 7, "streamId": STREAM_ID, "dtmf": {"digit": "5"}}
    assert dialect.parse(json.dumps(dtmf)) == [StreamDtmf(digits="5")]
    cleared = {"sequenceNumber": 0, "event": "clearedAudio", "streamId": STREAM_ID}
    assert dialect.parse(json.dumps(cleared)) == []
    assert dialect.parse('{"event": "somethingNew"}') == []
    assert dialect.parse('{"event": "stop"}') == [StreamClosed(reason="stop")]


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "[1, 2]",
        '{"no": "event"}',
        '{"event": 3}',
        '{"event": "start"}',
        '{"event": "start", "start": {"callId": "c"}}',
        json.dumps({"event": "start", "start": {"streamId": "s", "mediaFormat": L16}}),
        '{"event": "media"}',
        '{"event": "media", "media": {"track": "inbound"}}',
        '{"event": "media", "media": {"payload": "***"}}',
        '{"event": "playedStream"}',
        '{"event": "dtmf", "dtmf": {}}',
    ],
)
def test_malformed_messages_are_value_errors(message: str) -> None:
    with pytest.raises(ValueError):
        PlivoStreamDialect().parse(message)


def test_what_we_send_is_playaudio_checkpoint_and_clearaudio() -> None:
    dialect = PlivoStreamDialect()
    dialect.parse(documented_start(""))
    assert json.loads(dialect.media(b"\xff\x7f")) == {
        "event": "playAudio",
        "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "/38="},
    }
    assert json.loads(dialect.mark("u1")) == {
        "event": "checkpoint",
        "streamId": STREAM_ID,
        "name": "u1",
    }
    assert json.loads(dialect.clear()) == {"event": "clearAudio", "streamId": STREAM_ID}


# ------------------------------------------------------------------ the adapter


@pytest.fixture
async def adapter() -> Any:
    carrier, http = make_adapter()
    yield carrier
    await carrier.aclose()
    await http.aclose()


async def test_the_answer_opens_the_stream_and_its_redirect_reports_the_stop(
    adapter: PlivoTelephony,
) -> None:
    answer, call, _ = await answered(adapter)
    with respx.mock:  # inside the answer fetch: XML, no REST
        await adapter.connect_stream(call, STREAM, reply_to=answer)
    assert adapter.webhook_response(answer, [call]).body == stream_document(
        STREAM.url, TOKEN, url(kind="xml", doc="1", stream="ended").replace("&amp;", "&")
    )
    # keepCallAlive: Plivo runs the Redirect only once the stream disconnected.
    ended = fetch(kind="xml", doc="1", stream="ended")
    active, stopped = await adapter.parse_webhook(ended)
    assert isinstance(active, CallActive)
    assert stopped == StreamStopped(
        call_id="call-1",
        provider_call_id=CALL_UUID,
        reason="the Plivo stream disconnected",
        dedupe_key=f"plivo:{CALL_UUID}:stream-stopped:1",
    )
    # The service asks again while answering that fetch: a new <Stream>, a new token.
    again = StreamRequest(STREAM.url, TOKEN + "x")
    await adapter.connect_stream(call, again, reply_to=ended)
    root = ElementTree.fromstring(adapter.webhook_response(ended, [call]).body)
    stream, redirect = list(root)
    assert stream.get("extraHeaders") == f"voicecallToken={encode_token(again.token)}"
    assert query_of(redirect.text or "") == {
        "callId": "call-1",
        "kind": "xml",
        "doc": "2",
        "stream": "ended",
    }


async def test_after_a_stream_stops_for_good_the_call_speaks_natively(
    adapter: PlivoTelephony,
) -> None:
    answer, call, _ = await answered(adapter)
    await adapter.connect_stream(call, STREAM, reply_to=answer)
    adapter.webhook_response(answer, [call])
    ended = fetch(kind="xml", doc="1", stream="ended")
    await adapter.parse_webhook(ended)
    # The service gave up on streams: what it still has to say rides on this fetch's answer.
    with respx.mock:  # no REST: the answer is the document
        await adapter.play(
            call,
            Playback(lines=(SpokenLine("u1", "Still there?"),), then=AfterSpeech.LISTEN),
            reply_to=ended,
        )
    root = ElementTree.fromstring(adapter.webhook_response(ended, [call]).body)
    gather, _redirect = list(root)
    assert gather.tag == "GetInput" and [e.text for e in gather] == ["Still there?"]


async def test_a_stream_from_an_abandoned_document_reports_nothing(
    adapter: PlivoTelephony,
) -> None:
    answer, call, _ = await answered(adapter)
    await adapter.connect_stream(call, STREAM, reply_to=answer)
    adapter.webhook_response(answer, [call])
    stale = fetch(kind="xml", doc="7", stream="ended")
    assert [type(e) for e in await adapter.parse_webhook(stale)] == [CallActive]


@respx.mock
async def test_without_a_fetch_to_answer_a_transfer_fetches_the_stream(
    adapter: PlivoTelephony,
) -> None:
    route = respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(
        return_value=httpx.Response(202, json={"message": "call transferred"})
    )
    call = live_call(state=CallState.LISTENING)
    await adapter.connect_stream(call, STREAM)
    assert route.call_count == 1
    aleg = json.loads(route.calls.last.request.content)["aleg_url"]
    transferred = fetch(**query_of(aleg))
    await adapter.parse_webhook(transferred)
    root = ElementTree.fromstring(adapter.webhook_response(transferred, [call]).body)
    assert [child.tag for child in root] == ["Stream", "Redirect"]
    assert (root[0].text or "").strip() == STREAM.url


@respx.mock
async def test_a_refused_transfer_leaves_no_stream_pending(adapter: PlivoTelephony) -> None:
    respx.post(f"{ACCOUNT}/Call/{CALL_UUID}/").mock(return_value=httpx.Response(404))
    call = live_call(state=CallState.LISTENING)
    with pytest.raises(CarrierRejected):
        await adapter.connect_stream(call, STREAM)
    answer = fetch(kind="xml")
    await adapter.parse_webhook(answer)
    root = ElementTree.fromstring(adapter.webhook_response(answer, [call]).body)
    assert [child.tag for child in root] == ["Wait", "Redirect"]


async def test_a_stream_that_keeps_stopping_is_given_up(adapter: PlivoTelephony) -> None:
    answer, call, _ = await answered(adapter)
    request = answer
    for doc in range(1, 6):
        await adapter.connect_stream(call, STREAM, reply_to=request)
        adapter.webhook_response(request, [call])
        request = fetch(kind="xml", doc=str(doc), stream="ended")
        await adapter.parse_webhook(request)
    with pytest.raises(CarrierRejected, match="5 times in a minute"):
        await adapter.connect_stream(call, STREAM, reply_to=request)


async def test_a_token_too_long_for_extra_headers_is_refused(adapter: PlivoTelephony) -> None:
    answer, call, _ = await answered(adapter)
    with pytest.raises(CarrierRejected, match="512"):
        await adapter.connect_stream(call, StreamRequest(STREAM.url, "t" * 300), reply_to=answer)


# ------------------------------------------------------------------ the simulated Plivo


class FakeSocket:
    """Our listener's end, as the simulator's connector hands it out."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False
        self.probe: Callable[[], Any] = lambda: None
        self.probed: list[Any] = []

    async def send(self, text: str) -> None:
        self.got.append(json.loads(text))
        self.probed.append(self.probe())  # what the far end had done when it sent this

    async def recv(self) -> str | None:
        if self.closed:
            return None
        message = await self.inbox.get()
        if message is None:
            self.closed = True
        return message

    async def close(self) -> None:
        self.closed = True
        self.inbox.put_nowait(None)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.got if m["event"] == name]


class Listener:
    """Our side: serves scripted XML per ``kind`` and accepts the stream sockets."""

    def __init__(self, documents: dict[str, str]) -> None:
        self.documents = documents
        self.fetches: list[dict[str, str]] = []
        self.sockets: list[FakeSocket] = []
        self.urls: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[0] for k, v in parse_qs(urlsplit(str(request.url)).query).items()}
        self.fetches.append(query)
        return httpx.Response(200, content=self.documents.get(query.get("kind", ""), ""))

    async def connect(self, url: str) -> FakeSocket:
        self.urls.append(url)
        socket = FakeSocket()
        self.sockets.append(socket)
        return socket


STREAM_XML = (
    '<Response><Stream bidirectional="true" keepCallAlive="true" '
    'contentType="audio/x-mulaw;rate=8000" extraHeaders="{extra}">ws://us/voice/stream</Stream>'
    '<Redirect method="POST">http://us/hook?kind=after</Redirect></Response>'
)


async def until(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def place_streamed_call(
    extra: str = "voicecallToken=6869", replies: tuple[str, ...] = ("One.", "Two.", "Three.")
) -> tuple[PlivoSimulator, Listener, httpx.AsyncClient, str]:
    listener = Listener(
        {"answer": STREAM_XML.format(extra=extra), "after": "<Response><Hangup/></Response>"}
    )
    sim = PlivoSimulator(
        auth_id="MASIM",
        auth_token="tok",
        webhook=httpx.AsyncClient(transport=httpx.MockTransport(listener.handle)),
        webhook_url="http://us/hook",
        replies=replies,
        clock=ScaledClock(20.0),
        connect_ws=listener.connect,
        callback_delay_s=0.0,
    )
    rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim), auth=("MASIM", "tok"))
    made = await rest.post(
        "http://sim/v1/Account/MASIM/Call/",
        json={
            "from": "15550100000",
            "to": "15557654321",
            "answer_url": "http://us/hook?kind=answer",
        },
    )
    request_uuid = made.json()["request_uuid"]

    def live() -> bool:
        call = sim.find(request_uuid)
        return call is not None and call.status in ("live", "ended")

    await until(live)
    found = sim.find(request_uuid)
    assert found is not None
    return sim, listener, rest, found.call_uuid


def play_audio(ulaw: bytes) -> str:
    payload = base64.b64encode(ulaw).decode()
    media = {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": payload}
    return json.dumps({"event": "playAudio", "media": media})


def the_call(sim: PlivoSimulator, call_uuid: str) -> SimCall:
    call = sim.find(call_uuid)
    assert call is not None
    return call


def ended(sim: PlivoSimulator, call_uuid: str) -> bool:
    return the_call(sim, call_uuid).status == "ended"


async def test_the_simulator_streams_as_plivo_documents() -> None:
    sim, listener, rest, call_uuid = await place_streamed_call()
    try:
        await until(lambda: len(listener.sockets) == 1 and len(listener.sockets[0].got) >= 5)
        socket = listener.sockets[0]
        start = socket.got[0]
        assert listener.urls == ["ws://us/voice/stream"]
        assert start["event"] == "start" and start["sequenceNumber"] == 1
        assert start["start"]["callId"] == call_uuid
        assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000}
        assert start["extra_headers"] == "voicecallToken=6869"  # the attribute, verbatim
        media = socket.events("media")
        assert [m["media"]["chunk"] for m in media[:3]] == [1, 2, 3]
        assert all(m["media"]["track"] == "inbound" for m in media)
        assert len(base64.b64decode(media[0]["media"]["payload"])) == 160  # 20 ms of μ-law
        stream = sim.stream(call_uuid)
        assert stream is not None and stream.connections == 1

        # 0.2 s of audio, then a checkpoint: played only once the audio was.
        socket.inbox.put_nowait(play_audio(b"\xff" * 1600))
        handset = stream.handset
        socket.probe = lambda: handset.frames_played
        socket.inbox.put_nowait(json.dumps({"event": "checkpoint", "streamId": "s", "name": "c1"}))
        await until(lambda: socket.events("playedStream"))
        [played] = socket.events("playedStream")
        assert played["name"] == "c1" and played["streamId"] == start["start"]["streamId"]
        # Echoed once all ten 20 ms frames before it had been played, not when it arrived.
        assert socket.probed[socket.got.index(played)] == 10

        # Audio cleared before it played: clearedAudio, and its checkpoint never comes back.
        socket.inbox.put_nowait(play_audio(b"\xff" * 16000))
        socket.inbox.put_nowait(json.dumps({"event": "checkpoint", "streamId": "s", "name": "c2"}))
        socket.inbox.put_nowait(json.dumps({"event": "clearAudio", "streamId": "s"}))
        await until(lambda: socket.events("clearedAudio"))
        await sim.clock.sleep(2.5)
        assert [m["name"] for m in socket.events("playedStream")] == ["c1"]

        # The network drops the socket: keepCallAlive's next element, our Redirect, runs.
        await sim.drop_stream(call_uuid)
        await until(lambda: any(f.get("kind") == "after" for f in listener.fetches))
        await until(lambda: ended(sim, call_uuid))
        assert the_call(sim, call_uuid).hangup_source == "Answer XML"
    finally:
        await sim.aclose()
        await rest.aclose()


async def test_the_socket_closes_when_the_call_ends() -> None:
    sim, listener, rest, call_uuid = await place_streamed_call()
    try:
        await until(lambda: listener.sockets and listener.sockets[0].got)
        await rest.delete(f"http://sim/v1/Account/MASIM/Call/{call_uuid}/")
        await until(lambda: listener.sockets[0].closed)
        assert not any(f.get("kind") == "after" for f in listener.fetches)
        assert the_call(sim, call_uuid).hangup_source == "API Request"
    finally:
        await sim.aclose()
        await rest.aclose()


@pytest.mark.parametrize("extra", ["voicecallToken=a-b.c", "token", "x=" + "a" * 600])
async def test_extra_headers_outside_the_documented_rules_are_invalid_xml(extra: str) -> None:
    sim, listener, rest, call_uuid = await place_streamed_call(extra=extra)
    try:
        await until(lambda: ended(sim, call_uuid))
        assert the_call(sim, call_uuid).hangup_cause_name == "Invalid Answer XML"
        assert listener.sockets == []
    finally:
        await sim.aclose()
        await rest.aclose()
