"""A simulated Telnyx Call Control v2 carrier, for contract tests, end-to-end tests and demos.

It speaks the same wire format as Telnyx, at the same paths (under ``/v2``): JSON REST with a
Bearer key (``POST /v2/calls``, ``POST /v2/calls/{id}/actions/{answer,reject,speak,
transcription_start,transcription_stop,hangup}``, ``GET /v2/calls/{id}``), errors as
``{"errors": [{"code", "title", "detail"}]}`` (``90018`` once a call has ended), and webhooks
``{"data": {"event_type", "id", "occurred_at", "payload"}, "meta": {...}}`` signed with
Ed25519 over ``"{telnyx-timestamp}|{body}"``, posted to the call's ``webhook_url`` (outbound)
or the connection's webhook URL (inbound), one call's webhooks in order, retried with the same
event id when our server does not answer.

The simulated callee follows a script: the configured ``outcome`` decides whether an outbound
call is answered; when the bot's speech has ended and transcription is on, the callee says its
next scripted line (a final ``call.transcription``) after ``reply_delay_s``, and hangs up when
it has nothing left to say.

**Time.** Everything happens in the simulated time of a ``ScaledClock`` (shared with the
service in the contract suite); speech takes ``speech_seconds(text)`` (15 characters a second
by default). Each call records what the callee heard as ``HeardLine``s (``played``), a line
cut off by a hang-up rendered ``text—`` (``heard``), and when the line went dead
(``ended_at``).

**Rules modelled, each from Telnyx's public documentation:**

- ``actions/speak`` queues: "If multiple speak text commands are issued consecutively, the
  audio files will be placed in a queue awaiting playback"; ``stop: current`` stops the line
  playing and goes on with the queue, ``stop: all`` also clears the queue
  (https://developers.telnyx.com/api-reference/call-commands/speak-text).
- ``call.speak.started`` when a line begins to play, ``call.speak.ended`` when it stops, with
  ``status`` ``completed`` or ``call_hangup``; neither names the speak command
  (https://developers.telnyx.com/api-reference/callbacks/call-speak-started,
  https://developers.telnyx.com/api-reference/callbacks/call-speak-ended).
- ``client_state``: "Use this field to add state to every subsequent webhook": a command's
  value replaces the call's, on every webhook emitted after it (same page as speak).
- ``command_id``: "Telnyx will ignore any command with the same command_id for the same
  call_control_id" (same page).
- ``actions/transcription_start`` turns on ``call.transcription`` webhooks with
  ``transcription_data {transcript, is_final, confidence}`` until ``transcription_stop`` or
  the end of the call
  (https://developers.telnyx.com/docs/voice/programmable-voice/speech-to-text).
- ``actions/hangup`` ends the call at once, cutting the speech that plays; ``call.hangup``
  carries ``hangup_cause`` and ``hangup_source``, "The party who ended the call (callee,
  caller, unknown)" (https://developers.telnyx.com/api-reference/call-commands/hangup-call,
  https://developers.telnyx.com/api-reference/callbacks/call-hangup). The leg's caller is
  whoever placed it: us on a call we dialled, the person on a call we answered.
- Webhooks are delivered asynchronously: "you can expect to often, though not always,
  receive webhooks in the order provided"
  (https://developers.telnyx.com/docs/voice/programmable-voice/sending-commands). Each is
  posted after its own small random delay (``delivery_jitter_s``), so two emitted together may
  swap, and a failed delivery is retried later with the same event id.

- Media streams: ``actions/streaming_start`` with ``stream_url`` opens a WebSocket to it, sends
  ``connected`` then ``start`` (``stream_id`` at the top level; ``call_control_id``,
  ``client_state``, ``custom_parameters`` as a name → value object and ``media_format`` inside
  ``start``), then the caller's audio as ``media`` frames (``track: inbound``) every 20 ms
  (https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket).
  With ``stream_bidirectional_mode: "rtp"`` the audio we send is played to the caller
  ("RTP media chunks sent back to Telnyx can contain 20 milliseconds to 30 seconds of audio"),
  a ``mark`` comes back "when the immediately preceding media finishes playing", and ``clear``
  "Stops the current media playback and clears queued media. Queued marks are sent back" (same
  page). The caller's end is a ``SimulatedHandset`` following the same script (``replies``,
  and ``barge_in_after_s`` to talk over a long line). A stream that ends while the call lives
  (``drop_stream``: the network lost the socket, or our server closed it) is reported with a
  ``streaming.stopped`` webhook
  (https://developers.telnyx.com/api-reference/callbacks/streaming-stopped); a stream that
  cannot connect with ``streaming.failed`` (``failure_reason: connection_failed``). When the
  call ends the stream gets ``stop`` and closes.

Run standalone::

    python -m voicecall.testing.telnyx_sim --port 9123 \\
        --webhook-url http://127.0.0.1:3334/voice/webhook --replies "Yes." "Bye." \\
        --signing-key <base64 Ed25519 seed>

with small control endpoints for tests and demos: ``POST /_sim/inbound {"from", "to"}``,
``POST /_sim/hangup {"callControlId"}`` (the callee puts the phone down),
``POST /_sim/drop-stream {"callControlId"}`` (the network loses the call's media stream),
``GET /_sim/calls``, ``POST /_sim/unavailable {"unavailable": true}``, ``GET /_sim/health``.
``--speed`` runs simulated time faster than the wall clock (keep 1 against a real gateway:
webhook timestamps are signed in simulated time).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import datetime as dt
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import httpx
from nacl.signing import SigningKey

from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.adapters.websocket import WsConnect, WsConnection, connect_websocket
from voicecall.testing.asgi import (
    Background,
    Receive,
    Scope,
    Send,
    read_request,
    run_lifespan,
    send_json,
)
from voicecall.testing.simtime import DEFAULT_CHARS_PER_SEC, HeardLine, ScaledClock, speech_seconds

__all__ = [
    "DEFAULT_REPLIES",
    "OUTCOMES",
    "Delivery",
    "SimCall",
    "TelnyxSimulator",
    "main",
]

log = logging.getLogger(__name__)

DEFAULT_REPLIES: Final = (
    "Hi, this is the simulated callee.",
    "Yes, that works for me.",
    "Thanks, goodbye.",
)

OUTCOMES: Final[dict[str, tuple[str, str] | None]] = {
    "answer": None,
    # outcome -> (hangup_cause, sip_hangup_cause) Telnyx reports for the unanswered call
    "busy": ("user_busy", "486"),
    "no-answer": ("timeout", "487"),
    "voicemail": ("machine_detected", "200"),
    "fail": ("unspecified", "503"),
}

_ALREADY_ENDED: Final = ("90018", "Call has already ended")
_NOT_FOUND: Final = ("10005", "Resource not found")
_AUTH_FAILED: Final = ("10009", "Authentication failed")
_BAD_REQUEST: Final = ("10015", "Bad Request")
_REJECT_CAUSES: Final = frozenset(
    {"CALL_REJECTED", "NOT_FOUND", "TEMPORARILY_UNAVAILABLE", "USER_BUSY"}
)


@attrs.define
class _Speak:
    """One accepted speak command, queued or playing."""

    text: str
    line: HeardLine | None = None
    timer: asyncio.Task[Any] | None = None


@attrs.define
class SimCall:
    """One call leg as the simulated carrier knows it."""

    call_control_id: str
    direction: str  # "incoming" | "outgoing" (Telnyx's words)
    from_number: str | None
    to_number: str | None
    webhook_url: str
    connection_id: str
    client_state: str | None = None
    call_leg_id: str = attrs.Factory(lambda: str(uuid.uuid4()))
    call_session_id: str = attrs.Factory(lambda: str(uuid.uuid4()))
    status: str = "ringing"  # ringing | live | ended
    start_time: str = ""
    end_time: str | None = None
    ended_at: float | None = None
    """Simulated time the line went dead."""
    hangup_cause: str | None = None
    hangup_source: str | None = None
    timeout_secs: int | None = None
    played: list[HeardLine] = attrs.Factory(list)
    """Every line the callee was played, in order, with simulated start and end."""
    queue: list[_Speak] = attrs.Factory(list)
    """Accepted speaks not yet played; Telnyx's per-call speak queue."""
    playing: _Speak | None = None
    replies_used: int = 0
    stream: _SimStream | None = None
    """The call's media stream (the caller's handset on it), once one was asked for."""
    transcribing: bool = False
    reply_pending: bool = False
    answered: int = 0
    rejected: int = 0
    hangups: int = 0
    status_checks: int = 0
    commands: set[str] = attrs.Factory(set)

    @property
    def heard(self) -> list[str]:
        """What the callee heard, in order; a line cut off ends in ``—``."""
        return [line.render() for line in self.played if line.ended_at is not None]

    @property
    def speaking(self) -> bool:
        return self.playing is not None or bool(self.queue)

    def to_json(self) -> dict[str, Any]:
        return {
            "callControlId": self.call_control_id,
            "direction": "inbound" if self.direction == "incoming" else "outbound",
            "from": self.from_number,
            "to": self.to_number,
            "status": self.status,
            "hangupCause": self.hangup_cause,
            "hangupSource": self.hangup_source,
            "heard": self.heard,
            "played": [attrs.asdict(line) for line in self.played],
            "endedAt": self.ended_at,
            "answered": self.answered,
            "rejected": self.rejected,
            "hangups": self.hangups,
            "statusChecks": self.status_checks,
            "repliesUsed": self.replies_used,
        }


