"""``voicecall demo``: a scripted tour on the offline mock carrier.

It starts a real gateway (``voicecall serve``) in a subprocess with a throw-away config, follows
its event stream live, and drives it exactly as the CLI does: a notify call, a two-turn
conversation, an inbound call the allowlist accepts and one it rejects.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from voicecall.config import load_config
from voicecall.entrypoints.cli import CliError, GatewayClient

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


def _write_config(directory: Path) -> Path:
    config = {
        "plugins": {
            "entries": {
                "voice-call": {
                    "config": {
                        "enabled": True,
                        "provider": "mock",
                        "fromNumber": "+15550100000",
                        "toNumber": CALLEE,
                        "serve": {"bind": "127.0.0.1", "port": _free_port()},
                        "inboundPolicy": "allowlist",
                        "allowFrom": [FRIEND],
                        "outbound": {"notifyHangupDelaySec": 1},
                        "store": str(directory / "store"),
                        "mock": {
                            "answerDelayMs": 400,
                            "replies": [
                                "Sure, go ahead.",
                                "Noon works for me.",
                                "Thanks, bye!",
                            ],
                        },
                    }
                }
            }
        },
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
        when = datetime.fromtimestamp(event["at"]).strftime("%H:%M:%S.%f")[:-3]
        who = self.names.get(event["callId"], event["callId"][:8])
        kind = event["type"]
        if kind == "call.transcript":
            line = f"{data['speaker']:>4} says: {data['text']!r}"
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


def _script(client: GatewayClient, printer: _Printer) -> list[dict[str, Any]]:
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

    printer.say("\n2) A conversation: two turns, then hang up")
    placed = client.call(
        "voicecall.initiate",
        {
            "to": CALLEE,
            "message": "Hello, this is your assistant calling about tomorrow's meeting.",
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
    answer = client.call("voicecall.simulateInbound", {"from": FRIEND})
    printer.name(answer["callId"], "inbound-ok")
    finished.append(_wait_ended(client, answer["callId"]))
    time.sleep(0.3)

    printer.say(f"\n4) An inbound call from {STRANGER}, who is not")
    answer = client.call("voicecall.simulateInbound", {"from": STRANGER})
    printer.name(answer["callId"], "inbound-no")
    finished.append(_wait_ended(client, answer["callId"]))
    time.sleep(0.3)
    return finished


def run_demo(keep: bool = False) -> int:
    """Run the tour; returns the exit code (0 when every call ended as expected)."""
    directory = Path(tempfile.mkdtemp(prefix="voicecall-demo-"))
    config_path = _write_config(directory)
    config = load_config(config_path, {})
    log_path = directory / "serve.log"
    printer = _Printer()
    printer.say(f"voicecall demo: offline mock carrier, files in {directory}")
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "voicecall", "serve", "--config", str(config_path)],
            stdout=log,
            stderr=log,
        )
    stop = threading.Event()
    try:
        client = _connect(config, server, log_path)
        follower = threading.Thread(target=_follow, args=(client, printer, stop), daemon=True)
        follower.start()
        time.sleep(0.3)
        finished = _script(client, printer)
        time.sleep(0.5)
        stop.set()
        follower.join(2)
        expected = ["completed", "hangup-bot", "hangup-user", "hangup-bot"]
        printer.say("\nSummary")
        for call, want in zip(finished, expected, strict=True):
            mark = "ok" if call["state"] == want else f"UNEXPECTED (wanted {want})"
            printer.say(
                f"  {printer.names[call['callId']]:<13} {call['direction']:<9}"
                f" {call['state']:<12} {len(call['transcript'])} transcript lines  {mark}"
            )
        good = all(c["state"] == w for c, w in zip(finished, expected, strict=True))
        printer.say("\nAll four calls behaved as expected." if good else "\nSomething is off.")
        return 0 if good else 1
    except CliError as err:
        print(f"voicecall demo: {err}", file=sys.stderr)
        print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
        return 1
    finally:
        stop.set()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def _connect(config: Any, server: subprocess.Popen[bytes], log_path: Path) -> GatewayClient:
    deadline = time.monotonic() + 30
    client = GatewayClient(config)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CliError(f"the gateway exited early (code {server.returncode})")
        try:
            if httpx.get(f"{client.base_url}/health", timeout=0.5).status_code == 200:
                return GatewayClient(config)  # re-read: the token file exists now
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise CliError("the gateway did not start within 30 s")
