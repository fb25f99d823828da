"""``voicecall demo [--carrier mock|twilio|telnyx|plivo]``: a scripted tour.

It starts a real gateway (``voicecall serve``) in a subprocess with a throw-away config, follows
its event stream live, and drives it exactly as the CLI does: a notify call, a two-turn
conversation, an inbound call the allowlist accepts and one it rejects. With ``--carrier`` other
than ``mock`` the real carrier adapter talks to that carrier's simulator
(``voicecall.testing.<carrier>_sim``) on loopback: signed webhooks, REST, TwiML/XML and all.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from voicecall.config import load_config
from voicecall.entrypoints.client import ClientError, GatewayClient

__all__ = ["run_demo"]

FRIEND = "+15551230001"
STRANGER = "+15559990000"
CALLEE = "+15557654321"
TERMINAL = {
    "completed",
    "hangup-user",
    "hangup-bot",
    "timeout",
    "error",
    "failed",
    "no-answer",
    "busy",
    "voicemail",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


OUR_NUMBER = "+15550100000"
REPLIES = ["Sure, go ahead.", "Noon works for me.", "Thanks, bye!"]


@dataclass
class _Carrier:
    """What the demo needs to run one carrier: its config keys and, for a real carrier's
    simulator, the command that serves it."""

    name: str
    plugin: dict[str, Any]
    simulator: list[str] | None = None
    env: dict[str, str] | None = None
    port: int = 0

    def ring_inbound(self, client: GatewayClient, from_number: str) -> str:
        if self.simulator is None:
            answer = client.call("voicecall.simulateInbound", {"from": from_number})
            return str(answer["callId"])
        before = {c["callId"] for c in client.call("voicecall.list", {})["calls"]}
        httpx.post(
            f"http://127.0.0.1:{self.port}/_sim/inbound",
            json={"from": from_number, "to": OUR_NUMBER},
            timeout=10,
        ).raise_for_status()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for call in client.call("voicecall.list", {})["calls"]:
                if call["callId"] not in before:
                    return str(call["callId"])
            time.sleep(0.1)
        raise ClientError(f"the simulated {self.name} never delivered the inbound call")


def _carrier(name: str, webhook_port: int, streaming: bool = False) -> _Carrier:
    public_url = f"http://127.0.0.1:{webhook_port}/voice/webhook"
    if name == "mock":
        return _Carrier(
            "mock", {"provider": "mock", "mock": {"answerDelayMs": 400, "replies": REPLIES}}
        )
    port = _free_port()
    module = f"voicecall.testing.{name}_sim"
    command = [sys.executable, "-m", module, "--port", str(port), "--webhook-url", public_url]
    command += ["--replies", *REPLIES]
    if streaming:
        # The simulated callee talks over any streamed line longer than four seconds.
        command += ["--barge-in-after-s", str(BARGE_IN_AFTER_MS / 1000)]
    plugin: dict[str, Any] = {"provider": name, "publicUrl": public_url}
    env = None
    if name == "twilio":
        from voicecall.testing.twilio_sim import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

        plugin["twilio"] = {
            "accountSid": DEFAULT_ACCOUNT_SID,
            "authToken": DEFAULT_AUTH_TOKEN,
            "apiBaseUrl": f"http://127.0.0.1:{port}",
        }
    elif name == "telnyx":
        from nacl.signing import SigningKey

        key = SigningKey.generate()
        env = {**os.environ, "TELNYX_SIM_SIGNING_KEY": base64.b64encode(bytes(key)).decode()}
        plugin["telnyx"] = {
            "apiKey": "demo-api-key",
            "connectionId": "demo-connection",
            "publicKey": base64.b64encode(bytes(key.verify_key)).decode(),
            "apiBaseUrl": f"http://127.0.0.1:{port}/v2",
        }
        command += ["--api-key", "demo-api-key"]
    elif name == "plivo":
        plugin["plivo"] = {
            "authId": "MASIMULATEDPLIVO0001",
            "authToken": "simulated-plivo-token",
            "apiBaseUrl": f"http://127.0.0.1:{port}",
        }
    return _Carrier(name, plugin, command, env, port)


def _write_config(
    directory: Path, carrier: _Carrier, webhook_port: int, streaming: bool = False
) -> Path:
    plugin: dict[str, Any] = {
        "enabled": True,
        "fromNumber": OUR_NUMBER,
        "toNumber": CALLEE,
        "serve": {"bind": "127.0.0.1", "port": webhook_port},
        "inboundPolicy": "allowlist",
        "allowFrom": [FRIEND],
        "outbound": {"notifyHangupDelaySec": 1},
        "store": str(directory / "store"),
    }
    plugin.update(carrier.plugin)
    if streaming:
        # Audio over the carrier's media stream, spoken and heard by the offline tone doubles;
        # the simulated callee talks over any line longer than four seconds (a barge-in).
        plugin["streaming"] = {"enabled": True}
        if carrier.name == "mock":
            plugin["mock"] = {**plugin.get("mock", {}), "bargeInAfterMs": BARGE_IN_AFTER_MS}
    config = {
        "plugins": {"entries": {"voice-call": {"config": plugin}}},
        "gateway": {"bind": "127.0.0.1", "port": _free_port()},
    }
    path = directory / "openclaw.json"
    path.write_text(json.dumps(config, indent=2))
    return path


class _Printer:
    """Prints call events as they happen, one readable line each."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.lock = threading.Lock()

    def name(self, call_id: str, label: str) -> None:
        with self.lock:
            self.names[call_id] = label

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    def event(self, event: dict[str, Any]) -> None:
        data = event.get("data", {})
        when = _clock(event["at"])
        who = self.names.get(event["callId"], event["callId"][:8])
        kind = event["type"]
        if kind == "call.transcript" and data["speaker"] == "bot":
            return  # "played" and "cut" below say it, with their moments
        if kind == "call.transcript":
            line = f"{data['speaker']:>4} says: {data['text']!r}"
        elif kind == "speech.started":
            return  # "played" says when it started and ended
        elif kind == "speech.queued":
            line = f" bot queues: {data['text']!r}"
        elif kind == "speech.played":
            line = (
                f" bot played: {data['text']!r} (heard {_clock(data['startedAt'])}"
                f" -> {_clock(data['endedAt'])})"
            )
        elif kind == "speech.cut":
            if data.get("startedAt") is None:
                line = f"    bot cut: {data['text']!r} (never started)"
            elif data.get("heardMs") is not None:
                line = f"    bot cut: {data['text']!r} after {data['heardMs'] / 1000:.2f} s"
            else:
                line = f"    bot cut: {data['text']!r}"
        elif kind == "call.created":
            call = data["call"]
            line = f"created {call['direction']} {call['from']} -> {call['to']}"
            if "accepted" in data:
                line += f" ({'accepted' if data['accepted'] else 'rejected'}: {data['policy']})"
        elif "state" in data:
            line = f"state -> {data['state']}"
            if data.get("endDetail"):
                line += f" ({data['endDetail']})"
        else:
            return
        self.say(f"  {when}  [{who}] {line}")


