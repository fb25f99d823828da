"""A simulated Plivo: the Voice API paths Plivo serves, and a callee who follows Plivo XML.

It speaks the same wire format as the real service, so the adapter is exercised end to end:

* REST under ``/v1/Account/{auth_id}/`` with HTTP basic auth: ``POST Call/`` (make a call,
  answers ``request_uuid``), ``POST Call/{uuid}/`` (transfer: ``legs=aleg``, ``aleg_url``),
  ``DELETE Call/{uuid}/`` (hang up; 404 when not live), ``DELETE Request/{uuid}/`` (cancel a
  queued call), ``GET Call/{uuid}/?status=live`` (404 when not live), ``GET Call/{uuid}/`` (the
  CDR, 404 until the call is over) and ``GET Call/{uuid}/?status=queued``. Every request is
  recorded; with ``unavailable`` set, all of them answer 503.
* Webhooks are form-encoded POSTs signed with Plivo's V3 scheme (``X-Plivo-Signature-V3`` and
  ``-V3-Nonce``, computed with the plivo SDK's own helpers over URL, sorted fields and nonce).
* Plivo XML is followed element by element in simulated time (a ``ScaledClock``), by these
  rules, each written from Plivo's public documentation:

  - ``<Speak>`` takes time, about 15 characters a second (``chars_per_sec``), and the next
    element runs when it is done (https://plivo.com/docs/voice/xml/speak). The callee keeps a
    record of each line (``played``: start, end, heard whole or cut).
  - ``<GetInput inputType="speech">`` plays its nested ``<Speak>``s, then listens; the callee
    answers ``reply_delay_s`` after the prompt ended and the words are POSTed to ``action``;
    with ``redirect="true"`` (the default) the call runs the document that answer returns,
    with ``"false"`` it goes on with the next element. A callee who stays silent (a scripted
    ``""`` reply) lets ``executionTimeout`` (default 15 s, "counted after nested Play/Speak
    elements have ended") run out and the next element is processed, no request made
    (https://plivo.com/docs/voice/xml/getinput).
  - ``<Redirect>`` fetches the next document; nothing after it runs
    (https://docs.plivo.com/docs/voice/xml/redirect). ``<Wait length>`` waits
    (https://plivo.com/docs/voice/xml/wait). ``<Hangup>`` ends the call, ``reason="rejected"``
    refusing it (https://plivo.com/docs/voice/xml/hangup). A document that runs out ends the
    call: "End Of XML Instructions" (https://docs.plivo.com/docs/voice/troubleshooting/hangup-causes).
  - A transfer (``POST Call/{uuid}/`` with ``aleg_url``) makes the live call "fetch and execute
    XML from a different URL": the document that was running is abandoned at once, a
    ``<Speak>`` cut mid-sentence; after 70 transfers the call is hung up ("Loop detected")
    (https://plivo.com/docs/voice/api/call/transfer-a-call).
  - The ring and hang-up callbacks are sent apart from the XML fetches, each after a small
    random delay (``callback_delay_s``), so they may arrive after the next fetch. The hang-up
    callback names who ended the call in ``HangupSource``: ``Caller`` / ``Call recipient`` for
    the person, ``API Request`` for our DELETE, ``Answer XML`` for a ``<Hangup>`` we served,
    ``Plivo`` at the end of the XML (hangup-causes page above).

* ``<Stream>`` opens an audio stream, as the Stream element and Stream Event Protocol pages
  describe (https://plivo.com/docs/voice/xml/audio-streaming,
  https://docs.plivo.com/docs/voice/xml/audiostream,
  https://plivo.com/docs/voice/audio-streaming/audio-streaming): a WebSocket to the element's
  URL (through the injected ``connect_ws``), a ``start`` message carrying ``callId``,
  ``streamId``, the media format and the element's ``extraHeaders`` verbatim as
  ``extra_headers``, then the caller's audio as ``media`` every 20 ms. A ``SimulatedHandset``
  is the caller: with ``bidirectional="true"`` it plays each ``playAudio`` at 8 kHz, answers a
  ``checkpoint`` with ``playedStream`` only once the audio before it was played (never for
  audio a ``clearAudio`` dropped: "playedStream will only be emitted if the preceding events
  were played successfully"), answers ``clearAudio`` with ``clearedAudio``, records what it
  heard and talks back from ``replies`` (talking over a long line after ``barge_in_after_s``).
  ``extraHeaders`` is checked as documented ("Max length: 512 bytes. Only characters [A-Z],
  [a-z], [0-9] allowed", key=value pairs); a bad one is invalid XML. Only
  ``audio/x-mulaw;rate=8000`` streams are simulated. With ``keepCallAlive="true"`` the element
  "runs alone. Subsequent XML elements execute only after the stream disconnects"; without
  it the XML goes on at once. The socket closes when the call ends (the protocol lists no
  ``stop`` message) or after ``streamTimeout``; ``drop_stream`` loses it to the network while
  the call goes on, and the XML after a ``keepCallAlive`` stream then runs.
* A call rings (``ring_url``), then is answered (``answer_url``), busy, unanswered, failed or
  picked up by voicemail per ``outcome``. Voicemail is a machine that never speaks and hangs up
  after ``voicemail_s``; without machine detection Plivo reports it as an answered call.
  The callee hangs up when it has no scripted line left for a ``<GetInput>``, or when told to
  (``caller_hangs_up``).
* ``ring_inbound`` rings us: the application's Answer URL is fetched with
  ``Direction=inbound``.

Run it standalone for demos and end-to-end tests::

    python -m voicecall.testing.plivo_sim --port 8790 --webhook-url http://127.0.0.1:3334/voice/webhook

(``--speed S`` runs simulated time S times faster; ``--barge-in-after-s`` makes the caller on
a media stream talk over long lines.) Control endpoints (no auth; bind to
loopback): ``POST /_sim/inbound {"from", "to"}``, ``GET /_sim/calls`` (calls, what each heard
and when, rejections, hang-ups; the dial count), ``GET /_sim/requests`` (the REST requests
received), ``POST /_sim/unavailable {"unavailable": true}`` and
``POST /_sim/hangup {"callUuid"}`` (the callee puts the phone down).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import parse_qs, urlencode
from xml.etree import ElementTree

import attrs
import httpx
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

from voicecall.adapters.telephony.handset import HandsetLine, SimulatedHandset
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
    "OUTCOMES",
    "PlivoSimulator",
    "SentWebhook",
    "SimCall",
    "SimStream",
    "main",
    "sign_v3",
]

log = logging.getLogger(__name__)

OUTCOMES: Final = ("answer", "busy", "no-answer", "fail", "voicemail")

# (CallStatus, HangupCause, HangupCauseName, HangupCauseCode, HangupSource) per outcome
# (https://docs.plivo.com/docs/voice/troubleshooting/hangup-causes).
_UNANSWERED: Final = {
    "busy": ("busy", "USER_BUSY", "Busy Line", "3010", "Call recipient"),
    "no-answer": ("no-answer", "NO_ANSWER", "No Answer", "3030", "Call recipient"),
    "fail": ("failed", "UNALLOCATED_NUMBER", "Invalid Destination Address", "2000", "Carrier"),
}
_NORMAL: Final = ("NORMAL_CLEARING", "Normal Hangup", "4000")
_WEBHOOK_RETRIES: Final = (0.2, 0.5, 1.0)
# "Maximum transfers allowed for a single call is 70" (Transfer a call).
_MAX_TRANSFERS: Final = 70
# GetInput executionTimeout: "Allowed values: 5 to 60. Defaults to 15."
_DEFAULT_EXECUTION_TIMEOUT: Final = 15
# <Stream streamTimeout>: "Default: 86400 (24 hours)"; extraHeaders "Max length: 512 bytes".
_DEFAULT_STREAM_TIMEOUT: Final = 86400
_MAX_EXTRA_HEADERS: Final = 512
_EXTRA_HEADERS: Final = re.compile(r"[A-Za-z0-9]+=[A-Za-z0-9]+(?:,[A-Za-z0-9]+=[A-Za-z0-9]+)*")
_STREAM_CONTENT_TYPES: Final = frozenset(
    {"audio/x-l16;rate=8000", "audio/x-l16;rate=16000", "audio/x-mulaw;rate=8000"}
)


def sign_v3(auth_token: str, url: str, params: dict[str, str], nonce: str) -> str:
    """Plivo's V3 signature for a POST to ``url`` with form ``params``, as Plivo computes it."""
    base = construct_post_url(url, dict(params)).decode("utf-8")
    signature: bytes = get_signature_v3(auth_token.encode(), base, nonce.encode())
    return signature.decode("ascii")


