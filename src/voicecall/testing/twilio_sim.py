"""A simulated Twilio Programmable Voice, for contract tests, end-to-end tests and demos.

It speaks Twilio's wire format on both sides, so the adapter under test cannot tell it from the
real thing in the ways that matter:

* REST at Twilio's paths, HTTP basic auth ``AccountSid:AuthToken``, form-encoded bodies, JSON
  answers and Twilio's error shape (``{"code", "message", "more_info", "status"}``):
  ``POST /2010-04-01/Accounts/{sid}/Calls.json`` (create), ``POST …/Calls/{CallSid}.json``
  (update: ``Twiml``/``Url`` or ``Status=completed|canceled``), ``GET …/Calls/{CallSid}.json``.
* webhooks POSTed form-encoded and signed with ``X-Twilio-Signature`` computed by the Twilio
  SDK's ``RequestValidator.compute_signature`` over the exact URL requested;
* TwiML followed verb by verb, in simulated time (a ``ScaledClock``), by the rules below. Each
  is written from Twilio's public documentation, cited where it is modelled:

  - ``<Say>`` takes time: about 15 characters a second (``chars_per_sec``); the callee's
    record of each line (``played``) has its start and end and whether it was heard whole.
  - Updating a live call (REST ``Twiml``/``Url``) abandons the TwiML being run at once: a Say
    is cut mid-sentence, a Pause or Gather stops.
  - ``<Gather>`` says its nested ``<Say>``s, then the callee answers (after
    ``reply_delay_s``, speaking for as long as its words take). With an ``action`` the result
    is POSTed there and nothing after the Gather runs; on silence (a scripted ``""`` reply)
    it POSTs only with ``actionOnEmptyResult="true"``, and otherwise falls through to the next
    verb. Without an ``action`` it POSTs to the current document's URL.
  - ``<Redirect>`` fetches the next document; ``<Pause length>`` waits; ``<Hangup>`` /
    ``<Reject>`` end the call; a document that runs out ends the call ``completed``; a fetch
    that fails ends it too (Twilio's "application error").
  - Status callbacks are sent apart from the TwiML fetches, each after a small random delay
    (``callback_delay_s``), so they may arrive after the next fetch. ``completed`` does not
    say who hung up.
  - ``<Connect><Stream url>`` opens a bidirectional media stream
    (https://www.twilio.com/docs/voice/twiml/stream) through ``connect_ws``: the URL's query
    string is dropped ("the url does not support query string parameters"), ``<Parameter>``
    nouns arrive as ``start.customParameters``, and the messages are Twilio's
    (https://www.twilio.com/docs/voice/media-streams/websocket-messages): ``connected``, then
    ``start``, then the caller's audio as ``media`` every 20 ms, ``mark`` when a mark of the
    server's is reached, and ``stop`` when the call ends or an update replaces the TwiML. A
    ``SimulatedHandset`` is the caller on it: it plays the server's ``media`` at 8 kHz,
    echoes each ``mark`` once the audio before it has played, and on ``clear`` drops what it
    has not played and sends back the dropped marks too (a clear "empties all buffered audio
    and causes any mark messages to be sent back"). It talks back with ``replies`` and talks
    over a line that has played ``barge_in_after_s``. The ``<Connect>`` holds the call until
    the WebSocket ends; then the verbs after it run ("unreachable unless the Stream is ended
    by your WebSocket server"; https://www.twilio.com/docs/voice/twiml/connect: without an
    ``action`` "Twilio will move on to the next TwiML verb"). ``drop_stream`` loses the socket
    while the call lives, which ends the ``<Connect>`` the same way.

The callee hangs up when it has no scripted line left for a Gather (or, on a stream, when the
bot has been quiet and it has nothing left to say), or when told to (``caller_hangs_up``).

Run it on its own with ``python -m voicecall.testing.twilio_sim --port P --webhook-url URL``
(``--speed S`` runs simulated time S times faster); ``/_sim/…`` then offers control endpoints
(``POST /_sim/inbound``, ``GET /_sim/calls``, ``POST /_sim/unavailable``,
``POST /_sim/hangup`` and ``POST /_sim/drop-stream`` with ``{"callSid": …}``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import email.utils
import json
import logging
import random
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import httpx
from twilio.request_validator import RequestValidator

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

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "SimCall", "TwilioSimulator", "main"]

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_SID: Final = "AC" + "0" * 30 + "01"
DEFAULT_AUTH_TOKEN: Final = "sim-auth-token"

_API: Final = "/2010-04-01/Accounts/"
_CREATE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls\.json$")
_ONE_CALL = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/]+)\.json$")
# Fetch an Account, read-only (https://www.twilio.com/docs/iam/api/account): what
# `voicecall doctor` asks to learn that the credentials are accepted.
_ACCOUNT = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)\.json$")
_TERMINAL: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
_OUTCOME_STATUS: Final = {"busy": "busy", "no-answer": "no-answer", "fail": "failed"}
# https://www.twilio.com/docs/voice/twiml/gather#timeout: 5 s of silence by default.
_GATHER_TIMEOUT_S: Final = 5.0


@attrs.define
class SimCall:
    """One call as the simulated Twilio sees it."""

    sid: str
    direction: str  # "outbound-api" | "inbound"
    from_number: str
    to_number: str
    status: str = "queued"
    url: str | None = None
    twiml: str | None = None
    status_callback: str | None = None
    status_events: tuple[str, ...] = ("completed",)
    played: list[HeardLine] = attrs.Factory(list)
    """Every line said to the callee, in order, with simulated start and end times."""
    current: HeardLine | None = None
    ended_at: float | None = None
    replies_used: int = 0
    rejected: int = 0
    hangups: int = 0
    updates: int = 0
    status_reads: int = 0
    generation: int = 0
    sequence: int = 0
    wake: asyncio.Event = attrs.Factory(asyncio.Event)
    callbacks: asyncio.Queue[dict[str, str]] = attrs.Factory(asyncio.Queue)
    stream: SimStream | None = None
    """The call's media stream (its handset outlives each socket), once one was connected."""
    callbacks_done: bool = False
    """The terminal status callback was answered (or tried): Twilio sends nothing more."""

    @property
    def ended(self) -> bool:
        return self.status in _TERMINAL

    @property
    def heard(self) -> list[str]:
        """What the callee heard (lines over, whole or cut); a cut line shows as ``text—``."""
        if self.stream is not None:
            return [line.render() for line in self.stream.handset.heard]
        return [line.render() for line in self.played if line.ended_at is not None]

    def summary(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "direction": self.direction,
            "from": self.from_number,
            "to": self.to_number,
            "status": self.status,
            "heard": self.heard,
            "played": [attrs.asdict(line) for line in self.played],
            "endedAt": self.ended_at,
            "repliesUsed": self.replies_used,
            "rejected": self.rejected,
            "hangups": self.hangups,
            "updates": self.updates,
            "statusReads": self.status_reads,
            "streamConnections": self.stream.connections if self.stream is not None else 0,
            "callbacksDone": self.callbacks_done,
        }