def _clock(at: float | None) -> str:
    return "?" if at is None else datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


def _follow(client: GatewayClient, printer: _Printer, stop: threading.Event) -> None:
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {client.token}"}
    try:
        with connect(client.ws_url, additional_headers=headers) as ws:
            while not stop.is_set():
                try:
                    message = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                event = json.loads(message)
                if event.get("type") != "keepalive":
                    printer.event(event)
    except Exception as err:  # the demo goes on without live events
        if not stop.is_set():
            printer.say(f"  (event stream closed: {err})")


def _wait_ended(client: GatewayClient, call_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        call: dict[str, Any] = client.call("voicecall.status", {"callId": call_id})["call"]
        if call["state"] in TERMINAL or time.monotonic() > deadline:
            return call
        time.sleep(0.1)


def _script(
    client: GatewayClient, printer: _Printer, carrier: _Carrier, streaming: bool = False
) -> list[dict[str, Any]]:
    finished = []

    printer.say("\n1) A notify call: speak one message, hang up after notifyHangupDelaySec")
    placed = client.call(
        "voicecall.initiate",
        {
            "to": CALLEE,
            "message": "Hi! Your parcel arrives today between 2 and 4.",
            "mode": "notify",
        },
    )
    printer.name(placed["callId"], "notify")
    finished.append(_wait_ended(client, placed["callId"]))
    time.sleep(0.3)

    if streaming:
        printer.say(
            "\n2) A conversation over the media stream: the callee talks over the long opening"
            " (barge-in: the bot stops, the line is recorded cut), then two turns"
        )
    else:
        printer.say("\n2) A conversation: two turns, then hang up")
    placed = client.call(
        "voicecall.initiate",
        {
            "to": CALLEE,
            "message": LONG_OPENING if streaming else OPENING,
            "mode": "conversation",
        },
    )
    call_id = placed["callId"]
    printer.name(call_id, "conversation")
    for prompt in ("Can we move it to noon?", "Great, I'll send the invite. Anything else?"):
        reply = client.call("voicecall.continue", {"callId": call_id, "message": prompt}, 60)
        printer.say(f"  -> continue returned: {reply['transcript']!r}")
    client.call("voicecall.end", {"callId": call_id})
    finished.append(_wait_ended(client, call_id))
    time.sleep(0.3)

    printer.say(f"\n3) An inbound call from {FRIEND}, who is on the allowlist")
    call_id = carrier.ring_inbound(client, FRIEND)
    printer.name(call_id, "inbound-ok")
    finished.append(_wait_ended(client, call_id))
    time.sleep(0.3)

    printer.say(f"\n4) An inbound call from {STRANGER}, who is not")
    call_id = carrier.ring_inbound(client, STRANGER)
    printer.name(call_id, "inbound-no")
    finished.append(_wait_ended(client, call_id))
    time.sleep(0.3)
    return finished


OPENING = "Hello, this is your assistant calling about tomorrow's meeting."
LONG_OPENING = (
    "Hello, this is your assistant calling about tomorrow's meeting, which has moved twice"
    " already this week, so I would like to be sure we agree on the new time."
)
BARGE_IN_AFTER_MS = 4000


def _judge(finished: list[dict[str, Any]], streaming: bool = False) -> list[str]:
    """What went wrong, if anything, with the four calls."""
    notify, conversation, friend, stranger = finished
    problems = []
    if streaming and not any(t.get("cut") for t in conversation["transcript"]):
        problems.append("the callee's barge-in did not cut the long opening")
    if notify["state"] != "completed":
        problems.append(f"the notify call ended {notify['state']}, not completed")
    if conversation["state"] != "hangup-bot":
        problems.append(f"the conversation ended {conversation['state']}, not hangup-bot")
    if sum(1 for t in conversation["transcript"] if t["speaker"] == "user") < 2:
        problems.append("the conversation did not get two replies")
    if friend["state"] not in TERMINAL:
        problems.append(f"the allowlisted caller's call never ended ({friend['state']})")
    if not friend["transcript"] or friend["transcript"][0]["text"] != GREETING:
        problems.append("the allowlisted caller did not hear the greeting")
    if stranger["state"] != "hangup-bot" or stranger["transcript"]:
        problems.append("the stranger was not rejected")
    return problems


GREETING = "Hello! How can I help you today?"


def run_demo(keep: bool = False, carrier_name: str = "mock", streaming: bool = False) -> int:
    """Run the tour; returns the exit code (0 when every call behaved as expected)."""
    directory = Path(tempfile.mkdtemp(prefix="voicecall-demo-"))
    webhook_port = _free_port()
    carrier = _carrier(carrier_name, webhook_port, streaming)
    config_path = _write_config(directory, carrier, webhook_port, streaming)
    config = load_config(config_path, {})
    log_path = directory / "serve.log"
    printer = _Printer()
    where = (
        "the offline mock carrier"
        if carrier.simulator is None
        else (f"the real {carrier.name} adapter against a simulated {carrier.name} on loopback")
    )
    printer.say(f"voicecall demo: {where}; files in {directory}")
    processes: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        if carrier.simulator is not None:
            with (directory / f"{carrier.name}-sim.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(carrier.simulator, stdout=log, stderr=log, env=carrier.env)
                )
            _wait_port(carrier.port, processes[-1])
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "voicecall", "serve", "--config", str(config_path)],
                stdout=log,
                stderr=log,
            )
        processes.insert(0, server)
        client = _connect(config, server, log_path)
        follower = threading.Thread(target=_follow, args=(client, printer, stop), daemon=True)
        follower.start()
        time.sleep(0.3)
        finished = _script(client, printer, carrier, streaming)
        time.sleep(0.5)
        stop.set()
        follower.join(2)
        printer.say("\nSummary")
        for call in finished:
            printer.say(
                f"  {printer.names[call['callId']]:<13} {call['direction']:<9}"
                f" {call['state']:<12} {len(call['transcript'])} transcript lines"
            )
        problems = _judge(finished, streaming)
        for problem in problems:
            printer.say(f"  PROBLEM: {problem}")
        printer.say("\nAll four calls behaved as expected." if not problems else "")
        return 0 if not problems else 1
    except ClientError as err:
        print(f"voicecall demo: {err}", file=sys.stderr)
        print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
        return 1
    finally:
        stop.set()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def _wait_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClientError(f"the simulator exited early (code {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ClientError("the simulator did not start within 30 s")


def _connect(config: Any, server: subprocess.Popen[bytes], log_path: Path) -> GatewayClient:
    deadline = time.monotonic() + 30
    client = GatewayClient.for_config(config)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ClientError(f"the gateway exited early (code {server.returncode})")
        try:
            if httpx.get(f"{client.base_url}/health", timeout=0.5).status_code == 200:
                return GatewayClient.for_config(config)  # re-read: the token file exists now
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ClientError("the gateway did not start within 30 s")