@attrs.frozen
class SentWebhook:
    """One webhook exactly as sent, so a test can deliver it again byte for byte."""

    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@attrs.define
class SimCall:
    """The simulated network's view of one call (times are simulated clock time)."""

    call_uuid: str
    request_uuid: str | None
    direction: str
    from_number: str
    to_number: str
    answer_url: str
    hangup_url: str | None
    started_at: float
    ring_url: str | None = None
    status: str = "queued"  # queued | ringing | live | ended
    machine: bool = False
    end_status: str | None = None
    hangup_cause: str | None = None
    hangup_cause_name: str | None = None
    hangup_cause_code: str | None = None
    hangup_source: str | None = None
    played: list[HeardLine] = attrs.Factory(list)
    speaking: HeardLine | None = None
    replies_used: int = 0
    hangups: int = 0
    rejected: int = 0
    transfers: int = 0
    answered_at: float | None = None
    ended_at: float | None = None
    generation: int = 0
    wake: asyncio.Event = attrs.Factory(asyncio.Event)
    stream: SimStream | None = None

    @property
    def heard(self) -> list[str]:
        """Lines that stopped playing, in order; a cut one ends in ``—``."""
        return [line.render() for line in self.lines if line.ended_at is not None]

    @property
    def lines(self) -> list[HeardLine]:
        """What was played, by ``<Speak>`` and over the stream alike, in the order heard."""
        lines = [attrs.evolve(line) for line in self.played]
        if self.stream is not None:
            lines += [_as_heard(line) for line in self.stream.handset.heard]
        return sorted(lines, key=lambda line: line.started_at)

    def cut(self, at: float) -> None:
        """Whatever is playing stops here, heard in part."""
        if self.speaking is not None:
            self.speaking.ended_at = at
            self.speaking.whole = False
            self.speaking = None

    def interrupt(self, at: float) -> int:
        """Abandon the running document (cutting its speech); returns the new generation."""
        self.cut(at)
        self.generation += 1
        self.wake.set()
        self.wake = asyncio.Event()
        return self.generation

    def summary(self) -> dict[str, Any]:
        return {
            "callUuid": self.call_uuid,
            "requestUuid": self.request_uuid,
            "direction": self.direction,
            "from": self.from_number,
            "to": self.to_number,
            "status": self.status,
            "endStatus": self.end_status,
            "hangupCause": self.hangup_cause,
            "hangupSource": self.hangup_source,
            "heard": self.heard,
            "played": [
                {
                    "text": line.text,
                    "startedAt": line.started_at,
                    "endedAt": line.ended_at,
                    "whole": line.whole,
                }
                for line in self.lines
            ],
            "streamConnections": self.stream.connections if self.stream is not None else 0,
            "endedAt": self.ended_at,
            "repliesUsed": self.replies_used,
            "hangups": self.hangups,
            "rejected": self.rejected,
            "transfers": self.transfers,
        }