class _Stale(Exception):
    """The call was updated or ended while this program ran; it stops quietly."""


class SimStream:
    """Twilio's end of one call's media stream: the socket of the running ``<Connect>`` (one
    at a time) and the caller's handset, which carries on across sockets."""

    def __init__(self, account_sid: str, call_sid: str, clock: ScaledClock) -> None:
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.clock = clock
        self.handset: SimulatedHandset  # set by the simulator right after
        self.connections = 0
        self.stream_sid: str | None = None
        self.parameters: dict[str, str] = {}
        self.urls: list[str] = []
        self.ignored = 0
        self._socket: WsConnection | None = None
        self._sequence = 0
        self._chunk = 0
        self._opened_at = 0.0
        self._closed = False

    @property
    def socket(self) -> WsConnection | None:
        return self._socket

    async def open(self, socket: WsConnection, url: str, parameters: dict[str, str]) -> None:
        """A new stream on ``socket``: ``connected``, then ``start``, then the caller talks."""
        self._socket = socket
        self.connections += 1
        self.urls.append(url)
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.parameters = dict(parameters)
        self._sequence = 0
        self._chunk = 0
        self._opened_at = self.clock.monotonic()
        await socket.send(
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        )
        await self._send(
            {
                "event": "start",
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": self.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
        self.handset.start()

    async def read(self, socket: WsConnection) -> None:
        """What the server sends, until the socket closes (the server's doing or a loss)."""
        while True:
            message = await socket.recv()
            if message is None:
                return
            await self._from_server(message)

    async def _from_server(self, message: str) -> None:
        try:
            data = json.loads(message)
            event = data["event"]
            if data["streamSid"] != self.stream_sid:
                raise ValueError("a message for another stream")
            if event == "media":
                self.handset.receive_audio(base64.b64decode(data["media"]["payload"]))
            elif event == "mark":
                self.handset.receive_mark(str(data["mark"]["name"]))
            elif event == "clear":
                await self.handset.receive_clear()
            else:
                raise ValueError(f"unknown event {event!r}")
        except (ValueError, KeyError, TypeError, binascii.Error):
            # Twilio reports a bad message to the debugger and carries on.
            self.ignored += 1
            log.info("twilio sim: a malformed stream message ignored")

    async def send_audio(self, frame: bytes) -> None:
        if self._socket is None:
            return
        self._chunk += 1
        elapsed_ms = (self.clock.monotonic() - self._opened_at) * 1000
        await self._send(
            {
                "event": "media",
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(round(elapsed_ms)),
                    "payload": base64.b64encode(frame).decode("ascii"),
                },
            }
        )

    async def echo_mark(self, name: str) -> None:
        await self._send({"event": "mark", "mark": {"name": name}})

    async def stop(self) -> None:
        """Twilio ends the stream: ``stop``, then the socket closes."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await self.stop_socket(socket)

    async def stop_socket(self, socket: WsConnection) -> None:
        stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
        await self._send_on(socket, {"event": "stop", "stop": stop})
        await socket.close()

    def detach(self, socket: WsConnection) -> None:
        if self._socket is socket:
            self._socket = None

    async def drop(self) -> None:
        """The network loses the socket: no ``stop``, the server just sees it close."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()

    async def close(self) -> None:
        """The call is over: the handset goes dead and the stream stops."""
        if self._closed:
            return
        self._closed = True
        await self.handset.stop()
        await self.stop()

    async def _send(self, message: dict[str, Any]) -> None:
        if self._socket is not None:
            await self._send_on(self._socket, message)

    async def _send_on(self, socket: WsConnection, message: dict[str, Any]) -> None:
        self._sequence += 1
        body = {"event": message["event"], "sequenceNumber": str(self._sequence)}
        body |= {k: v for k, v in message.items() if k != "event"}
        body["streamSid"] = self.stream_sid
        await socket.send(json.dumps(body))


class TwilioSimulator:
    """The simulated carrier: an ASGI app (``self``) plus a script for the callee.

    Args:
        http: the client webhooks are POSTed with (an ``httpx.ASGITransport`` client for
            in-process tests, a plain one for loopback HTTP).
        clock: simulated time; every delay below is in its seconds (default: real time).
        voice_url: the number's voice URL (our webhook), where inbound calls are delivered.
        number_status_callback: the number's status callback URL for inbound calls (Twilio
            sends it the ``completed`` event only); None sends none.
        outcome: what the callee does: ``answer`` | ``busy`` | ``no-answer`` | ``fail``
            (``voicemail`` answers: without machine detection Twilio cannot tell).
        replies: the callee's lines, one per ``<Gather>`` (``""`` stays silent); it hangs up
            when out of them.
        answer_delay_s: ringing time before the outcome.
        reply_delay_s: how long the callee waits, once a Gather's prompt is over, before it
            starts to speak.
        chars_per_sec: how fast ``<Say>`` (and the callee) talks.
        callback_delay_s: status callbacks are each delayed by up to this long.
        seed: seeds the random callback delays.
        connect_ws: how ``<Connect><Stream>`` opens its WebSocket (the network by default;
            tests connect to the app in-process).
        barge_in_after_s: on a media stream, the callee talks over any bot line that has
            played this long (None: it waits for the bot to finish).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        clock: ScaledClock | None = None,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        voice_url: str | None = None,
        number_status_callback: str | None = None,
        outcome: str = "answer",
        replies: Sequence[str] = ("Hello?", "Sure.", "Goodbye."),
        answer_delay_s: float = 0.05,
        reply_delay_s: float = 0.15,
        chars_per_sec: float = DEFAULT_CHARS_PER_SEC,
        callback_delay_s: float = 0.2,
        seed: int | None = None,
        connect_ws: WsConnect | None = None,
        barge_in_after_s: float | None = None,
    ) -> None:
        self.http = http
        self.clock = clock or ScaledClock(1.0)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.voice_url = voice_url
        self.number_status_callback = number_status_callback
        self.outcome = outcome
        self.replies = tuple(replies)
        self.answer_delay_s = answer_delay_s
        self.reply_delay_s = reply_delay_s
        self.chars_per_sec = chars_per_sec
        self.callback_delay_s = callback_delay_s
        self.connect_ws: WsConnect = connect_ws or connect_websocket
        self.barge_in_after_s = barge_in_after_s
        self.unavailable = False
        self.calls: dict[str, SimCall] = {}
        self.dials: list[dict[str, list[str]]] = []
        self.requests: list[tuple[str, str]] = []
        self.last_webhook: tuple[str, dict[str, str], bytes] | None = None
        self._random = random.Random(seed)
        self._validator = RequestValidator(auth_token)
        self._background = Background("twilio sim")

    # ------------------------------------------------------------------ what tests look at

    def heard(self, sid: str) -> list[str]:
        """What the callee heard, in order; a line cut off ends in ``—``."""
        call = self.calls.get(sid)
        return call.heard if call else []

    def played(self, sid: str) -> list[HeardLine]:
        """Each line said to the callee, with its simulated start and end."""
        call = self.calls.get(sid)
        if call is None:
            return []
        if call.stream is not None:
            return [
                HeardLine(line.text, line.started_at, line.ended_at, line.whole)
                for line in call.stream.handset.heard
            ]
        return [attrs.evolve(line) for line in call.played]

    def stream(self, sid: str) -> SimStream | None:
        """The call's media stream (its handset, its connections), once one was opened."""
        call = self.calls.get(sid)
        return call.stream if call else None

    async def drop_stream(self, sid: str) -> None:
        """The network loses the call's stream socket; the call goes on (and Twilio, its
        ``<Connect>`` over, runs the verbs after it)."""
        call = self.calls.get(sid)
        if call is not None and call.stream is not None:
            await call.stream.drop()

    def ended_at(self, sid: str) -> float | None:
        """When the line went dead (simulated time); None while the call is up."""
        call = self.calls.get(sid)
        return call.ended_at if call else None

    def caller_hangs_up(self, sid: str) -> None:
        """The callee puts the phone down now, cutting whatever is being said."""
        call = self.calls.get(sid)
        if call is not None and not call.ended:
            self._end(call, "completed")

    def summary(self) -> dict[str, Any]:
        return {
            "dials": len(self.dials),
            "calls": [call.summary() for call in self.calls.values()],
        }

    async def ring_inbound(self, from_number: str | None, to_number: str) -> str:
        """A caller rings the number; the voice URL is fetched. Returns the CallSid."""
        if not self.voice_url:
            raise RuntimeError("the simulator has no voice URL to deliver inbound calls to")
        call = SimCall(
            sid=_new_sid(),
            direction="inbound",
            # Twilio shows a withheld caller ID as "anonymous".
            from_number=from_number or "anonymous",
            to_number=to_number,
            status="ringing",
            url=self.voice_url,
            status_callback=self.number_status_callback,
        )
        self.calls[call.sid] = call
        self._background.spawn(self._callback_pump(call))
        self._background.spawn(self._run(call, call.generation, fetch=self.voice_url))
        return call.sid

    async def redeliver_last(self) -> httpx.Response:
        """Send the last webhook again, byte for byte (what a Twilio retry looks like)."""
        if self.last_webhook is None:
            raise RuntimeError("no webhook sent yet")
        url, headers, body = self.last_webhook
        return await self.http.post(url, content=body, headers=headers)

    def sign(self, url: str, params: dict[str, str]) -> str:
        return str(self._validator.compute_signature(url, params))

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
        method = scope["method"].upper()
        path = scope["path"]
        self.requests.append((method, path))
        if path.startswith("/_sim/"):
            status, answer = await self._control(method, path, body)
        elif path.startswith(_API):
            status, answer = self._rest(method, path, headers, body)
        else:
            status, answer = 404, _error(20404, "The requested resource was not found", 404)
        await send_json(send, status, answer)

    def _rest(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if self.unavailable:
            return 503, _error(20500, "Service Unavailable (simulated outage)", 503)
        match = _CREATE.match(path) or _ONE_CALL.match(path) or _ACCOUNT.match(path)
        if match is None:
            return 404, _error(20404, "The requested resource was not found", 404)
        if not self._authorised(headers.get("authorization")) or (
            match.group("account") != self.account_sid
        ):
            return 401, _error(20003, "Authenticate", 401)
        if match.re is _ACCOUNT:
            if method != "GET":
                return 405, _error(20004, "Method not allowed", 405)
            return 200, self._account()
        form: dict[str, list[str]] = {}
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(key, []).append(value)
        if match.re is _CREATE:
            if method != "POST":
                return 405, _error(20004, "Method not allowed", 405)
            return self._create(form)
        call = self.calls.get(match.group("sid"))
        if call is None:
            return 404, _error(20404, "The requested resource was not found", 404)
        if method == "GET":
            call.status_reads += 1
            return 200, self._resource(call)
        if method != "POST":
            return 405, _error(20004, "Method not allowed", 405)
        return self._update(call, form)

    def _account(self) -> dict[str, Any]:
        return {
            "sid": self.account_sid,
            "owner_account_sid": self.account_sid,
            "friendly_name": "Simulated account",
            "status": "active",
            "type": "Full",
            "uri": f"{_API}{self.account_sid}.json",
        }

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"{self.account_sid}:{self.auth_token}"

    def _create(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        first = {key: values[0] for key, values in form.items()}
        if not first.get("To"):
            return 400, _error(21201, "No 'To' number is specified", 400)
        if not first.get("From"):
            return 400, _error(21213, "No 'From' number is specified", 400)
        if not first.get("Url") and not first.get("Twiml"):
            return 400, _error(21205, "Url or Twiml is required", 400)
        self.dials.append(form)
        call = SimCall(
            sid=_new_sid(),
            direction="outbound-api",
            from_number=first["From"],
            to_number=first["To"],
            url=first.get("Url"),
            twiml=first.get("Twiml"),
            status_callback=first.get("StatusCallback"),
            # Without StatusCallbackEvent Twilio reports only the end of the call.
            status_events=tuple(form.get("StatusCallbackEvent", ["completed"])),
        )
        self.calls[call.sid] = call
        self._background.spawn(self._callback_pump(call))
        self._background.spawn(self._place(call))
        return 201, self._resource(call)

    def _update(self, call: SimCall, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        first = {key: values[0] for key, values in form.items()}
        status = first.get("Status")
        if status in ("completed", "canceled"):
            # "canceled" only stops a call that has not connected; "completed" ends any call.
            # Either on a call that is already over changes nothing.
            not_connected = call.status in ("queued", "initiated", "ringing")
            if not call.ended and (status == "completed" or not_connected):
                call.hangups += 1
                self._end(call, "canceled" if not_connected else "completed")
            return 200, self._resource(call)
        if status is not None:
            return 400, _error(21218, f"Invalid call status {status!r}", 400)
        twiml, url = first.get("Twiml"), first.get("Url")
        if twiml is None and url is None:
            return 400, _error(21205, "Url or Twiml is required", 400)
        if call.status != "in-progress":
            return 400, _error(21220, "Call is not in-progress. Cannot redirect.", 400)
        call.updates += 1
        generation = self._interrupt(call)
        if twiml is not None:
            self._background.spawn(self._run(call, generation, document=twiml))
        else:
            self._background.spawn(self._run(call, generation, fetch=url))
        return 200, self._resource(call)

    def _resource(self, call: SimCall) -> dict[str, Any]:
        base = f"{_API}{self.account_sid}/Calls/{call.sid}"
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "to": call.to_number,
            "from": call.from_number,
            "status": call.status,
            "direction": call.direction,
            "api_version": "2010-04-01",
            "uri": f"{base}.json",
        }

    async def _control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path == "/_sim/calls":
            return 200, self.summary()
        try:
            data = json.loads(body or b"null")
        except ValueError as err:
            return 400, {"error": str(err)}
        if method == "POST" and path == "/_sim/inbound":
            try:
                data = data or {}
                sid = await self.ring_inbound(data.get("from"), data.get("to") or "+15550100000")
            except (AttributeError, RuntimeError) as err:
                return 400, {"error": str(err)}
            return 200, {"callSid": sid}
        if method == "POST" and path == "/_sim/unavailable":
            self.unavailable = True if data is None else bool(data)
            return 200, {"unavailable": self.unavailable}
        if method == "POST" and path in ("/_sim/hangup", "/_sim/drop-stream"):
            target = data.get("callSid") if isinstance(data, dict) else None
            if not isinstance(target, str) or target not in self.calls:
                return 404, {"error": "no such call"}
            if path == "/_sim/hangup":
                self.caller_hangs_up(target)
            else:
                await self.drop_stream(target)
            return 200, {"callSid": target, "status": self.calls[target].status}
        return 404, {"error": "unknown control endpoint"}

    # ------------------------------------------------------------------ the network

    async def _place(self, call: SimCall) -> None:
        call.status = "initiated"
        self._progress(call, "initiated")
        await asyncio.sleep(0)
        call.status = "ringing"
        self._progress(call, "ringing")
        await self.clock.sleep(self.answer_delay_s)
        if call.ended:
            return
        status = _OUTCOME_STATUS.get(self.outcome)
        if status is not None:
            self._end(call, status)
            return
        call.status = "in-progress"
        if call.twiml is not None:
            self._background.spawn(self._run(call, call.generation, document=call.twiml))
        else:
            self._background.spawn(self._run(call, call.generation, fetch=call.url))
        self._progress(call, "answered")

    def _progress(self, call: SimCall, event: str) -> None:
        """Queue a status callback for ``event`` if the call subscribed to it.

        https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent: Twilio
        sends the subscribed events (``completed`` only by default) to ``StatusCallback``,
        with a ``SequenceNumber`` because they may arrive out of order.
        """
        if not call.status_callback or event not in call.status_events:
            return
        call.sequence += 1
        params = self._call_params(call)
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(call.sequence - 1)
        params["Timestamp"] = email.utils.formatdate(usegmt=True)
        call.callbacks.put_nowait(params)

    async def _callback_pump(self, call: SimCall) -> None:
        """Deliver status callbacks asynchronously: they travel apart from the TwiML fetches
        and may land after the next one (a small random delay each)."""
        while True:
            params = await call.callbacks.get()
            await self.clock.sleep(self._random.uniform(0.0, self.callback_delay_s))
            if call.status_callback:
                try:
                    await self._post(call.status_callback, params)
                except httpx.HTTPError as err:
                    log.info("twilio sim: status callback failed: %s", err)
            if params.get("CallStatus") in _TERMINAL:
                call.callbacks_done = True
                return

    def _end(self, call: SimCall, status: str) -> None:
        if call.ended:
            return
        call.status = status
        call.ended_at = self.clock.now()
        self._interrupt(call)
        if call.stream is not None:
            # The line is dead: the caller hears nothing more and the stream stops.
            self._background.spawn(call.stream.close())
        self._progress(call, "completed")

    def _interrupt(self, call: SimCall) -> int:
        """Abandon the running TwiML now: what is being said is cut where the callee is."""
        call.generation += 1
        line = call.current
        if line is not None:
            line.ended_at = self.clock.now()
            line.whole = False
            call.current = None
        call.wake.set()
        call.wake = asyncio.Event()
        return call.generation

    # ------------------------------------------------------------------ TwiML

    async def _run(
        self,
        call: SimCall,
        generation: int,
        *,
        fetch: str | None = None,
        document: str | None = None,
    ) -> None:
        try:
            url = fetch
            if document is None:
                if fetch is None:
                    raise _Stale
                document = await self._fetch(call, generation, fetch, {})
            await self._execute(call, generation, document, url)
        except _Stale:
            return

    async def _execute(
        self, call: SimCall, generation: int, document: str, url: str | None
    ) -> None:
        while True:
            verbs = self._parse(call, generation, document)
            next_document: str | None = None
            next_url: str | None = None
            for verb in verbs:
                self._check(call, generation)
                tag = verb.tag
                if tag == "Say":
                    self._answer_inbound(call)
                    await self._say(call, generation, verb)
                elif tag == "Pause":
                    # https://www.twilio.com/docs/voice/twiml/pause: silence for ``length`` s.
                    self._answer_inbound(call)
                    await self._sleep(call, generation, float(verb.get("length", "1")))
                elif tag == "Gather":
                    self._answer_inbound(call)
                    target = await self._gather(call, generation, verb, url)
                    if target is not None:
                        next_url, next_document = target
                        break
                elif tag == "Redirect":
                    # https://www.twilio.com/docs/voice/twiml/redirect: control moves to the
                    # fetched document; verbs after the Redirect never run.
                    self._answer_inbound(call)
                    next_url = (verb.text or "").strip()
                    next_document = await self._fetch(call, generation, next_url, {})
                    break
                elif tag == "Connect":
                    self._answer_inbound(call)
                    await self._connect(call, generation, verb)
                elif tag == "Hangup":
                    self._end(call, "completed" if call.status == "in-progress" else "canceled")
                    return
                elif tag == "Reject":
                    call.rejected += 1
                    self._end(call, "busy" if verb.get("reason") == "busy" else "canceled")
                    return
            if next_document is None:
                # The document ran out: Twilio ends the call
                # (https://www.twilio.com/docs/voice/twiml#twiml-verbs-for-programmable-voice).
                self._check(call, generation)
                self._end(call, "completed")
                return
            document, url = next_document, next_url

    async def _say(self, call: SimCall, generation: int, verb: ET.Element) -> None:
        """https://www.twilio.com/docs/voice/twiml/say: the text is spoken, which takes as long
        as it takes; the next verb runs after it. An update or a hang-up cuts it."""
        self._check(call, generation)
        text = (verb.text or "").strip()
        line = HeardLine(text=text, started_at=self.clock.now())
        call.played.append(line)
        call.current = line
        await self._sleep(call, generation, speech_seconds(text, self.chars_per_sec))
        line.ended_at = self.clock.now()
        line.whole = True
        call.current = None

    async def _gather(
        self, call: SimCall, generation: int, verb: ET.Element, url: str | None
    ) -> tuple[str | None, str] | None:
        """https://www.twilio.com/docs/voice/twiml/gather. Nested ``<Say>``s are said first
        ("Nest other verbs"); then the caller speaks or stays silent. With input, Twilio
        requests ``action`` (default: the current document's URL) and never returns to the
        verbs after the Gather. Without input it requests ``action`` only when
        ``actionOnEmptyResult="true"``; otherwise it falls through to the next verb.
        Returns the next document (and its URL), or None to fall through."""
        for child in verb:
            if child.tag == "Say":
                await self._say(call, generation, child)
        await self._sleep(call, generation, self.reply_delay_s)
        if call.replies_used >= len(self.replies):
            # Nothing left to say: the caller hangs up.
            self._end(call, "completed")
            raise _Stale
        line = self.replies[call.replies_used]
        call.replies_used += 1
        action = verb.get("action") or url
        if line:
            await self._sleep(call, generation, speech_seconds(line, self.chars_per_sec))
            if action is None:
                return None
            extra = {"SpeechResult": line, "Confidence": "0.92"}
            return action, await self._fetch(call, generation, action, extra)
        timeout = float(verb.get("timeout") or _GATHER_TIMEOUT_S)
        await self._sleep(call, generation, timeout)
        if action is None or verb.get("actionOnEmptyResult") != "true":
            return None
        return action, await self._fetch(call, generation, action, {})

    async def _connect(self, call: SimCall, generation: int, verb: ET.Element) -> None:
        """``<Connect><Stream>``: a bidirectional stream that holds the call until its
        WebSocket ends (then the next verb runs); an update or the end of the call stops it.
        https://www.twilio.com/docs/voice/twiml/stream,
        https://www.twilio.com/docs/voice/media-streams/websocket-messages."""
        noun = verb.find("Stream")
        if noun is None:
            log.info("twilio sim: only <Connect><Stream> is simulated; skipping <Connect>")
            return
        # "The url does not support query string parameters": Twilio connects without it.
        url = urlunsplit(urlsplit((noun.get("url") or "").strip())._replace(query="", fragment=""))
        parameters = {
            name: parameter.get("value", "")
            for parameter in noun.findall("Parameter")
            if (name := parameter.get("name"))
        }
        stream = call.stream or self._new_stream(call)
        wake = call.wake
        try:
            socket = await self.connect_ws(url)
        except ConnectionError as err:
            # The handshake failed: the <Connect> is over, and Twilio goes on.
            log.info("twilio sim: cannot open the media stream: %s", err)
            self._check(call, generation)
            return
        if call.generation != generation or call.ended:
            await socket.close()
            raise _Stale
        await stream.open(socket, url, parameters)
        reader = asyncio.ensure_future(stream.read(socket))
        interrupted = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({reader, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
            if not reader.done():
                reader.cancel()
            await asyncio.gather(reader, interrupted, return_exceptions=True)
        if call.ended:
            raise _Stale  # ``close`` (started by ``_end``) silences the handset and stops it
        stream.detach(socket)
        if call.generation != generation:
            # An update: its TwiML replaces the <Connect>, which ends the stream.
            await stream.stop_socket(socket)
            raise _Stale
        # The server closed the socket or the network lost it: the call goes on.

    def _new_stream(self, call: SimCall) -> SimStream:
        stream = SimStream(self.account_sid, call.sid, self.clock)

        async def hang_up() -> None:
            self._end(call, "completed")

        stream.handset = SimulatedHandset(
            self.clock,
            send_audio=stream.send_audio,
            echo_mark=stream.echo_mark,
            hang_up=hang_up,
            replies=self.replies[call.replies_used :],
            reply_delay_s=self.reply_delay_s,
            barge_in_after_s=self.barge_in_after_s,
            chars_per_sec=self.chars_per_sec,
            # A clear "empties all buffered audio and causes any mark messages to be sent
            # back" (https://www.twilio.com/docs/voice/media-streams/websocket-messages).
            echo_marks_on_clear=True,
        )
        call.stream = stream
        return stream

    def _answer_inbound(self, call: SimCall) -> None:
        if call.status == "ringing":
            call.status = "in-progress"

    def _parse(self, call: SimCall, generation: int, document: str) -> list[ET.Element]:
        try:
            root = ET.fromstring(document)
        except ET.ParseError:
            log.info("twilio sim: unparseable TwiML ends call %s", call.sid)
            self._end(call, "completed")
            raise _Stale from None
        if root.tag != "Response":
            self._end(call, "completed")
            raise _Stale
        return list(root)

    async def _fetch(self, call: SimCall, generation: int, url: str, extra: dict[str, str]) -> str:
        params = self._call_params(call) | extra
        try:
            response = await self._post(url, params)
        except httpx.HTTPError as err:
            log.info("twilio sim: fetching TwiML failed (%s): application error", err)
            response = None
        self._check(call, generation)
        if response is None or response.status_code >= 300:
            # Twilio says "an application error has occurred" and hangs up.
            self._end(call, "completed")
            raise _Stale
        return response.text

    async def _post(self, url: str, params: dict[str, str]) -> httpx.Response:
        body = urlencode(params).encode()
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": self.sign(url, params),
            "user-agent": "TwilioProxy/1.1",
        }
        self.last_webhook = (url, headers, body)
        return await self.http.post(url, content=body, headers=headers)

    def _call_params(self, call: SimCall) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to_number,
            "Caller": call.from_number,
            "Direction": call.direction,
            "From": call.from_number,
            "To": call.to_number,
        }

    def _check(self, call: SimCall, generation: int) -> None:
        if call.generation != generation or call.ended:
            raise _Stale

    async def _sleep(self, call: SimCall, generation: int, seconds: float) -> None:
        """Wait ``seconds`` of simulated time, unless the call is updated or ends first (then
        the program stops)."""
        self._check(call, generation)
        await self.clock.wait(call.wake, max(seconds, 0.0))
        self._check(call, generation)


def _new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def _error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the simulator on 127.0.0.1 with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m voicecall.testing.twilio_sim")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--webhook-url", required=True, help="our webhook (the number's voice URL)")
    parser.add_argument("--replies", nargs="*", default=["Hello?", "Sure.", "Goodbye."])
    parser.add_argument(
        "--outcome", default="answer", choices=["answer", "busy", "no-answer", "fail", "voicemail"]
    )
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--answer-delay-ms", type=int, default=100)
    parser.add_argument("--reply-delay-ms", type=int, default=200)
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per wall second (1 = real)"
    )
    parser.add_argument("--chars-per-sec", type=float, default=DEFAULT_CHARS_PER_SEC)
    parser.add_argument(
        "--barge-in-after-s",
        type=float,
        default=None,
        help="on a media stream, the callee talks over a bot line that has played this long",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    http = httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=2.0))
    simulator = TwilioSimulator(
        http,
        clock=ScaledClock(args.speed),
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        voice_url=args.webhook_url,
        number_status_callback=args.webhook_url,
        outcome=args.outcome,
        replies=args.replies,
        answer_delay_s=args.answer_delay_ms / 1000,
        reply_delay_s=args.reply_delay_ms / 1000,
        chars_per_sec=args.chars_per_sec,
        barge_in_after_s=args.barge_in_after_s,
    )
    uvicorn.run(simulator, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
