"""End to end with Plivo: ``voicecall serve`` and the simulated Plivo as two real processes
speaking Plivo's wire format (REST + signed webhooks + XML) over loopback, driven by the CLI."""

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

AUTH_ID = "MAE2EPLIVOACCOUNT001"
AUTH_TOKEN = "e2e-plivo-token"
REPLIES = ("Yes, I have a minute.", "Noon works for me.", "See you then.", "Bye!")
GREETING = "Hello! How can I help you today?"


class PlivoRig:
    """The simulated Plivo as a subprocess, and a gateway pointed at it."""

    def __init__(self, tmp: Path) -> None:
        self.sim_port = free_port()
        serve_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.public_url = f"http://127.0.0.1:{serve_port}/voice/webhook"
        self.gateway = Gateway(
            tmp,
            provider="plivo",
            plivo={"authId": AUTH_ID, "authToken": AUTH_TOKEN, "apiBaseUrl": self.sim_url},
            publicUrl=self.public_url,
            serve={"port": serve_port, "bind": "127.0.0.1", "path": "/voice/webhook"},
        )
        self.sim_log_path = tmp / "plivo-sim.log"
        self.sim: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.sim_log_path.open("ab")
        self.sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voicecall.testing.plivo_sim",
                "--port",
                str(self.sim_port),
                "--webhook-url",
                self.public_url,
                "--auth-id",
                AUTH_ID,
                "--auth-token",
                AUTH_TOKEN,
                "--answer-delay-ms",
                "100",
                "--reply-delay-ms",
                "300",
                "--replies",
                *REPLIES,
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.sim_url}/_sim/calls", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.sim.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"plivo sim did not come up:\n{self.sim_log_path.read_text()}")
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
            self.sim = None

    def carrier(self) -> dict[str, Any]:
        state: dict[str, Any] = httpx.get(f"{self.sim_url}/_sim/calls", timeout=5).json()
        return state

    def requests(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.sim_url}/_sim/requests", timeout=5).json()
        return list(answer["requests"])

    def sim_call(self, provider_call_id: str) -> dict[str, Any]:
        for call in self.carrier()["calls"]:
            if provider_call_id in (call["callUuid"], call["requestUuid"]):
                return dict(call)
        raise AssertionError(f"the simulator has no call {provider_call_id}")

    def ring(self, from_number: str) -> str:
        response = httpx.post(
            f"{self.sim_url}/_sim/inbound", json={"from": from_number, "to": "+15550100000"}
        )
        assert response.status_code == 202, response.text
        call_uuid: str = response.json()["callUuid"]
        return call_uuid

    def our_call_for(self, call_uuid: str, within: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for call in self.gateway.cli_json("list")["calls"]:
                if call["providerCallId"] == call_uuid:
                    return dict(call)
            if time.monotonic() > deadline:
                raise AssertionError(f"no call for {call_uuid}")
            time.sleep(0.05)

    def wait_for(self, predicate: Any, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.05)


@pytest.fixture
def plivo(tmp_path: Path) -> Iterator[PlivoRig]:
    rig = PlivoRig(tmp_path)
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()


def test_notify_call_completes_and_the_callee_heard_it(plivo: PlivoRig) -> None:
    gw = plivo.gateway
    placed = gw.cli_json("call", "--to", CALLEE, "--message", "Your order shipped.")
    call = gw.wait_state(placed["callId"], "completed")
    assert call["provider"] == "plivo" and call["endReason"] == "completed"
    sim_call = plivo.sim_call(call["providerCallId"])
    assert sim_call["heard"] == ["Your order shipped."]
    [played] = sim_call["played"]
    assert played["whole"] and played["endedAt"] > played["startedAt"]  # heard whole, then hung up
    assert sim_call["endedAt"] >= played["endedAt"]
    assert sim_call["to"] == CALLEE.lstrip("+")
    # The request_uuid was replaced by the call's own CallUUID from the first webhook.
    assert call["providerCallId"] == sim_call["callUuid"] != sim_call["requestUuid"]
    assert plivo.carrier()["dials"] == 1


def test_two_turn_conversation_via_continue(plivo: PlivoRig) -> None:
    gw = plivo.gateway
    placed = gw.cli_json(
        "call", "--to", CALLEE, "--message", "Hi, got a minute?", "--mode", "conversation"
    )
    first = gw.cli_json("continue", "--call-id", placed["callId"], "--message", "Lunch today?")
    assert first["success"] is True and first["transcript"] in REPLIES
    second = gw.cli_json("continue", "--call-id", placed["callId"], "--message", "At noon?")
    assert second["success"] is True and second["transcript"] in REPLIES
    assert REPLIES.index(second["transcript"]) > REPLIES.index(first["transcript"])
    assert gw.cli_json("end", "--call-id", placed["callId"]) == {"success": True}
    call = gw.cli_json("status", "--call-id", placed["callId"])["call"]
    assert call["state"] == "hangup-bot"
    heard = plivo.sim_call(call["providerCallId"])["heard"]
    assert heard[0] == "Hi, got a minute?"
    assert "Lunch today?" in heard and "At noon?" in heard
    lines = [(t["speaker"], t["text"]) for t in call["transcript"]]
    assert ("user", first["transcript"]) in lines and ("user", second["transcript"]) in lines


def test_inbound_allowlisted_is_greeted_and_a_stranger_rejected_once(plivo: PlivoRig) -> None:
    gw = plivo.gateway
    welcome_uuid = plivo.ring(ALLOWED)
    welcome = plivo.our_call_for(welcome_uuid)
    assert welcome["direction"] == "inbound" and welcome["from"] == ALLOWED
    done = gw.wait_state(welcome["callId"], "hangup-user", timeout=20)
    assert done["transcript"][0]["text"] == GREETING
    assert any(t["speaker"] == "user" for t in done["transcript"])
    assert plivo.sim_call(welcome_uuid)["heard"][0] == GREETING

    stranger_uuid = plivo.ring("+15559990000")
    stranger = plivo.our_call_for(stranger_uuid)
    final = gw.wait_state(stranger["callId"], "hangup-bot")
    assert (final.get("endDetail") or "").startswith("rejected")
    plivo.wait_for(lambda: plivo.sim_call(stranger_uuid)["status"] == "ended")
    sim_call = plivo.sim_call(stranger_uuid)
    assert sim_call["rejected"] == 1 and sim_call["hangups"] == 0
    assert sim_call["heard"] == []


def test_restart_after_sigkill_reconciles_with_plivo_and_never_redials(plivo: PlivoRig) -> None:
    gw = plivo.gateway
    placed = gw.cli_json(
        "call", "--to", CALLEE, "--message", "Before the crash.", "--mode", "conversation"
    )
    # Mid-conversation: the callee has answered the first prompt and the call idles on
    # Plivo's side, kept up by our XML.
    plivo.wait_for(
        lambda: any(
            t["speaker"] == "user"
            for t in gw.rpc("voicecall.status", {"callId": placed["callId"]})["payload"]["call"][
                "transcript"
            ]
        )
    )
    gw.stop(signal.SIGKILL)
    before = len(plivo.requests())
    gw.start()
    call_uuid = gw.cli_json("status", "--call-id", placed["callId"])["call"]["providerCallId"]
    asked = [
        r
        for r in plivo.requests()[before:]
        if r["method"] == "GET" and r["path"].endswith(f"/Call/{call_uuid}/")
    ]
    assert asked and asked[0]["query"] == {"status": "live"}  # reconciled through Plivo
    status = gw.cli_json("status", "--call-id", placed["callId"])
    assert status["found"] is True
    assert status["call"]["state"] == "listening"  # Plivo says the call is live: kept
    turn = gw.cli_json("continue", "--call-id", placed["callId"], "--message", "Still there?")
    assert turn["success"] is True and turn["transcript"] in REPLIES
    carrier = plivo.carrier()
    assert carrier["dials"] == 1  # nobody was dialled again
    heard = plivo.sim_call(status["call"]["providerCallId"])["heard"]
    assert heard[0] == "Before the crash." and "Still there?" in heard
    assert [c["callId"] for c in gw.cli_json("list", "--active")["calls"]] == [placed["callId"]]