@attrs.define
class Delivery:
    """One webhook attempt, kept so a test can send it again byte for byte."""

    url: str
    headers: dict[str, str]
    body: bytes
    event_type: str
    call_control_id: str
    status: int | None = None


class _SimStream:
    """Telnyx's end of one call's media stream: its socket(s) and the caller's handset.

    ``streaming_start`` opens a socket; one that ends while the call lives is reported with
    ``streaming.stopped``, and the next ``streaming_start`` carries on with the same handset.
    """

    def __init__(self, sim: TelnyxSimulator, call: SimCall) -> None:
        self.sim = sim
        self.call = call
        self.connections = 0
        self.stream_id: str | None = None
        self._socket: WsConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._inbound = True
        self._plays = False
        self._sequence = 0
        self._chunk = 0
        self._closing = False
        self.handset = SimulatedHandset(
            sim.clock,
            send_audio=self.send_audio,
            echo_mark=self.echo_mark,
            hang_up=self._hang_up,
            replies=sim.replies[call.replies_used :],
            reply_delay_s=sim.reply_delay_s,
            barge_in_after_s=sim.barge_in_after_s,
            chars_per_sec=sim.chars_per_sec,
            # "A clear frame also returns queued marks."
            echo_marks_on_clear=True,
        )

    def open(
        self,
        url: str,
        parameters: dict[str, str],
        *,
        inbound: bool,
        plays: bool,
        stream_params: dict[str, str],
    ) -> None:
        self._inbound, self._plays = inbound, plays
        self._task = asyncio.ensure_future(self._run(url, parameters, stream_params))

    def _frame(self, event: str, **fields: Any) -> str:
        self._sequence += 1
        return json.dumps(
            {"event": event, "sequence_number": str(self._sequence), "stream_id": self.stream_id}
            | fields
        )

    async def _run(
        self, url: str, parameters: dict[str, str], stream_params: dict[str, str]
    ) -> None:
        call = self.call
        stream_id = str(uuid.uuid4())
        try:
            socket = await self.sim.connect_ws(url)
        except ConnectionError as err:
            log.warning("telnyx sim: cannot open the media stream: %s", err)
            self.sim._emit(
                call,
                "streaming.failed",
                {
                    "failure_reason": "connection_failed",
                    "stream_id": stream_id,
                    "stream_params": stream_params,
                    "stream_type": "websocket",
                },
            )
            return
        if call.status != "live":
            await socket.close()
            return
        self._socket, self.stream_id, self._sequence, self._chunk = socket, stream_id, 0, 0
        self.connections += 1
        await socket.send(json.dumps({"event": "connected", "version": "1.0.0"}))
        start = {
            "user_id": "sim-user",
            "call_control_id": call.call_control_id,
            "call_session_id": call.call_session_id,
            "from": call.from_number,
            "to": call.to_number,
            "client_state": call.client_state,
            "custom_parameters": parameters,
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        }
        await socket.send(self._frame("start", start=start))
        self.sim._emit(call, "streaming.started", {"stream_url": stream_params["stream_url"]})
        self.handset.start()
        while True:
            message = await socket.recv()
            if message is None:
                break
            await self._from_server(message)
        if self._socket is socket:
            self._socket = None
        if not self._closing and call.status == "live":
            self.sim._emit(call, "streaming.stopped", {"stream_url": stream_params["stream_url"]})

    async def _from_server(self, message: str) -> None:
        try:
            data = json.loads(message)
            event = data["event"]
            if event == "media":
                if not self._plays:
                    return  # not a bidirectional stream: nothing is played
                audio = base64.b64decode(data["media"]["payload"], validate=True)
                if not 160 <= len(audio) <= 30 * 8000:
                    log.warning("telnyx sim: a media frame of %d bytes ignored", len(audio))
                    return
                self.handset.receive_audio(audio)
            elif event == "mark":
                self.handset.receive_mark(str(data["mark"]["name"]))
            elif event == "clear":
                await self.handset.receive_clear()
            else:
                log.warning("telnyx sim: unknown stream event %r ignored", event)
        except (ValueError, KeyError, TypeError, binascii.Error):
            log.warning("telnyx sim: a malformed stream message ignored")

    async def send_audio(self, frame: bytes) -> None:
        socket = self._socket
        if socket is None or not self._inbound:
            return
        self._chunk += 1
        media = {
            "track": "inbound",
            "chunk": str(self._chunk),
            "timestamp": str((self._chunk - 1) * 20),
            "payload": base64.b64encode(frame).decode(),
        }
        await socket.send(self._frame("media", media=media))

    async def echo_mark(self, name: str) -> None:
        socket = self._socket
        if socket is not None:
            await socket.send(self._frame("mark", mark={"name": name}))

    async def _hang_up(self) -> None:
        # The caller ran out of things to say and puts the phone down.
        self.call.replies_used = len(self.sim.replies)
        await self.sim.caller_hangs_up(self.call.call_control_id)

    async def drop(self) -> None:
        """The network loses the socket (the call goes on)."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()

    async def close(self, *, say_stop: bool = True) -> None:
        """The call is over: the handset stops, ``stop`` is sent and the socket closes."""
        self._closing = True
        await self.handset.stop()
        socket, self._socket = self._socket, None
        if socket is not None:
            if say_stop:
                stop = {"user_id": "sim-user", "call_control_id": self.call.call_control_id}
                await socket.send(self._frame("stop", stop=stop))
            await socket.close()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class _HttpError(Exception):
    def __init__(self, status: int, code: tuple[str, str], detail: str = "") -> None:
        super().__init__(detail or code[1])
        self.status = status
        self.code = code
        self.detail = detail or code[1]


def _iso(at: float) -> str:
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _signing_key(key: SigningKey | bytes | str) -> SigningKey:
    if isinstance(key, SigningKey):
        return key
    if isinstance(key, str):
        key = base64.b64decode(key, validate=True)
    return SigningKey(key)


class TelnyxSimulator:
    """The simulated carrier: an ASGI app plus the callee's script.

    Args:
        webhook: the client webhooks are posted with (an ``httpx.ASGITransport`` in-process,
            or real loopback HTTP).
        signing_key: the Ed25519 private key (or its 32-byte seed, raw or base64) webhooks
            are signed with; its public key goes into ``telnyx.publicKey``.
        connection_webhook_url: where the connection sends webhooks of inbound calls (and of
            outbound calls dialled without ``webhook_url``).
        api_key: when set, REST requires ``Authorization: Bearer <api_key>``.
        outcome: what happens to outbound calls (see ``OUTCOMES``).
        replies: the callee's lines, one per turn.
        answer_delay_s: how long an outbound call rings before the outcome.
        reply_delay_s: how long after the bot stops talking the callee's line is transcribed.
        retry_delays_s: the pauses between webhook attempts when our server does not answer.
        clock: the simulated time everything runs on (and webhooks are signed with).
        chars_per_sec: how fast ``speak`` talks.
        delivery_jitter_s: each webhook is posted after a random delay up to this long.
        seed: seeds the delivery jitter, for a reproducible run.
        connect_ws: how media streams are opened (the network by default; tests connect
            in-process).
        barge_in_after_s: on a media stream, the caller talks over any bot line that has
            played this long (None: never).
        connection_id: the one call control application REST knows (None: any id).

    Every delay is in simulated seconds.
    """

    def __init__(
        self,
        webhook: httpx.AsyncClient,
        signing_key: SigningKey | bytes | str,
        connection_webhook_url: str,
        *,
        api_key: str | None = None,
        outcome: str = "answer",
        replies: Sequence[str] = DEFAULT_REPLIES,
        answer_delay_s: float = 0.5,
        reply_delay_s: float = 0.5,
        retry_delays_s: Sequence[float] = (0.2, 0.5, 1.0, 2.0, 4.0),
        clock: ScaledClock | None = None,
        chars_per_sec: float = DEFAULT_CHARS_PER_SEC,
        delivery_jitter_s: float = 0.05,
        seed: int | None = None,
        connect_ws: WsConnect | None = None,
        barge_in_after_s: float | None = None,
        connection_id: str | None = None,
    ) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        self.webhook = webhook
        self.signing_key = _signing_key(signing_key)
        self.connection_webhook_url = connection_webhook_url
        self.api_key = api_key
        self.connection_id = connection_id
        self.outcome = outcome
        self.replies = tuple(replies)
        self.answer_delay_s = answer_delay_s
        self.reply_delay_s = reply_delay_s
        self.retry_delays_s = tuple(retry_delays_s)
        self.clock = clock if clock is not None else ScaledClock(1.0)
        self.chars_per_sec = chars_per_sec
        self.delivery_jitter_s = delivery_jitter_s
        self._random = random.Random(seed)
        self.connect_ws: WsConnect = connect_ws or connect_websocket
        self.barge_in_after_s = barge_in_after_s
        self.unavailable = False
        """When set, every REST request is answered 503 (a simulated outage)."""
        self.calls: dict[str, SimCall] = {}
        self.requests: list[tuple[str, str, Any]] = []
        """Every REST request received: (method, path, JSON body or None)."""
        self.deliveries: list[Delivery] = []
        self.dials = 0
        self._background = Background("telnyx sim")
        self._undelivered = 0

    @property
    def public_key_b64(self) -> str:
        """The base64 public key to configure as ``telnyx.publicKey``."""
        return base64.b64encode(bytes(self.signing_key.verify_key)).decode("ascii")

    # ------------------------------------------------------------------ test/demo surface

    def heard(self, call_control_id: str | None) -> list[str]:
        """What the callee heard on the call, in order; a line cut off ends in ``—``."""
        call = self.calls.get(call_control_id or "")
        if call is not None and call.stream is not None:
            return [line.render() for line in call.stream.handset.heard]
        return call.heard if call else []

    def played(self, call_control_id: str | None) -> list[HeardLine]:
        """Each line played to the callee, with simulated start and end (None while playing)."""
        call = self.calls.get(call_control_id or "")
        if call is not None and call.stream is not None:
            return [
                HeardLine(
                    text=line.text,
                    started_at=line.started_at,
                    ended_at=line.ended_at,
                    whole=line.whole,
                )
                for line in call.stream.handset.heard
            ]
        return [attrs.evolve(line) for line in call.played] if call else []

    def ended_at(self, call_control_id: str | None) -> float | None:
        """Simulated time the line went dead; None while it is up."""
        call = self.calls.get(call_control_id or "")
        return call.ended_at if call else None

    def handset(self, call_control_id: str | None) -> SimulatedHandset | None:
        """The caller's handset on the call's media stream, once one was asked for."""
        call = self.calls.get(call_control_id or "")
        return call.stream.handset if call is not None and call.stream is not None else None

    def stream_connections(self, call_control_id: str | None) -> int:
        """How many times a media stream of the call was opened."""
        call = self.calls.get(call_control_id or "")
        return call.stream.connections if call is not None and call.stream is not None else 0

    async def drop_stream(self, call_control_id: str | None) -> None:
        """The network loses the call's stream socket; the call itself goes on."""
        call = self.calls.get(call_control_id or "")
        if call is not None and call.stream is not None:
            await call.stream.drop()

    async def caller_hangs_up(self, call_control_id: str | None) -> None:
        """The person on the line (callee of an outbound call, caller of an inbound one)
        puts the phone down now, whatever is playing."""
        call = self.calls.get(call_control_id or "")
        if call is None or call.status == "ended":
            return
        if call.status == "ringing":
            self._end(call, "originator_cancel", source=self._person(call), sip_cause="487")
        else:
            self._end(call, "normal_clearing", source=self._person(call), sip_cause="200")

    async def ring_inbound(self, from_number: str | None, to_number: str | None) -> str:
        """A caller rings the connection's number; returns the new call's control id."""
        call = SimCall(
            call_control_id=f"v3:{uuid.uuid4().hex}",
            direction="incoming",
            from_number=from_number,
            to_number=to_number,
            webhook_url=self.connection_webhook_url,
            connection_id="sim-connection",
            start_time=_iso(self.clock.now()),
        )
        self.calls[call.call_control_id] = call
        self._emit(call, "call.initiated", {"state": "parked"})
        return call.call_control_id

    @property
    def last_delivery(self) -> Delivery | None:
        return self.deliveries[-1] if self.deliveries else None

    async def redeliver(self, delivery: Delivery | None = None) -> httpx.Response:
        """Post a delivered webhook again, byte for byte (as a carrier retry would)."""
        delivery = delivery or self.last_delivery
        if delivery is None:
            raise LookupError("no webhook was delivered yet")
        return await self.webhook.post(
            delivery.url, content=delivery.body, headers=delivery.headers
        )

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers Telnyx sends with ``body``."""
        stamp = str(int(self.clock.now()) if timestamp is None else timestamp)
        signature = self.signing_key.sign(stamp.encode("ascii") + b"|" + body).signature
        return {
            "content-type": "application/json",
            "user-agent": "telnyx-webhooks",
            "telnyx-signature-ed25519": base64.b64encode(signature).decode("ascii"),
            "telnyx-timestamp": stamp,
        }

    async def idle(self, timeout_s: float = 5.0) -> None:
        """Wait (``timeout_s`` wall seconds at most) until every webhook was delivered and no
        timer is pending."""
        deadline = time.monotonic() + timeout_s
        while self._undelivered or any(not t.done() for t in self._background.tasks):
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated carrier did not settle")
            await asyncio.sleep(0.01)

    def snapshot(self) -> dict[str, Any]:
        return {
            "dials": self.dials,
            "calls": [call.to_json() for call in self.calls.values()],
            "undelivered": self._undelivered,
            "unavailable": self.unavailable,
        }

    async def aclose(self) -> None:
        for call in self.calls.values():
            if call.stream is not None:
                await call.stream.close(say_stop=False)
        await self._background.aclose()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, self._shutdown)
            return
        if scope["type"] != "http":
            return
        body, headers = await read_request(scope, receive)
        try:
            status, answer = await self._route(
                scope["method"].upper(), scope["path"], headers, body
            )
        except _HttpError as err:
            status = err.status
            answer = {"errors": [{"code": err.code[0], "title": err.code[1], "detail": err.detail}]}
        await send_json(send, status, answer)

    async def _shutdown(self) -> None:
        await self.aclose()
        await self.webhook.aclose()

    async def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if path.startswith("/_sim/"):
            return await self._control(method, path, body)
        if not path.startswith("/v2/"):
            raise _HttpError(404, _NOT_FOUND)
        parts = path[len("/v2/") :].split("/")
        document = self._json_body(method, body)
        self.requests.append((method, path, document))
        if self.unavailable:
            raise _HttpError(503, ("10000", "Service Unavailable"), "simulated outage")
        self._authorize(headers)
        if parts == ["calls"] and method == "POST":
            return 200, self._dial(document)
        if len(parts) == 2 and parts[0] == "calls" and method == "GET":
            call = self._known(parts[1])
            call.status_checks += 1
            return 200, {"data": self._call_record(call)}
        if len(parts) == 2 and parts[0] == "call_control_applications" and method == "GET":
            # Retrieve a call control application, read-only (developers.telnyx.com,
            # api-reference/call-control-applications): what `voicecall doctor` asks to learn
            # that the key is accepted and the connection exists.
            if self.connection_id is not None and parts[1] != self.connection_id:
                raise _HttpError(404, _NOT_FOUND, "no such call control application")
            return 200, {"data": self._application(parts[1])}
        if len(parts) == 4 and parts[0] == "calls" and parts[2] == "actions" and method == "POST":
            return 200, self._action(self._known(parts[1]), parts[3], document)
        raise _HttpError(404, _NOT_FOUND, f"no route for {method} {path}")

    def _application(self, application_id: str) -> dict[str, Any]:
        return {
            "id": application_id,
            "record_type": "call_control_application",
            "application_name": "simulated",
            "active": True,
            "webhook_event_url": self.connection_webhook_url,
            "webhook_api_version": "2",
        }

    def _json_body(self, method: str, body: bytes) -> dict[str, Any]:
        if method == "GET" or not body:
            return {}
        try:
            document = json.loads(body)
        except ValueError:
            raise _HttpError(422, _BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(document, dict):
            raise _HttpError(422, _BAD_REQUEST, "the body must be a JSON object")
        return document

    def _authorize(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _HttpError(401, _AUTH_FAILED, "a Bearer API key is required")
        if self.api_key is not None and token != self.api_key:
            raise _HttpError(401, _AUTH_FAILED, "the API key is not valid")

    def _known(self, call_control_id: str) -> SimCall:
        call = self.calls.get(call_control_id)
        if call is None:
            raise _HttpError(404, _NOT_FOUND, f"no call {call_control_id!r}")
        return call

    # ------------------------------------------------------------------ REST: dial

    def _dial(self, body: dict[str, Any]) -> dict[str, Any]:
        for field in ("connection_id", "to", "from"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise _HttpError(422, _BAD_REQUEST, f"{field} is required")
        client_state = body.get("client_state")
        if client_state is not None:
            _check_base64(client_state, "client_state")
        command_id = body.get("command_id")
        if isinstance(command_id, str) and command_id:
            # Telnyx ignores a second dial with the same command_id.
            for known in self.calls.values():
                if f"dial:{command_id}" in known.commands:
                    return {"data": self._call_record(known)}
        timeout = body.get("timeout_secs")
        if timeout is not None and (not isinstance(timeout, int) or not 5 <= timeout <= 600):
            raise _HttpError(422, _BAD_REQUEST, "timeout_secs must be an integer 5..600")
        webhook_url = body.get("webhook_url")
        call = SimCall(
            call_control_id=f"v3:{uuid.uuid4().hex}",
            direction="outgoing",
            from_number=body["from"],
            to_number=body["to"],
            webhook_url=webhook_url
            if isinstance(webhook_url, str) and webhook_url
            else (self.connection_webhook_url),
            connection_id=body["connection_id"],
            client_state=client_state,
            start_time=_iso(self.clock.now()),
            timeout_secs=timeout,
        )
        if isinstance(command_id, str) and command_id:
            call.commands.add(f"dial:{command_id}")
        self.calls[call.call_control_id] = call
        self.dials += 1
        self._emit(call, "call.initiated", {"state": "bridging"})
        self._background.spawn(self._ring(call))
        return {"data": self._call_record(call)}

    async def _ring(self, call: SimCall) -> None:
        await self.clock.sleep(self.answer_delay_s)
        if call.status != "ringing":
            return
        unanswered = OUTCOMES[self.outcome]
        if unanswered is None:
            call.status = "live"
            call.answered += 1
            self._emit(call, "call.answered", {"state": "answered"})
        else:
            cause, sip_cause = unanswered
            self._end(call, cause, source="callee", sip_cause=sip_cause)

    def _call_record(self, call: SimCall) -> dict[str, Any]:
        record: dict[str, Any] = {
            "record_type": "call",
            "call_control_id": call.call_control_id,
            "call_leg_id": call.call_leg_id,
            "call_session_id": call.call_session_id,
            # A leg is alive from creation (ringing) until it is hung up.
            "is_alive": call.status != "ended",
            "start_time": call.start_time,
        }
        if call.client_state is not None:
            record["client_state"] = call.client_state
        if call.end_time is not None:
            record["end_time"] = call.end_time
        return record

    # ------------------------------------------------------------------ REST: actions

    def _action(self, call: SimCall, action: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self._ACTIONS.get(action)
        if handler is None:
            raise _HttpError(404, _NOT_FOUND, f"no action {action!r}")
        command_id = body.get("command_id")
        if isinstance(command_id, str) and command_id:
            key = f"{action}:{command_id}"
            if key in call.commands:
                return {"data": {"result": "ok"}}  # a duplicate command is ignored
        if call.status == "ended":
            raise _HttpError(
                422, _ALREADY_ENDED, "This call is no longer active and can't receive commands."
            )
        client_state = body.get("client_state")
        if client_state is not None:
            _check_base64(client_state, "client_state")
            # "Use this field to add state to every subsequent webhook": it replaces the
            # call's state, on the webhooks of every later command too, not just this one's.
            call.client_state = client_state
        handler(self, call, body)
        if isinstance(command_id, str) and command_id:
            call.commands.add(f"{action}:{command_id}")
        return {"data": {"result": "ok"}}

    def _answer(self, call: SimCall, body: dict[str, Any]) -> None:
        if call.direction != "incoming":
            raise _HttpError(422, _BAD_REQUEST, "only an incoming call can be answered")
        if call.status != "ringing":
            raise _HttpError(422, _BAD_REQUEST, "the call was already answered")
        webhook_url = body.get("webhook_url")
        if isinstance(webhook_url, str) and webhook_url:
            call.webhook_url = webhook_url
        call.status = "live"
        call.answered += 1
        self._emit(call, "call.answered", {"state": "answered"})

    def _reject(self, call: SimCall, body: dict[str, Any]) -> None:
        if body.get("cause") not in _REJECT_CAUSES:
            raise _HttpError(422, _BAD_REQUEST, "cause is required")
        if call.direction != "incoming" or call.status != "ringing":
            raise _HttpError(422, _BAD_REQUEST, "only a ringing incoming call can be rejected")
        call.rejected += 1
        self._end(call, "call_rejected", source="callee", sip_cause="603")

    def _speak(self, call: SimCall, body: dict[str, Any]) -> None:
        self._require_live(call)
        text, voice, stop = body.get("payload"), body.get("voice"), body.get("stop")
        if not isinstance(text, str) or not text:
            raise _HttpError(422, _BAD_REQUEST, "payload is required")
        if not isinstance(voice, str) or not voice:
            raise _HttpError(422, _BAD_REQUEST, "voice is required")
        if stop is not None and stop not in ("current", "all"):
            raise _HttpError(422, _BAD_REQUEST, 'stop must be "current" or "all"')
        if stop == "all":
            call.queue.clear()
        if stop is not None:
            self._cut_playing(call)
        # Consecutive speaks wait in a queue; playback starts on a later tick, never inside
        # the REST request (and after this command's client_state took effect).
        call.queue.append(_Speak(text))
        if call.playing is None:
            self._background.spawn(self._start_next(call))

    def _transcription_start(self, call: SimCall, body: dict[str, Any]) -> None:
        self._require_live(call)
        call.transcribing = True
        if not call.speaking:
            self._callee_may_answer(call)

    def _transcription_stop(self, call: SimCall, body: dict[str, Any]) -> None:
        call.transcribing = False

    def _streaming_start(self, call: SimCall, body: dict[str, Any]) -> None:
        self._require_live(call)
        url = body.get("stream_url")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise _HttpError(422, _BAD_REQUEST, "stream_url must be a ws:// or wss:// URL")
        track = body.get("stream_track", "inbound_track")
        if track not in ("inbound_track", "outbound_track", "both_tracks"):
            raise _HttpError(422, _BAD_REQUEST, "stream_track is not valid")
        mode = body.get("stream_bidirectional_mode")
        if mode is not None and mode not in ("mp3", "rtp"):
            raise _HttpError(422, _BAD_REQUEST, 'stream_bidirectional_mode must be "mp3" or "rtp"')
        codec = body.get("stream_bidirectional_codec", "PCMU")
        if mode == "rtp" and codec != "PCMU":
            # The only codec this simulator plays; Telnyx also has PCMA, G722, OPUS, AMR-WB, L16.
            raise _HttpError(422, _BAD_REQUEST, "the simulator plays PCMU only")
        parameters: dict[str, str] = {}
        for item in body.get("custom_parameters") or []:
            name, value = (
                (item.get("name"), item.get("value")) if isinstance(item, dict) else (None, None)
            )
            if not isinstance(name, str) or not isinstance(value, str):
                raise _HttpError(422, _BAD_REQUEST, "custom_parameters are {name, value} strings")
            parameters[name] = value
        if call.stream is None:
            call.stream = _SimStream(self, call)
        call.stream.open(
            url,
            parameters,
            inbound=track != "outbound_track",
            plays=mode == "rtp",
            stream_params={"stream_url": url, "stream_track": track},
        )

    def _hangup(self, call: SimCall, body: dict[str, Any]) -> None:
        call.hangups += 1
        # Whoever placed the leg is its caller; that is us on outbound calls.
        source = "caller" if call.direction == "outgoing" else "callee"
        cause = "normal_clearing" if call.status == "live" else "originator_cancel"
        self._end(call, cause, source=source, sip_cause="200" if call.status == "live" else "487")

    _ACTIONS: Final[dict[str, Callable[[TelnyxSimulator, SimCall, dict[str, Any]], None]]] = {
        "answer": _answer,
        "reject": _reject,
        "speak": _speak,
        "transcription_start": _transcription_start,
        "transcription_stop": _transcription_stop,
        "streaming_start": _streaming_start,
        "hangup": _hangup,
    }

    @staticmethod
    def _require_live(call: SimCall) -> None:
        if call.status != "live":
            raise _HttpError(422, _BAD_REQUEST, "the call has not been answered")

    # ------------------------------------------------------------------ speech

    async def _start_next(self, call: SimCall) -> None:
        if call.status != "live" or call.playing is not None or not call.queue:
            return
        speak = call.queue.pop(0)
        speak.line = HeardLine(text=speak.text, started_at=self.clock.now())
        call.played.append(speak.line)
        call.playing = speak
        self._emit(call, "call.speak.started", {})
        speak.timer = asyncio.current_task()
        try:
            await self.clock.sleep(speech_seconds(speak.text, self.chars_per_sec))
        except asyncio.CancelledError:
            return  # cut: whoever cancelled recorded it
        if call.playing is not speak or call.status != "live":
            return
        speak.timer = None
        speak.line.ended_at = self.clock.now()
        speak.line.whole = True
        call.playing = None
        self._emit(call, "call.speak.ended", {"status": "completed"})
        if call.queue:
            self._background.spawn(self._start_next(call))
        elif call.transcribing:
            self._callee_may_answer(call)

    def _cut_playing(self, call: SimCall, status: str = "completed") -> None:
        speak = call.playing
        if speak is None:
            return
        call.playing = None
        if speak.line is not None:
            speak.line.ended_at = self.clock.now()
            speak.line.whole = False
        if speak.timer is not None and speak.timer is not asyncio.current_task():
            speak.timer.cancel()
        self._emit(call, "call.speak.ended", {"status": status})
        if status == "completed" and call.queue:
            self._background.spawn(self._start_next(call))

    # ------------------------------------------------------------------ the callee

    def _callee_may_answer(self, call: SimCall) -> None:
        if not call.reply_pending:
            call.reply_pending = True
            self._background.spawn(self._callee_turn(call))

    async def _callee_turn(self, call: SimCall) -> None:
        await self.clock.sleep(self.reply_delay_s)
        call.reply_pending = False
        # The callee answers once the bot has stopped talking; speech while nobody
        # transcribes is lost to us, and the callee says it again next turn.
        if call.status != "live" or not call.transcribing or call.speaking:
            return
        if call.replies_used >= len(self.replies):
            self._end(call, "normal_clearing", source=self._person(call), sip_cause="200")
            return
        line = self.replies[call.replies_used]
        call.replies_used += 1
        self._emit(
            call,
            "call.transcription",
            {
                "transcription_data": {
                    "transcript": line,
                    "is_final": True,
                    "confidence": 0.97,
                    "transcription_track": "inbound",
                }
            },
        )

    @staticmethod
    def _person(call: SimCall) -> str:
        """The ``hangup_source`` of the person on the line: a leg's caller placed it."""
        return "callee" if call.direction == "outgoing" else "caller"

    def _end(self, call: SimCall, cause: str, *, source: str, sip_cause: str) -> None:
        # The line goes dead now: what plays is cut where the callee stopped hearing it, and
        # the queued speaks are never played.
        self._cut_playing(call, status="call_hangup")
        call.queue.clear()
        now = self.clock.now()
        call.status = "ended"
        call.transcribing = False
        call.hangup_cause = cause
        call.hangup_source = source
        call.ended_at = now
        call.end_time = _iso(now)
        if call.stream is not None:
            self._background.spawn(call.stream.close())
        self._emit(
            call,
            "call.hangup",
            {
                "state": "hangup",
                "hangup_cause": cause,
                "hangup_source": source,
                "sip_hangup_cause": sip_cause,
                "start_time": call.start_time,
                "end_time": call.end_time,
            },
        )

    # ------------------------------------------------------------------ webhooks

    def _emit(self, call: SimCall, event_type: str, extra: dict[str, Any]) -> None:
        payload: dict[str, Any] = {
            "call_control_id": call.call_control_id,
            "call_leg_id": call.call_leg_id,
            "call_session_id": call.call_session_id,
            "connection_id": call.connection_id,
            "from": call.from_number,
            "to": call.to_number,
            "direction": call.direction,
        }
        # The call's state as the latest command left it, whichever command this is about.
        if call.client_state is not None:
            payload["client_state"] = call.client_state
        payload.update(extra)
        data = {
            "record_type": "event",
            "event_type": event_type,
            "id": str(uuid.uuid4()),
            "occurred_at": _iso(self.clock.now()),
            "payload": payload,
        }
        # The URL is read now: a webhook_url given later applies to later events only.
        self._undelivered += 1
        self._background.spawn(self._deliver_later(call.webhook_url, data))

    async def _deliver_later(self, url: str, data: dict[str, Any]) -> None:
        # Each webhook travels on its own, after its own delay: "often, though not always"
        # in the order they were emitted.
        try:
            await self.clock.sleep(self._random.uniform(0.0, self.delivery_jitter_s))
            await self._deliver(url, data)
        finally:
            self._undelivered -= 1

    async def _deliver(self, url: str, data: dict[str, Any]) -> None:
        delays = (0.0, *self.retry_delays_s)
        for attempt, delay in enumerate(delays, start=1):
            if delay:
                await self.clock.sleep(delay)
            body = json.dumps(
                {"data": data, "meta": {"attempt": attempt, "delivered_to": url}}
            ).encode()
            delivery = Delivery(
                url=url,
                headers=self.sign(body),
                body=body,
                event_type=data["event_type"],
                call_control_id=data["payload"]["call_control_id"],
            )
            self.deliveries.append(delivery)
            try:
                response = await self.webhook.post(url, content=body, headers=delivery.headers)
            except httpx.HTTPError as err:
                log.info("telnyx sim: %s to %s failed: %s", data["event_type"], url, err)
                continue
            delivery.status = response.status_code
            if response.status_code < 500:
                if response.status_code >= 300:
                    log.warning(
                        "telnyx sim: %s answered %s", data["event_type"], response.status_code
                    )
                return
        log.warning("telnyx sim: gave up delivering %s to %s", data["event_type"], url)

    # ------------------------------------------------------------------ control endpoints

    async def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/_sim/health" and method == "GET":
            return 200, {"ok": True}
        if path == "/_sim/calls" and method == "GET":
            return 200, self.snapshot()
        document = self._json_body(method, body)
        if path == "/_sim/inbound" and method == "POST":
            from_number, to_number = document.get("from"), document.get("to")
            if from_number is not None and not isinstance(from_number, str):
                raise _HttpError(422, _BAD_REQUEST, "from must be a string")
            if to_number is not None and not isinstance(to_number, str):
                raise _HttpError(422, _BAD_REQUEST, "to must be a string")
            pid = await self.ring_inbound(from_number, to_number)
            return 200, {"callControlId": pid}
        if path == "/_sim/hangup" and method == "POST":
            target = document.get("callControlId")
            if not isinstance(target, str) or target not in self.calls:
                raise _HttpError(404, _NOT_FOUND, "no such callControlId")
            await self.caller_hangs_up(target)
            return 200, self.calls[target].to_json()
        if path == "/_sim/drop-stream" and method == "POST":
            target = document.get("callControlId")
            if not isinstance(target, str) or target not in self.calls:
                raise _HttpError(404, _NOT_FOUND, "no such callControlId")
            await self.drop_stream(target)
            return 200, self.calls[target].to_json()
        if path == "/_sim/unavailable" and method == "POST":
            self.unavailable = bool(document.get("unavailable", True))
            return 200, {"unavailable": self.unavailable}
        raise _HttpError(404, _NOT_FOUND, f"no control route {method} {path}")