class _Stale(Exception):
    """The running document was replaced (transfer, hang-up); stop following it."""


def _as_heard(line: HandsetLine) -> HeardLine:
    return HeardLine(
        text=line.text, started_at=line.started_at, ended_at=line.ended_at, whole=line.whole
    )


class SimStream:
    """Plivo's end of one call's audio stream (a socket per ``<Stream>``) and the caller's
    handset, which outlives the sockets: a new ``<Stream>`` carries on the conversation."""

    def __init__(self, call_uuid: str, account_id: str, connect_ws: WsConnect) -> None:
        self.call_uuid = call_uuid
        self.account_id = account_id
        self.handset: SimulatedHandset  # set by the simulator right after
        self.connections = 0
        self.stream_id: str | None = None
        self.received: list[dict[str, Any]] = []
        """Every message our server sent, parsed (for tests)."""
        self._connect_ws = connect_ws
        self._socket: WsConnection | None = None
        self._extra_headers = ""
        self._bidirectional = False
        self._sequence = 0
        self._chunk = 0
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._socket is not None

    async def run(self, url: str, extra_headers: str, bidirectional: bool) -> str:
        """One ``<Stream>``: open, stream until the socket closes; why it ended."""
        try:
            socket = await self._connect_ws(url)
        except ConnectionError as err:
            log.info("plivo sim: the stream could not be opened: %s", err)
            return "failed"  # DroppedStream
        if self._closing:
            await socket.close()
            return "call ended"
        self._socket = socket
        self.connections += 1
        self.stream_id = str(uuid.uuid4())
        self._extra_headers = extra_headers
        self._bidirectional = bidirectional
        self._sequence = 0
        self._chunk = 0
        start = {
            "callId": self.call_uuid,
            "streamId": self.stream_id,
            "accountId": self.account_id,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        }
        await self._send({"event": "start", "start": start})
        self.handset.start()
        try:
            while True:
                message = await socket.recv()
                if message is None:
                    break
                await self._from_server(message)
        finally:
            if self._socket is socket:
                self._socket = None
        return "disconnected"

    async def _send(self, message: dict[str, Any]) -> None:
        socket = self._socket
        if socket is None:
            return
        self._sequence += 1
        message = {"sequenceNumber": self._sequence} | message
        if self._extra_headers:
            message["extra_headers"] = self._extra_headers
        await socket.send(json.dumps(message))

    async def _from_server(self, raw: str) -> None:
        try:
            data = json.loads(raw)
            event = data["event"]
        except (ValueError, KeyError, TypeError):
            log.warning("plivo sim: a malformed stream message ignored")
            return
        self.received.append(data)
        if not self._bidirectional:
            return  # a one-way stream takes nothing from the server
        try:
            if event == "playAudio":
                media = data["media"]
                if media.get("contentType") != "audio/x-mulaw" or int(media["sampleRate"]) != 8000:
                    log.warning("plivo sim: playAudio in an unsupported format ignored")
                    return
                self.handset.receive_audio(base64.b64decode(media["payload"], validate=True))
            elif event == "checkpoint":
                self.handset.receive_mark(str(data["name"]))
            elif event == "clearAudio":
                await self.handset.receive_clear()
                await self._send({"event": "clearedAudio", "streamId": self.stream_id})
        except (ValueError, KeyError, TypeError):
            log.warning("plivo sim: a malformed %s message ignored", event)

    async def send_audio(self, frame: bytes) -> None:
        if self._socket is None:
            return
        self._chunk += 1
        media = {
            "track": "inbound",
            "timestamp": str(int(self.handset.clock.now() * 1000)),
            "chunk": self._chunk,
            "payload": base64.b64encode(frame).decode("ascii"),
        }
        await self._send({"event": "media", "streamId": self.stream_id, "media": media})

    async def echo_mark(self, name: str) -> None:
        await self._send({"event": "playedStream", "streamId": self.stream_id, "name": name})

    async def drop(self) -> None:
        """The socket is gone (network loss, streamTimeout); the call itself goes on."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()

    async def close(self) -> None:
        """The call is over: the handset stops and the socket closes."""
        self._closing = True
        await self.handset.stop()
        await self.drop()


class PlivoSimulator:
    """An ASGI app that behaves like Plivo's Voice API and its callers.

    Args:
        auth_id: the account id expected in paths and basic auth.
        auth_token: the token for basic auth and for signing webhooks.
        webhook: the client webhooks are sent with (in-process ASGI or real loopback HTTP).
        webhook_url: our public webhook URL; the inbound application's Answer and Hangup URL.
        outcome: what the callee does with an outbound call (``OUTCOMES``).
        replies: what the callee says, one line per ``<GetInput>`` (``""``: stays silent);
            then it hangs up.
        clock: simulated time; every delay below is in its seconds (default real time).
        answer_delay_s: ringing time before the outcome.
        reply_delay_s: how long after the prompt the callee starts answering a ``<GetInput>``.
        chars_per_sec: how fast ``<Speak>`` talks.
        callback_delay_s: the most a ring or hang-up callback lags behind (random up to it).
        voicemail_s: how long a voicemail machine records before it hangs up.
        max_wait_s: caps each ``<Wait>`` (None: wait as long as the XML says).
        connect_ws: how ``<Stream>`` opens its WebSocket (the network by default; tests
            connect in-process).
        barge_in_after_s: on a stream, the caller talks over a bot line that has played this
            long (None: never).
    """

    def __init__(
        self,
        *,
        auth_id: str,
        auth_token: str,
        webhook: httpx.AsyncClient,
        webhook_url: str,
        outcome: str = "answer",
        replies: Sequence[str] = ("Hello.", "Yes.", "Goodbye."),
        clock: ScaledClock | None = None,
        answer_delay_s: float = 0.05,
        reply_delay_s: float = 0.2,
        chars_per_sec: float = DEFAULT_CHARS_PER_SEC,
        callback_delay_s: float = 0.05,
        voicemail_s: float = 20.0,
        max_wait_s: float | None = None,
        connect_ws: WsConnect | None = None,
        barge_in_after_s: float | None = None,
    ) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        self.auth_id = auth_id
        self.auth_token = auth_token
        self.webhook = webhook
        self.webhook_url = webhook_url
        self.outcome = outcome
        self.replies = tuple(replies)
        self.clock = clock or ScaledClock(1.0)
        self.answer_delay_s = answer_delay_s
        self.reply_delay_s = reply_delay_s
        self.chars_per_sec = chars_per_sec
        self.callback_delay_s = callback_delay_s
        self.voicemail_s = voicemail_s
        self.max_wait_s = max_wait_s
        self.connect_ws: WsConnect = connect_ws or connect_websocket
        self.barge_in_after_s = barge_in_after_s
        self.unavailable = False
        self.calls: dict[str, SimCall] = {}
        self.requests: list[dict[str, Any]] = []
        self.sent: list[SentWebhook] = []
        self.dials = 0
        self._background = Background("plivo sim")
        self._prefix = f"/v1/Account/{auth_id}/"
        self._random = random.Random(7)

    # ------------------------------------------------------------------ queries

    def find(self, call_id: str | None) -> SimCall | None:
        """A call by its CallUUID or its request_uuid."""
        if not call_id:
            return None
        call = self.calls.get(call_id)
        if call is not None:
            return call
        return next((c for c in self.calls.values() if c.request_uuid == call_id), None)

    def heard(self, call_id: str | None) -> list[str]:
        """What the callee heard, in order; a line cut off ends in ``—``."""
        call = self.find(call_id)
        return call.heard if call else []

    def played(self, call_id: str | None) -> list[HeardLine]:
        """Each line played to the callee (one still playing has no end yet)."""
        call = self.find(call_id)
        return call.lines if call else []

    def stream(self, call_id: str | None) -> SimStream | None:
        """The call's audio stream (its handset and sockets), once a ``<Stream>`` ran."""
        call = self.find(call_id)
        return call.stream if call else None

    async def drop_stream(self, call_id: str | None) -> None:
        """The network loses the call's stream socket; the call goes on."""
        stream = self.stream(call_id)
        if stream is not None:
            await stream.drop()

    def ended_at(self, call_id: str | None) -> float | None:
        """When the line went dead, in simulated time."""
        call = self.find(call_id)
        return call.ended_at if call else None

    async def caller_hangs_up(self, call_id: str | None) -> None:
        """The person on the phone puts it down now, whatever is playing."""
        call = self.find(call_id)
        if call is not None and call.status in ("ringing", "live"):
            self._end(call, "completed", *_NORMAL, _person(call))

    @property
    def last_webhook(self) -> SentWebhook | None:
        return self.sent[-1] if self.sent else None

    async def redeliver(self, sent: SentWebhook) -> httpx.Response:
        """Send a webhook again exactly as before (a carrier retry); its answer is not acted on."""
        return await self.webhook.post(sent.url, content=sent.body, headers=list(sent.headers))

    async def ring_inbound(self, from_number: str | None, to_number: str | None) -> SimCall:
        """A caller rings our number; the application's Answer URL is fetched in the background."""
        call = SimCall(
            call_uuid=str(uuid.uuid4()),
            request_uuid=None,
            direction="inbound",
            from_number=_plivo_number(from_number),
            to_number=_plivo_number(to_number),
            answer_url=self.webhook_url,
            hangup_url=self.webhook_url,
            started_at=self.clock.now(),
            status="ringing",
        )
        self.calls[call.call_uuid] = call
        self._background.spawn(self._answer(call, call.generation, "ringing"))
        return call

    async def settle(self, within: float = 5.0) -> None:
        """Wait until no simulated work is in flight (for deterministic tests)."""
        deadline = time.monotonic() + within
        while self._background.tasks and time.monotonic() < deadline:
            await asyncio.wait(
                set(self._background.tasks), timeout=max(deadline - time.monotonic(), 0)
            )

    async def aclose(self) -> None:
        for call in self.calls.values():
            if call.stream is not None:
                await call.stream.close()
        await self._background.aclose()

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(receive, send, self.aclose)
            return
        if scope["type"] != "http":
            return
        body, headers = await read_request(scope, receive)
        status, payload = await self._route(
            scope["method"].upper(),
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
        )
        await send_json(send, status, payload)

    async def _route(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if path.startswith("/_sim/"):
            return await self._control(method, path, body)
        params = {key: values[0] for key, values in parse_qs(query).items()}
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        self.requests.append(
            {"method": method, "path": path, "query": params, "json": data, "at": time.time()}
        )
        if self.unavailable:
            return 503, {"error": "service unavailable (simulated outage)"}
        if not self._authorised(headers.get("authorization", "")):
            return 401, {"error": "authentication failed"}
        if not path.startswith(self._prefix):
            return 404, {"error": "not found"}
        if data is None or not isinstance(data, dict):
            return 400, {"error": "the body must be a JSON object"}
        parts = [part for part in path[len(self._prefix) :].split("/") if part]
        api_id = str(uuid.uuid4())
        if not parts and method == "GET":
            # Retrieve account details, read-only (GET /v1/Account/{auth_id}/): what
            # `voicecall doctor` asks to learn that the credentials are accepted.
            return 200, {
                "api_id": api_id,
                "account_type": "standard",
                "auth_id": self._prefix.split("/")[3],
                "name": "Simulated account",
                "resource_uri": self._prefix,
            }
        if parts == ["Call"] and method == "POST":
            return self._make_call(data, api_id)
        if len(parts) == 2 and parts[0] == "Call":
            call_uuid = parts[1]
            if method == "POST":
                return self._transfer(call_uuid, data, api_id)
            if method == "DELETE":
                return self._hangup(call_uuid)
            if method == "GET":
                return self._retrieve(call_uuid, params.get("status"), api_id)
        if len(parts) == 2 and parts[0] == "Request" and method == "DELETE":
            return self._cancel_request(parts[1])
        return 404, {"api_id": api_id, "error": "not found"}

    def _authorised(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(token).decode()
        except ValueError:
            return False
        return decoded == f"{self.auth_id}:{self.auth_token}"

    # ------------------------------------------------------------------ REST handlers

    def _make_call(self, data: dict[str, Any], api_id: str) -> tuple[int, Any]:
        missing = [key for key in ("from", "to", "answer_url") if not data.get(key)]
        if missing:
            return 400, {"api_id": api_id, "error": f"missing: {', '.join(missing)}"}
        if not re.fullmatch(r"\+?[1-9]\d{5,14}", str(data["to"])):
            return 400, {"api_id": api_id, "error": "invalid destination number"}
        self.dials += 1
        call = SimCall(
            call_uuid=str(uuid.uuid4()),
            request_uuid=str(uuid.uuid4()),
            direction="outbound",
            from_number=_plivo_number(str(data["from"])),
            to_number=_plivo_number(str(data["to"])),
            answer_url=str(data["answer_url"]),
            hangup_url=data.get("hangup_url") or None,
            ring_url=data.get("ring_url") or None,
            started_at=self.clock.now(),
        )
        self.calls[call.call_uuid] = call
        self._background.spawn(self._place(call))
        return 201, {"api_id": api_id, "message": "call fired", "request_uuid": call.request_uuid}

    def _transfer(self, call_uuid: str, data: dict[str, Any], api_id: str) -> tuple[int, Any]:
        call = self.calls.get(call_uuid)
        if call is None or call.status != "live":
            return 404, {"api_id": api_id, "error": "call not found"}
        if data.get("legs") not in ("aleg", "both") or not data.get("aleg_url"):
            return 400, {"api_id": api_id, "error": "legs=aleg with aleg_url is required"}
        call.transfers += 1
        if call.transfers > _MAX_TRANSFERS:
            # "Subsequent transfers will lead to the call hang-up with the error 'Loop
            # detected'" (Transfer a call).
            self._end(call, "completed", "", "Loop Detected", "", "Plivo")
            return 202, {"api_id": api_id, "message": "call transferred"}
        # The live call fetches and runs the new XML: what it was running is abandoned now,
        # a <Speak> cut where the callee stopped hearing it.
        generation = call.interrupt(self.clock.now())
        self._background.spawn(
            self._fetch_and_run(call, generation, str(data["aleg_url"]), "Transfer")
        )
        return 202, {"api_id": api_id, "message": "call transferred"}

    def _hangup(self, call_uuid: str) -> tuple[int, Any]:
        call = self.calls.get(call_uuid)
        if call is None or call.status not in ("ringing", "live"):
            return 404, {"error": "call not found"}
        call.hangups += 1
        if call.status == "live":
            self._end(call, "completed", *_NORMAL, "API Request")
        else:
            self._end(call, "cancel", "ORIGINATOR_CANCEL", "Canceled", "1000", "API Request")
        return 204, None

    def _cancel_request(self, request_uuid: str) -> tuple[int, Any]:
        call = next((c for c in self.calls.values() if c.request_uuid == request_uuid), None)
        if call is None or call.status != "queued":
            return 404, {"error": "request not found"}
        call.hangups += 1
        self._end(call, "cancel", "ORIGINATOR_CANCEL", "Canceled", "1000", "API Request")
        return 204, None

    def _retrieve(self, call_uuid: str, status: str | None, api_id: str) -> tuple[int, Any]:
        if status == "queued":
            call = next((c for c in self.calls.values() if c.request_uuid == call_uuid), None)
            if call is None or call.status != "queued":
                return 404, {"api_id": api_id, "error": "not found"}
            return 200, {"api_id": api_id, "call_status": "queued", "request_uuid": call_uuid}
        call = self.calls.get(call_uuid)
        if status == "live":
            if call is None or call.status not in ("ringing", "live"):
                return 404, {"api_id": api_id, "error": "not found"}
            return 200, {
                "api_id": api_id,
                "call_uuid": call.call_uuid,
                "call_status": "in-progress" if call.status == "live" else "ringing",
                "direction": call.direction,
                "from": call.from_number,
                "to": call.to_number,
                "request_uuid": call.request_uuid,
                "session_start": _stamp(call.started_at),
            }
        if call is None or call.status != "ended":
            # Plivo writes the call detail record once the call is over.
            return 404, {"api_id": api_id, "error": "not found"}
        ended = call.ended_at or self.clock.now()
        return 200, {
            "api_id": api_id,
            "call_uuid": call.call_uuid,
            "call_direction": call.direction,
            "from_number": call.from_number,
            "to_number": call.to_number,
            "initiation_time": _stamp(call.started_at),
            "answer_time": _stamp(call.answered_at) if call.answered_at else None,
            "end_time": _stamp(ended),
            "call_duration": int(ended - (call.answered_at or ended)),
            "hangup_cause_name": call.hangup_cause_name,
            "hangup_cause_code": int(call.hangup_cause_code or 0),
            "hangup_source": call.hangup_source,
        }

    async def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "expected JSON"}
        if path == "/_sim/calls" and method == "GET":
            return 200, {
                "dials": self.dials,
                "calls": [call.summary() for call in self.calls.values()],
                "requests": len(self.requests),
            }
        if path == "/_sim/requests" and method == "GET":
            return 200, {"requests": self.requests[-500:]}
        if path == "/_sim/inbound" and method == "POST":
            call = await self.ring_inbound(data.get("from"), data.get("to") or "15550100000")
            return 202, {"callUuid": call.call_uuid}
        if path == "/_sim/unavailable" and method == "POST":
            self.unavailable = bool(data.get("unavailable", True))
            return 200, {"unavailable": self.unavailable}
        if path == "/_sim/hangup" and method == "POST":
            found = self.find(str(data.get("callUuid") or ""))
            if found is None:
                return 404, {"error": "no such call"}
            await self.caller_hangs_up(found.call_uuid)
            return 200, {"callUuid": found.call_uuid, "status": found.status}
        return 404, {"error": "not found"}

    # ------------------------------------------------------------------ the callee

    async def _place(self, call: SimCall) -> None:
        await asyncio.sleep(0)  # the Make Call answer goes out first, as it would
        if call.status != "queued":
            return
        call.status = "ringing"
        if call.ring_url:
            self._callback(call, call.ring_url, {"CallStatus": "ringing"})
        await self.clock.sleep(self.answer_delay_s)
        if call.status != "ringing":
            return  # cancelled meanwhile
        if self.outcome in ("answer", "voicemail"):
            call.status = "live"
            call.answered_at = self.clock.now()
            if self.outcome == "voicemail":
                call.machine = True
                self._background.spawn(self._machine_hangs_up(call))
            await self._answer(call, call.generation, "in-progress")
            return
        status, cause, name, code, source = _UNANSWERED[self.outcome]
        self._end(call, status, cause, name, code, source)

    async def _machine_hangs_up(self, call: SimCall) -> None:
        await self.clock.sleep(self.voicemail_s)
        if call.status == "live":
            self._end(call, "completed", *_NORMAL, "Call recipient")

    async def _answer(self, call: SimCall, generation: int, call_status: str) -> None:
        doc = await self._fetch(call, generation, call.answer_url, "Answer", call_status)
        if doc is not None:
            await self._run(call, generation, doc)

    async def _fetch_and_run(self, call: SimCall, generation: int, url: str, what: str) -> None:
        doc = await self._fetch(call, generation, url, what)
        if doc is not None:
            await self._run(call, generation, doc)

    async def _fetch(
        self,
        call: SimCall,
        generation: int,
        url: str,
        what: str,
        call_status: str = "in-progress",
        extra: dict[str, str] | None = None,
    ) -> bytes | None:
        """POST for the next document; None (and the call ended) when there is none."""
        response = await self._post(call, url, {"CallStatus": call_status} | (extra or {}))
        if call.generation != generation or call.status == "ended":
            return None
        if response is None or not response.is_success:
            # Plivo's 7011..7014: the URL could not be reached; the call is dropped.
            self._end(call, "completed", "", f"Error Reaching {what} URL", "7011", "Error")
            return None
        return response.content

    async def _run(self, call: SimCall, generation: int, doc: bytes | None) -> None:
        """Follow Plivo XML until the call ends or the document is replaced."""
        try:
            while doc is not None:
                doc = await self._run_document(call, generation, doc)
        except _Stale:
            return
        except Exception:
            log.exception("plivo sim: following XML failed")
            self._end(call, "completed", "", "Internal Error", "5000", "Plivo")

    async def _run_document(self, call: SimCall, generation: int, doc: bytes) -> bytes | None:
        self._check(call, generation)
        try:
            root = ElementTree.fromstring(doc)
        except ElementTree.ParseError:
            root = None
        if root is None or root.tag != "Response":
            self._end(call, "completed", "", "Invalid Answer XML", "8011", "Error")
            return None
        first = root[0].tag if len(root) else None
        if call.direction == "inbound" and call.status == "ringing" and first != "Hangup":
            # Any document that does something answers an inbound call.
            call.status = "live"
            call.answered_at = self.clock.now()
        for element in root:
            self._check(call, generation)
            tag = element.tag
            if tag == "Speak":
                await self._speak(call, generation, element)
            elif tag == "Wait":
                await self._sleep(call, generation, _int(element.get("length"), 1))
            elif tag == "Redirect":
                url = (element.text or "").strip()
                return await self._fetch(call, generation, url, "Redirect")
            elif tag == "Hangup":
                if element.get("reason") == "rejected":
                    call.rejected += 1
                    self._end(call, "completed", "CALL_REJECTED", "Rejected", "3020", "Answer XML")
                else:
                    self._end(call, "completed", *_NORMAL, "Answer XML")
                return None
            elif tag == "GetInput":
                outcome = await self._get_input(call, generation, element)
                if outcome is not None:
                    return outcome
            elif tag == "Stream":
                if not await self._stream(call, generation, element):
                    self._end(call, "completed", "", "Invalid Answer XML", "8011", "Error")
                    return None
            else:
                log.warning("plivo sim: ignoring unsupported element <%s>", tag)
        self._end(call, "completed", "NORMAL_CLEARING", "End Of XML Instructions", "4010", "Plivo")
        return None

    async def _speak(self, call: SimCall, generation: int, element: ElementTree.Element) -> None:
        """Say the text, taking the time it takes; a transfer or hang-up cuts it."""
        text = " ".join((element.text or "").split())
        line = HeardLine(text=text, started_at=self.clock.now())
        call.played.append(line)
        call.speaking = line
        await self._sleep(call, generation, speech_seconds(text, self.chars_per_sec), cap=False)
        line.ended_at = self.clock.now()
        line.whole = True
        call.speaking = None

    async def _stream(self, call: SimCall, generation: int, element: ElementTree.Element) -> bool:
        """Run a ``<Stream>``; False when the element is invalid."""
        url = (element.text or "").strip()
        extra = element.get("extraHeaders", "")
        content_type = element.get("contentType", "audio/x-l16;rate=8000")
        bidirectional = element.get("bidirectional", "false") == "true"
        keep_alive = bidirectional and element.get("keepCallAlive", "false") == "true"
        timeout = _int(element.get("streamTimeout"), _DEFAULT_STREAM_TIMEOUT)
        if not url.startswith(("ws://", "wss://")) or content_type not in _STREAM_CONTENT_TYPES:
            log.warning("plivo sim: <Stream> with a bad URL or contentType %r", content_type)
            return False
        if extra and (len(extra) > _MAX_EXTRA_HEADERS or not _EXTRA_HEADERS.fullmatch(extra)):
            log.warning("plivo sim: <Stream extraHeaders> breaks the documented rules")
            return False
        if content_type != "audio/x-mulaw;rate=8000":
            log.warning("plivo sim: only audio/x-mulaw;rate=8000 streams are simulated")
            return False
        stream = call.stream or self._new_stream(call)
        runner = self._background.spawn(stream.run(url, extra, bidirectional))
        if not keep_alive:
            return True  # the XML goes on while the stream runs
        # "Subsequent XML elements execute only after the stream disconnects."
        woken = asyncio.ensure_future(call.wake.wait())
        try:
            await asyncio.wait(
                {runner, woken},
                timeout=self.clock.wall(timeout),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            woken.cancel()
        if not runner.done():
            await stream.drop()  # streamTimeout, or the document was abandoned
        self._check(call, generation)
        return True

    def _new_stream(self, call: SimCall) -> SimStream:
        stream = SimStream(call.call_uuid, self.auth_id, self.connect_ws)

        async def hang_up() -> None:
            self._end(call, "completed", *_NORMAL, _person(call))

        stream.handset = SimulatedHandset(
            self.clock,
            send_audio=stream.send_audio,
            echo_mark=stream.echo_mark,
            hang_up=hang_up,
            replies=self.replies[call.replies_used :],
            reply_delay_s=self.reply_delay_s,
            barge_in_after_s=self.barge_in_after_s,
            chars_per_sec=self.chars_per_sec,
        )
        call.stream = stream
        return stream

    async def _get_input(
        self, call: SimCall, generation: int, element: ElementTree.Element
    ) -> bytes | None:
        for child in element:
            if child.tag == "Speak":
                await self._speak(call, generation, child)
        timeout = _int(element.get("executionTimeout"), _DEFAULT_EXECUTION_TIMEOUT)
        listens_for_speech = "speech" in element.get("inputType", "dtmf").split()
        reply = self._next_reply(call) if listens_for_speech else ""
        if reply is None:
            # Nothing left to say: the person hangs up.
            await self._sleep(call, generation, self.reply_delay_s)
            self._end(call, "completed", *_NORMAL, _person(call))
            raise _Stale
        if not reply:
            # No input within executionTimeout (counted after the prompt): the next element.
            await self._sleep(call, generation, timeout)
            return None
        await self._sleep(call, generation, self.reply_delay_s)
        action = element.get("action")
        if not action:
            return None
        fields = {
            "InputType": "speech",
            "Speech": reply,
            "Digits": "",
            "SpeechConfidenceScore": "0.93",
            "BilledAmount": "0.00500",
        }
        doc = await self._fetch(call, generation, action, "Action", extra=fields)
        if doc is None:
            raise _Stale
        if element.get("redirect", "true") == "false":
            return None  # the answer is ignored and the next element runs
        return doc

    def _next_reply(self, call: SimCall) -> str | None:
        if call.machine:
            return ""  # a voicemail machine records; it never answers
        if call.replies_used >= len(self.replies):
            return None
        reply = self.replies[call.replies_used]
        call.replies_used += 1
        return reply

    async def _sleep(
        self, call: SimCall, generation: int, seconds: float, *, cap: bool = True
    ) -> None:
        if cap and self.max_wait_s is not None:
            seconds = min(seconds, self.max_wait_s)
        await self.clock.wait(call.wake, max(seconds, 0.0))
        self._check(call, generation)

    @staticmethod
    def _check(call: SimCall, generation: int) -> None:
        if call.generation != generation or call.status == "ended":
            raise _Stale

    def _end(
        self, call: SimCall, status: str, cause: str, name: str, code: str, source: str
    ) -> None:
        if call.status == "ended":
            return
        now = self.clock.now()
        call.status = "ended"
        call.end_status = status
        call.hangup_cause = cause
        call.hangup_cause_name = name
        call.hangup_cause_code = code
        call.hangup_source = source
        call.ended_at = now
        call.interrupt(now)
        if call.stream is not None:
            # The socket closes with the call.
            self._background.spawn(call.stream.close())
        if call.hangup_url:
            duration = int(now - call.answered_at) if call.answered_at else 0
            fields = {
                "CallStatus": status,
                "HangupCause": cause,
                "HangupCauseName": name,
                "HangupCauseCode": code,
                "HangupSource": source,
                "Duration": str(duration),
                "BillDuration": str(duration),
            }
            self._callback(call, call.hangup_url, fields)

    def _callback(self, call: SimCall, url: str, fields: dict[str, str]) -> None:
        """A status callback: sent on its own, a little later, so it may follow the next fetch."""
        delay = self._random.uniform(0, self.callback_delay_s)

        async def send() -> None:
            await self.clock.sleep(delay)
            await self._post(call, url, fields)

        self._background.spawn(send())

    # ------------------------------------------------------------------ webhooks

    async def _post(self, call: SimCall, url: str, fields: dict[str, str]) -> httpx.Response | None:
        """Sign and POST one webhook, retrying on connection trouble and 5xx like Plivo."""
        params = {
            "CallUUID": call.call_uuid,
            "From": call.from_number,
            "To": call.to_number,
            "Direction": call.direction,
        }
        if call.direction == "outbound":
            params["ALegUUID"] = call.call_uuid
            params["ALegRequestUUID"] = call.request_uuid or ""
            params["RequestUUID"] = call.request_uuid or ""
        params |= fields
        body = urlencode(params).encode()
        for attempt, backoff in enumerate((*_WEBHOOK_RETRIES, None)):
            nonce = str(secrets.randbelow(10**20)).zfill(20)
            headers = (
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-plivo-signature-v3", sign_v3(self.auth_token, url, params, nonce)),
                ("x-plivo-signature-v3-nonce", nonce),
                ("user-agent", "PlivoSim/1.0"),
            )
            self.sent.append(SentWebhook(url=url, headers=headers, body=body))
            if len(self.sent) > 500:
                del self.sent[:100]
            try:
                response = await self.webhook.post(url, content=body, headers=list(headers))
            except httpx.HTTPError as err:
                log.info("plivo sim: webhook %s failed (%s), attempt %d", url, err, attempt + 1)
                response = None
            if response is not None and response.status_code < 500:
                return response
            if backoff is None:
                return response
            await self.clock.sleep(backoff)
        return None


def _person(call: SimCall) -> str:
    # HangupSource for the person on the phone (hangup-causes page).
    return "Call recipient" if call.direction == "outbound" else "Caller"


def _plivo_number(number: str | None) -> str:
    # Plivo writes E.164 numbers without the '+' in webhooks.
    if not number:
        return ""
    return number[1:] if number.startswith("+") else number


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def _stamp(at: float | None) -> str | None:
    if at is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


# ------------------------------------------------------------------ standalone runner


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voicecall.testing.plivo_sim", description="A simulated Plivo Voice API."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-url", required=True, help="our publicUrl")
    parser.add_argument("--auth-id", default="MASIMULATEDPLIVO0001")
    parser.add_argument("--auth-token", default="simulated-plivo-token")
    parser.add_argument("--replies", nargs="*", default=["Hello.", "Yes.", "Goodbye."])
    parser.add_argument("--outcome", choices=OUTCOMES, default="answer")
    parser.add_argument("--answer-delay-ms", type=int, default=50)
    parser.add_argument("--reply-delay-ms", type=int, default=200)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument("--chars-per-sec", type=float, default=DEFAULT_CHARS_PER_SEC)
    parser.add_argument(
        "--barge-in-after-s",
        type=float,
        default=None,
        help="on a media stream, the caller talks over a bot line that has played this long",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        sim = PlivoSimulator(
            auth_id=args.auth_id,
            auth_token=args.auth_token,
            webhook=client,
            webhook_url=args.webhook_url,
            outcome=args.outcome,
            replies=args.replies,
            clock=ScaledClock(args.speed),
            answer_delay_s=args.answer_delay_ms / 1000,
            reply_delay_s=args.reply_delay_ms / 1000,
            chars_per_sec=args.chars_per_sec,
            barge_in_after_s=args.barge_in_after_s,
        )
        config = uvicorn.Config(
            sim, host="127.0.0.1", port=args.port, lifespan="off", log_level="warning"
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            await sim.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the simulator on 127.0.0.1 until interrupted."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="plivo-sim %(levelname)s %(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
