"""The media service on a fake clock: stream tokens, pacing, marks and barge-in.

A fake socket stands in for the carrier: the test says what the carrier sends and reads what
the service sent, with the fake clock's time of each message.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voicecall.adapters.telephony.mock_stream import MockStreamDialect
from voicecall.domain.events import CallEvent, SpeechCut, SpeechPlayed, SpeechStarted
from voicecall.domain.media import mint_stream_token, read_stream_token
from voicecall.domain.ports import TranscriptEvent, TranscriptKind
from voicecall.domain.speech import Playback, SpokenLine
from voicecall.services.media import MediaService
from voicecall.testing.clock import FakeClock

SECRET = b"s" * 32


class FakeSocket:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[tuple[float, dict[str, Any]]] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append((self.clock.now(), json.loads(text)))

    async def receive_text(self) -> str | None:
        if self.closed:
            return None
        return await self.inbox.get()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed is None:
            self.closed = (code, reason)
        self.inbox.put_nowait(None)

    def carrier_says(self, **message: Any) -> None:
        self.inbox.put_nowait(json.dumps(message))

    def media_sent(self) -> list[tuple[float, bytes]]:
        return [
            (at, base64.b64decode(m["payload"])) for at, m in self.sent if m["event"] == "media"
        ]


class Silence:
    """A synthesiser whose every character is 100 ms of silence, handed over in 1 s chunks."""

    def __init__(self, ms_per_char: int = 100) -> None:
        self.bytes_per_char = ms_per_char * 8

    async def synthesize(self, text: str, voice: str | None) -> AsyncIterator[bytes]:
        remaining = len(text) * self.bytes_per_char
        while remaining > 0:
            chunk = min(remaining, 8000)
            remaining -= chunk
            yield b"\xff" * chunk


class ScriptedEar:
    """A transcriber that reports what the test tells it to."""

    def __init__(self) -> None:
        self.handlers: list[Any] = []
        self.audio = 0

    async def open(self, call_id: str, on_event: Any) -> ScriptedEar:
        self.handlers.append(on_event)
        return self

    async def send(self, ulaw: bytes) -> None:
        self.audio += len(ulaw)

    async def aclose(self) -> None:
        return None

    async def says(self, event: TranscriptEvent) -> None:
        for handler in self.handlers:
            result = handler(event)
            if result is not None:
                await result


class Rig:
    def __init__(self, *, lead_ms: float = 200.0, ms_per_char: int = 100) -> None:
        self.clock = FakeClock()
        self.ear = ScriptedEar()
        self.media = MediaService(
            self.clock, Silence(ms_per_char), self.ear, SECRET, lead_ms=lead_ms
        )
        self.events: list[CallEvent] = []
        self.live = {"call-1"}

        async def sink(events: Any) -> None:
            self.events.extend(events)

        async def is_live(call_id: str) -> bool:
            return call_id in self.live

        self.media.bind(sink, is_live)

    async def open(self, token: str | None) -> tuple[FakeSocket, asyncio.Task[None]]:
        socket = FakeSocket(self.clock)
        task = asyncio.ensure_future(self.media.run(socket, MockStreamDialect()))
        start: dict[str, Any] = {"event": "start", "streamId": "MZ1", "callId": "pc-1"}
        if token is not None:
            start["token"] = token
        socket.carrier_says(**start)
        await self.clock.advance(0)
        return socket, task

    async def play(self, *lines: tuple[str, str]) -> None:
        await self.media.play(
            "call-1", Playback(tuple(SpokenLine(uid, text) for uid, text in lines))
        )


async def _close(socket: FakeSocket, task: asyncio.Task[None]) -> None:
    await socket.close()
    await asyncio.wait_for(task, 5)


# ------------------------------------------------------------------------------ tokens


def test_a_token_binds_a_call_and_an_expiry() -> None:
    token = mint_stream_token(SECRET, "call-1", 1000.0, "n1")
    grant = read_stream_token(SECRET, token, 999.0)
    assert not isinstance(grant, str)
    assert (grant.call_id, grant.expires_at, grant.nonce) == ("call-1", 1000.0, "n1")
    assert read_stream_token(SECRET, token, 1000.5) == "expired stream token"
    assert read_stream_token(b"x" * 32, token, 999.0) == "bad stream token signature"
    payload, signature = token.split(".")
    other = mint_stream_token(SECRET, "call-2", 1000.0, "n1").split(".")[0]
    assert read_stream_token(SECRET, f"{other}.{signature}", 999.0) == (
        "bad stream token signature"
    )
    for junk in ("", "a.b.c", "!!!.???", "x" * 600, f"{payload}."):
        assert isinstance(read_stream_token(SECRET, junk, 999.0), str)


async def test_an_admitted_token_is_spent_and_refused_the_second_time() -> None:
    rig = Rig()
    token = rig.media.expect("call-1")
    socket, task = await rig.open(token)
    assert socket.closed is None and rig.media.connected("call-1")
    await _close(socket, task)
    again, again_task = await rig.open(token)
    await asyncio.wait_for(again_task, 5)
    assert again.closed == (1008, "stream token already used")
    assert again.sent == []


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("no-token", "no stream token"),
        ("not-live", "stream token for a call that is not live"),
        ("not-streaming", "stream token for a call that is not streaming"),
        ("expired", "expired stream token"),
    ],
)
async def test_refusals_close_before_any_media(setup: str, reason: str) -> None:
    rig = Rig()
    token: str | None = rig.media.expect("call-1")
    if setup == "no-token":
        token = None
    elif setup == "not-live":
        rig.live.clear()
    elif setup == "not-streaming":
        await rig.media.end_call("call-1")
    elif setup == "expired":
        await rig.clock.advance(rig.media.token_ttl_s + 2)
    await rig.play(("u1", "hello"))
    socket, task = await rig.open(token)
    await asyncio.wait_for(task, 5)
    assert socket.closed == (1008, reason)
    assert socket.sent == []


async def test_a_second_stream_for_a_call_is_refused() -> None:
    rig = Rig()
    first, first_task = await rig.open(rig.media.expect("call-1"))
    second, second_task = await rig.open(rig.media.expect("call-1"))
    await asyncio.wait_for(second_task, 5)
    assert second.closed == (1008, "a stream for this call is already open")
    assert first.closed is None
    await _close(first, first_task)


async def test_media_before_start_is_refused() -> None:
    rig = Rig()
    rig.media.expect("call-1")
    socket = FakeSocket(rig.clock)
    task = asyncio.ensure_future(rig.media.run(socket, MockStreamDialect()))
    socket.carrier_says(event="media", payload="")
    await asyncio.wait_for(task, 5)
    assert socket.closed == (1008, "media before start")


# ------------------------------------------------------------------------------ pacing


async def test_ten_minutes_of_audio_run_at_most_lead_ahead_with_no_drift() -> None:
    rig = Rig(lead_ms=200, ms_per_char=100)
    socket, task = await rig.open(rig.media.expect("call-1"))
    start = rig.clock.now()
    await rig.play(("long", "x" * 6000))  # 600 s of audio
    caller_frame = base64.b64encode(b"\xff" * 160).decode()
    for _ in range(610):
        socket.carrier_says(event="media", payload=caller_frame)  # the carrier keeps talking
        await rig.clock.advance(1.0)
    sent = socket.media_sent()
    total_ms = 0.0
    for at, payload in sent:
        assert len(payload) % 160 == 0
        total_ms += len(payload) / 8
        # Never more than the lead ahead of real time (one frame of scheduling slack).
        assert total_ms <= (at - start) * 1000 + 200 + 20, (at - start, total_ms)
    assert total_ms == 600_000
    last_at = sent[-1][0] - start
    # No drift: the last frame goes out when real time + lead reaches the end of the audio.
    assert 600 - 0.2 - 0.12 <= last_at <= 600 - 0.2 + 0.12, last_at
    marks = [m for _, m in socket.sent if m["event"] == "mark"]
    assert marks == [{"event": "mark", "name": "long"}]
    await _close(socket, task)


async def test_lines_queued_before_the_carrier_connects_play_once_it_does() -> None:
    rig = Rig()
    token = rig.media.expect("call-1")
    await rig.play(("u1", "ab"), ("u2", "cd"))
    socket, task = await rig.open(token)
    await rig.clock.advance(1.0)
    assert [m["name"] for _, m in socket.sent if m["event"] == "mark"] == ["u1", "u2"]
    assert sum(len(p) for _, p in socket.media_sent()) == 4 * 800
    await _close(socket, task)


# ------------------------------------------------------------------------------ marks


async def test_marks_report_what_was_heard_in_order_and_settle_earlier_lines() -> None:
    rig = Rig()
    socket, task = await rig.open(rig.media.expect("call-1"))
    await rig.play(("u1", "ab"), ("u2", "cd"), ("u3", "ef"))
    await rig.clock.advance(1.0)
    assert [type(e) for e in rig.events] == [SpeechStarted, SpeechStarted, SpeechStarted]
    socket.carrier_says(event="mark", name="u2")  # u1's echo was lost: u2 settles it too
    await rig.clock.advance(0)
    socket.carrier_says(event="mark", name="u1")  # late and stale: ignored
    socket.carrier_says(event="mark", name="nope")
    socket.carrier_says(event="mark", name="u3")
    await rig.clock.advance(0)
    played = [e.utterance_id for e in rig.events if isinstance(e, SpeechPlayed)]
    assert played == ["u2", "u3"]
    await _close(socket, task)


# ------------------------------------------------------------------------------ barge-in


async def test_barge_in_clears_the_carrier_and_cuts_where_the_caller_was() -> None:
    rig = Rig(lead_ms=200, ms_per_char=100)
    socket, task = await rig.open(rig.media.expect("call-1"))
    await rig.play(("u1", "x" * 30), ("u2", "queued line"))  # u1: 3 s of audio
    await rig.clock.advance(1.25)
    sent_before = sum(len(p) for _, p in socket.media_sent())
    await rig.ear.says(TranscriptEvent(TranscriptKind.SPEECH_STARTED, started_ms=1200))
    assert socket.sent[-1][1] == {"event": "clear"}
    [cut] = [e for e in rig.events if isinstance(e, SpeechCut)]
    assert cut.utterance_id == "u1" and not cut.rest
    assert cut.heard_ms is not None and 1200 <= cut.heard_ms <= 1300
    await rig.clock.advance(5.0)
    # While the caller talks, nothing more is sent: the rest of u1 never, u2 not yet.
    assert sum(len(p) for _, p in socket.media_sent()) == sent_before
    # The caller finishes: the queued line plays, at once, from an empty carrier buffer.
    await rig.ear.says(TranscriptEvent(TranscriptKind.FINAL, "wait", started_ms=1200))
    finished_at = rig.clock.now()
    await rig.clock.advance(2.0)
    marks = [(at, m["name"]) for at, m in socket.sent if m["event"] == "mark"]
    assert [name for _, name in marks] == ["u2"]
    first_u2 = next(at for at, _ in socket.media_sent()[len(socket.media_sent()) - 11 :])
    assert first_u2 - finished_at < 0.05
    await _close(socket, task)


async def test_after_a_barge_in_the_bot_waits_only_so_long_for_the_caller() -> None:
    rig = Rig(lead_ms=200, ms_per_char=100)
    socket, task = await rig.open(rig.media.expect("call-1"))
    await rig.play(("u1", "x" * 30), ("u2", "queued"))
    await rig.clock.advance(1.0)
    await rig.ear.says(TranscriptEvent(TranscriptKind.SPEECH_STARTED, started_ms=900))
    caller_frame = base64.b64encode(b"\xff" * 160).decode()
    for _ in range(9):
        socket.carrier_says(event="media", payload=caller_frame)
        await rig.clock.advance(1.0)
    assert not [m for _, m in socket.sent if m["event"] == "mark"]
    socket.carrier_says(event="media", payload=caller_frame)
    await rig.clock.advance(2.0)  # max_hold_s (10 s) is over: the bot goes on
    assert [m["name"] for _, m in socket.sent if m["event"] == "mark"] == ["u2"]
    await _close(socket, task)


async def test_caller_speech_while_the_bot_is_quiet_clears_nothing() -> None:
    rig = Rig()
    socket, task = await rig.open(rig.media.expect("call-1"))
    await rig.ear.says(TranscriptEvent(TranscriptKind.SPEECH_STARTED, started_ms=0))
    await rig.ear.says(TranscriptEvent(TranscriptKind.FINAL, "hello", started_ms=0))
    assert all(m["event"] != "clear" for _, m in socket.sent)
    [speech] = rig.events
    assert getattr(speech, "transcript", None) == "hello"
    await _close(socket, task)


async def test_caller_audio_goes_to_the_transcriber() -> None:
    rig = Rig()
    socket, task = await rig.open(rig.media.expect("call-1"))
    for _ in range(5):
        socket.carrier_says(event="media", payload=base64.b64encode(b"\xff" * 160).decode())
    await rig.clock.advance(0)
    assert rig.ear.audio == 800
    await _close(socket, task)