def _check_base64(value: object, field: str) -> None:
    if not isinstance(value, str):
        raise _HttpError(422, _BAD_REQUEST, f"{field} must be a string")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _HttpError(422, _BAD_REQUEST, f"{field} must be valid Base-64") from None


# --------------------------------------------------------------------------------------------
# Standalone runner
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m voicecall.testing.telnyx_sim``: serve the simulator on 127.0.0.1."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-url", required=True, help="the connection's webhook URL")
    parser.add_argument("--replies", nargs="*", default=list(DEFAULT_REPLIES))
    parser.add_argument("--outcome", choices=sorted(OUTCOMES), default="answer")
    parser.add_argument(
        "--signing-key",
        default=os.environ.get("TELNYX_SIM_SIGNING_KEY"),
        help="base64 Ed25519 seed (else $TELNYX_SIM_SIGNING_KEY; else a fresh key)",
    )
    parser.add_argument("--api-key", default=None, help="require this Bearer key on REST")
    parser.add_argument(
        "--connection-id", default=None, help="the one call control application id (else any)"
    )
    parser.add_argument("--answer-delay-ms", type=int, default=100)
    parser.add_argument("--reply-delay-ms", type=int, default=300)
    parser.add_argument("--chars-per-sec", type=float, default=DEFAULT_CHARS_PER_SEC)
    parser.add_argument(
        "--barge-in-after-s",
        type=float,
        default=None,
        help="on a media stream, the caller talks over a bot line that has played this long",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per wall second (webhooks are signed in simulated time)",
    )
    args = parser.parse_args(argv)
    key: SigningKey | str = args.signing_key or SigningKey.generate()
    simulator = TelnyxSimulator(
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0)),
        key,
        args.webhook_url,
        api_key=args.api_key,
        outcome=args.outcome,
        replies=args.replies,
        answer_delay_s=args.answer_delay_ms / 1000,
        reply_delay_s=args.reply_delay_ms / 1000,
        clock=ScaledClock(args.speed),
        chars_per_sec=args.chars_per_sec,
        barge_in_after_s=args.barge_in_after_s,
        connection_id=args.connection_id,
    )
    print(f"telnyx sim: public key {simulator.public_key_b64}", flush=True)
    uvicorn.run(simulator, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
