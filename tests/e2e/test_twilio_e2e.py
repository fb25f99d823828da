"""End to end with Twilio: ``voicecall serve`` and the simulated Twilio as two real processes
talking Twilio's wire format over loopback HTTP, driven by the real CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ALLOWED, CALLEE, Gateway, free_port

pytestmark = pytest.mark.e2e

ACCOUNT_SID = "AC" + "e" * 32
AUTH_TOKEN = "e2e-twilio-token"
REPLIES = ("Yes, I have a minute.", "Noon works for me.", "See you then.", "Bye!")
GREETING = "Hello! How can I help you today?"


class TwilioLine:
    """A simulated Twilio process and a gateway configured to use it."""

    def __init__(self, tmp: Path) -> None:
        self.sim_port = free_port()
        serve_port = free_port()
        self.public_url = f"http://127.0.0.1:{serve_port}/voice/webhook"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.gateway = Gateway(
            tmp,
            provider="twilio",
            twilio={"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "apiBaseUrl": self.sim_url},
            publicUrl=self.public_url,
            serve={"port": serve_port, "bind": "127.0.0.1", "path": "/voice/webhook"},
        )
        self.sim_log = (tmp / "twilio-sim.log").open("ab")
        self.sim: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voicecall.testing.twilio_sim",
                "--port",
                str(self.sim_port),
                "--webhook-url",
                self.public_url,
                "--account-sid",
                ACCOUNT_SID,
                "--auth-token",
                AUTH_TOKEN,
                "--answer-delay-ms",
                "100",
                "--replies",
                *REPLIES,
            ],
            stdout=self.sim_log,
            stderr=self.sim_log,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.sim_url}/_sim/calls", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.sim.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the Twilio simulator did not come up")
            time.sleep(0.05)
        self.gateway.start()

    def stop(self) -> None:
        if self.gateway.process is not None:
            self.gateway.stop()
        if self.sim is not None:
            self.sim.terminate()
            try:
                self.sim.wait(10)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait(5)
        self.sim_log.close()

    def carrier(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{self.sim_url}/_sim/calls", timeout=5).json()
        return answer

    def carrier_call(self, sid: str) -> dict[str, Any]:
        return next(call for call in self.carrier()["calls"] if call["sid"] == sid)

    def ring(self, from_number: str) -> str:
        answer = httpx.post(
            f"{self.sim_url}/_sim/inbound",
            json={"from": from_number, "to": "+15550100000"},
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        sid: str = answer.json()["callSid"]
        return sid

    def call_for(self, sid: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for call in self.gateway.cli_json("list")["calls"]:
                if call["providerCallId"] == sid:
                    found: dict[str, Any] = call
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no call for {sid}")
            time.sleep(0.05)

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.05)


@pytest.fixture
def twilio_line(tmp_path: Path) -> Iterator[TwilioLine]:
    line = TwilioLine(tmp_path)
    line.start()
    yield line
    line.stop()


def test_notify_call_completes_and_the_callee_heard_it(twilio_line: TwilioLine) -> None:
    gateway = twilio_line.gateway
    placed = gateway.cli_json("call", "--to", CALLEE, "--message", "Your order shipped.")
    call = gateway.wait_state(placed["callId"], "completed")
    assert call["provider"] == "twilio" and call["providerCallId"].startswith("CA")
    sid = call["providerCallId"]
    twilio_line.wait_until(lambda: twilio_line.carrier_call(sid)["status"] == "completed")
    carrier = twilio_line.carrier()
    assert carrier["dials"] == 1
    assert twilio_line.carrier_call(sid)["heard"] == ["Your order shipped."]


def test_two_turn_conversation(twilio_line: TwilioLine) -> None:
    gateway = twilio_line.gateway
    placed = gateway.cli_json(
        "call", "--to", CALLEE, "--message", "Hi, got a minute?", "--mode", "conversation"
    )
    first = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Lunch?")
    assert first["success"] is True and first["transcript"] in REPLIES
    second = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Noon?")
    assert second["success"] is True and second["transcript"] in REPLIES
    assert REPLIES.index(second["transcript"]) == REPLIES.index(first["transcript"]) + 1
    assert gateway.cli_json("end", "--call-id", placed["callId"]) == {"success": True}
    call = gateway.cli_json("status", "--call-id", placed["callId"])["call"]
    assert call["state"] == "hangup-bot"
    sid = call["providerCallId"]
    twilio_line.wait_until(lambda: twilio_line.carrier_call(sid)["status"] == "completed")
    heard = twilio_line.carrier_call(sid)["heard"]
    assert heard == ["Hi, got a minute?", "Lunch?", "Noon?"]
    assert twilio_line.carrier_call(sid)["hangups"] == 1


def test_inbound_allowlisted_is_greeted_and_others_rejected_once(twilio_line: TwilioLine) -> None:
    stranger = twilio_line.ring("+15559990000")
    refused = twilio_line.call_for(stranger)
    assert refused["direction"] == "inbound"
    twilio_line.gateway.wait_state(refused["callId"], "hangup-bot")
    # The number's status callback for the ended call was answered by the gateway: whatever
    # the gateway would do about this call, it has done.
    twilio_line.wait_until(lambda: twilio_line.carrier_call(stranger)["callbacksDone"])
    rejected = twilio_line.carrier_call(stranger)
    assert rejected["rejected"] == 1 and rejected["hangups"] == 0
    assert rejected["heard"] == []

    friend = twilio_line.ring(ALLOWED)
    accepted = twilio_line.call_for(friend)
    assert accepted["from"] == ALLOWED
    twilio_line.wait_until(lambda: bool(twilio_line.carrier_call(friend)["heard"]))
    assert twilio_line.carrier_call(friend)["heard"][0] == GREETING
    # The simulated caller talks until it runs out of lines, then hangs up: Twilio says only
    # "completed", and a call we did not end was ended by the caller.
    call = twilio_line.gateway.wait_state(accepted["callId"], "hangup-user", timeout=30)
    said = [t["text"] for t in call["transcript"] if t["speaker"] == "user"]
    assert said == list(REPLIES)


def test_restart_reconciles_with_twilio_and_never_redials(twilio_line: TwilioLine) -> None:
    gateway = twilio_line.gateway
    placed = gateway.cli_json(
        "call", "--to", CALLEE, "--message", "Hi, got a minute?", "--mode", "conversation"
    )
    first = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Lunch?")
    assert first["transcript"] in REPLIES
    sid = gateway.cli_json("status", "--call-id", placed["callId"])["call"]["providerCallId"]

    reads_before = twilio_line.carrier_call(sid)["statusReads"]
    gateway.stop(signal.SIGKILL)
    gateway.start()

    # On start the gateway asked Twilio about the call; Twilio has it in progress, so it is kept.
    assert twilio_line.carrier_call(sid)["statusReads"] > reads_before
    restored = gateway.cli_json("status", "--call-id", placed["callId"])["call"]
    assert restored["state"] not in ("completed", "error", "hangup-bot", "timeout")
    assert twilio_line.carrier_call(sid)["status"] == "in-progress"
    again = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Noon?")
    assert again["success"] is True and again["transcript"] in REPLIES
    assert gateway.cli_json("end", "--call-id", placed["callId"]) == {"success": True}
    assert twilio_line.carrier()["dials"] == 1
    assert "Noon?" in twilio_line.carrier_call(sid)["heard"]
