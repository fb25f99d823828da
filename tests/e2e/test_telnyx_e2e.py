"""End to end over Telnyx: ``voicecall serve`` and the simulated Telnyx carrier, each a real
subprocess talking real loopback HTTP, driven by the real CLI.

The simulator signs its webhooks with a key made here; our config holds the public half, so
every webhook in these tests passes real Ed25519 verification.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey

from .conftest import ALLOWED, CALLEE, Gateway, free_port

pytestmark = pytest.mark.e2e

API_KEY = "KEYe2e0123456789"
OUR_NUMBER = "+15550100000"
GREETING = "Hello! How can I help you today?"
LINES = (
    "Yes, I have a minute.",
    "Noon works for me.",
    "Sure, go ahead.",
    "Sounds good.",
    "Bye!",
)


class TelnyxSim:
    """``python -m voicecall.testing.telnyx_sim`` as a subprocess, with its control API."""

    def __init__(self, tmp: Path, webhook_url: str, key: SigningKey) -> None:
        self.port = free_port()
        self.log_path = tmp / "telnyx-sim.log"
        seed = base64.b64encode(bytes(key)).decode()
        env = dict(os.environ, TELNYX_SIM_SIGNING_KEY=seed)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "voicecall.testing.telnyx_sim",
                    "--port",
                    str(self.port),
                    "--webhook-url",
                    webhook_url,
                    "--api-key",
                    API_KEY,
                    "--answer-delay-ms",
                    "100",
                    "--reply-delay-ms",
                    "150",
                    # Speech still takes time, in real time; three times the usual pace keeps
                    # the agent's answers to five lines well inside the timeouts.
                    "--chars-per-sec",
                    "45",
                    "--replies",
                    *LINES,
                ],
                stdout=log,
                stderr=log,
                env=env,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"simulator exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/_sim/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"simulator did not come up:\n{self.log_path.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_sim/calls", timeout=5)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def call(self, provider_call_id: str) -> dict[str, Any]:
        calls: list[dict[str, Any]] = self.snapshot()["calls"]
        [call] = [c for c in calls if c["callControlId"] == provider_call_id]
        return call

    def ring(self, from_number: str) -> str:
        response = httpx.post(
            f"{self.url}/_sim/inbound", json={"from": from_number, "to": OUR_NUMBER}, timeout=5
        )
        assert response.status_code == 200, response.text
        pid: str = response.json()["callControlId"]
        return pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def telnyx(tmp_path: Path) -> Iterator[tuple[Gateway, TelnyxSim]]:
    key = SigningKey.generate()
    serve_port = free_port()
    public_url = f"http://127.0.0.1:{serve_port}/voice/webhook"
    sim = TelnyxSim(tmp_path, public_url, key)
    gateway = Gateway(
        tmp_path,
        provider="telnyx",
        publicUrl=public_url,
        serve={"port": serve_port, "bind": "127.0.0.1", "path": "/voice/webhook"},
        telnyx={
            "apiKey": API_KEY,
            "connectionId": "e2e-connection",
            "publicKey": base64.b64encode(bytes(key.verify_key)).decode(),
            "apiBaseUrl": f"{sim.url}/v2",
        },
    )
    try:
        gateway.start()
        yield gateway, sim
    finally:
        if gateway.process is not None:
            gateway.stop()
        sim.stop()


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_notify_call_completes_and_the_callee_heard_it(
    telnyx: tuple[Gateway, TelnyxSim],
) -> None:
    gateway, sim = telnyx
    placed = gateway.cli_json("call", "--to", CALLEE, "--message", "Your order shipped.")
    assert placed["initiated"] is True
    call = gateway.wait_state(placed["callId"], "completed")
    assert call["provider"] == "telnyx"
    assert call["answeredAt"] is not None
    assert sim.call(call["providerCallId"])["heard"] == ["Your order shipped."]
    assert sim.call(call["providerCallId"])["hangups"] == 1
    assert sim.snapshot()["dials"] == 1


def test_two_turn_conversation(telnyx: tuple[Gateway, TelnyxSim]) -> None:
    gateway, sim = telnyx
    placed = gateway.cli_json(
        "call", "--to", CALLEE, "--message", "Hi, got a minute?", "--mode", "conversation"
    )
    first = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Lunch?")
    second = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Where?")
    assert first["success"] is True and second["success"] is True
    assert first["transcript"] in LINES and second["transcript"] in LINES
    # Turns come in the callee's order.
    assert LINES.index(second["transcript"]) == LINES.index(first["transcript"]) + 1
    assert gateway.cli_json("end", "--call-id", placed["callId"]) == {"success": True}
    call = gateway.cli_json("status", "--call-id", placed["callId"])["call"]
    assert call["state"] == "hangup-bot"
    assert sim.call(call["providerCallId"])["heard"] == ["Hi, got a minute?", "Lunch?", "Where?"]
    users = [t["text"] for t in call["transcript"] if t["speaker"] == "user"]
    assert first["transcript"] in users and second["transcript"] in users


def test_inbound_allowlisted_is_answered_and_a_stranger_rejected_once(
    telnyx: tuple[Gateway, TelnyxSim],
) -> None:
    gateway, sim = telnyx
    accepted_pid = sim.ring(ALLOWED)
    wait_until(lambda: gateway.cli_json("list")["calls"])
    [accepted] = gateway.cli_json("list")["calls"]
    assert accepted["direction"] == "inbound" and accepted["from"] == ALLOWED
    assert accepted["providerCallId"] == accepted_pid
    # The agent answers each line until the caller runs out of things to say and hangs up:
    # call.hangup's hangup_source "caller" on a call we answered is the person, so hangup-user.
    final = gateway.wait_state(accepted["callId"], "hangup-user", timeout=30)
    heard = sim.call(accepted_pid)["heard"]
    assert heard[0] == GREETING
    # The agent may answer in several sentences, each its own line: the callee heard exactly
    # the bot lines the transcript records as played (a line cut by the hang-up ends in "—").
    bot_lines = [t["text"] for t in final["transcript"] if t["speaker"] == "bot"]
    assert [line.rstrip("—") for line in heard] == bot_lines
    assert len(bot_lines) > len(LINES)  # the greeting, then at least one line per answer
    assert sim.call(accepted_pid)["answered"] == 1
    assert final["transcript"][0]["text"] == GREETING
    assert [t["text"] for t in final["transcript"] if t["speaker"] == "user"] == list(LINES)

    stranger_pid = sim.ring("+15559990000")
    wait_until(lambda: len(gateway.cli_json("list")["calls"]) == 2)
    rejected = next(
        c for c in gateway.cli_json("list")["calls"] if c["providerCallId"] == stranger_pid
    )
    final = gateway.wait_state(rejected["callId"], "hangup-bot")
    assert (final["endDetail"] or "").startswith("rejected")
    # The call ended and every webhook about it (call.hangup included) was answered by the
    # gateway: whatever it would do about this call, it has done.
    wait_until(
        lambda: sim.call(stranger_pid)["status"] == "ended" and sim.snapshot()["undelivered"] == 0
    )
    stranger = sim.call(stranger_pid)
    assert stranger["rejected"] == 1 and stranger["hangups"] == 0
    assert stranger["answered"] == 0 and stranger["heard"] == []


def test_restart_reconciles_through_the_status_api_and_never_redials(
    telnyx: tuple[Gateway, TelnyxSim],
) -> None:
    gateway, sim = telnyx
    placed = gateway.cli_json(
        "call", "--to", CALLEE, "--message", "Before the crash.", "--mode", "conversation"
    )
    before = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Ready?")
    assert before["success"] is True
    gateway.stop(signal.SIGKILL)
    gateway.start()
    status = gateway.cli_json("status", "--call-id", placed["callId"])
    assert status["found"] is True
    assert status["call"]["state"] == "listening"  # Telnyx says is_alive: kept
    assert status["call"]["transcript"][0]["text"] == "Before the crash."
    after = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Still there?")
    assert after["success"] is True
    assert LINES.index(after["transcript"]) > LINES.index(before["transcript"])
    assert sim.snapshot()["dials"] == 1  # nobody was dialled again
    pid = status["call"]["providerCallId"]
    assert sim.call(pid)["statusChecks"] >= 1  # the restart asked Telnyx about the call
    assert sim.call(pid)["heard"] == ["Before the crash.", "Ready?", "Still there?"]
    assert gateway.cli_json("end", "--call-id", placed["callId"]) == {"success": True}
