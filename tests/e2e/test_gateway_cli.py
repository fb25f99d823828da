"""End to end: ``voicecall serve`` in a subprocess, driven by the real CLI over RPC."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import ALLOWED, CALLEE, REPLIES, Gateway, write_config

pytestmark = pytest.mark.e2e


def test_notify_call_completes_with_the_message_in_the_transcript(gateway: Gateway) -> None:
    placed = gateway.cli_json("call", "--to", CALLEE, "--message", "Your order shipped.")
    assert placed["initiated"] is True
    call = gateway.wait_state(placed["callId"], "completed")
    assert call["endReason"] == "completed"
    assert [(t["speaker"], t["text"]) for t in call["transcript"]] == [
        ("bot", "Your order shipped.")
    ]
    status = gateway.cli_json("status", "--call-id", placed["callId"])
    assert status["found"] is True
    assert set(status["call"]) >= {
        "callId",
        "provider",
        "providerCallId",
        "direction",
        "state",
        "from",
        "to",
        "mode",
        "startedAt",
        "answeredAt",
        "endedAt",
        "endReason",
        "transcript",
    }
    assert status["call"]["direction"] == "outbound"
    assert status["call"]["mode"] == "notify"


def test_conversation_continue_then_end(gateway: Gateway) -> None:
    placed = gateway.cli_json(
        "call", "--to", CALLEE, "--message", "Hi, got a minute?", "--mode", "conversation"
    )
    turn = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Lunch?")
    assert turn["success"] is True
    assert turn["transcript"] in REPLIES
    spoke = gateway.cli_json("speak", "--call-id", placed["callId"], "--message", "Noted.")
    assert spoke == {"success": True}
    assert gateway.cli_json("end", "--call-id", placed["callId"]) == {"success": True}
    call = gateway.cli_json("status", "--call-id", placed["callId"])["call"]
    assert call["state"] == "hangup-bot"
    lines = [(t["speaker"], t["text"]) for t in call["transcript"]]
    assert lines[0] == ("bot", "Hi, got a minute?")
    # The reply continue returned is the caller's first line after the prompt.
    after_prompt = lines[lines.index(("bot", "Lunch?")) + 1 :]
    assert next(text for who, text in after_prompt if who == "user") == turn["transcript"]
    assert ("bot", "Noted.") in lines
    listed = gateway.cli_json("list")
    assert [c["callId"] for c in listed["calls"]] == [placed["callId"]]
    assert gateway.cli_json("list", "--active") == {"calls": []}


def test_unknown_call_id(gateway: Gateway) -> None:
    # Not found is exit 1 for status too (issue 12), and scripts still get {"found": false}.
    result = gateway.cli("status", "--call-id", "no-such-call")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"found": False, "call": None}
    result = gateway.cli("end", "--call-id", "no-such-call")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "no call with id" in result.stderr


def test_second_live_call_is_refused(gateway: Gateway) -> None:
    gateway.cli_json("call", "--to", CALLEE, "--message", "one", "--mode", "conversation")
    result = gateway.cli("call", "--to", CALLEE, "--message", "two")
    assert result.returncode == 1
    assert "maxConcurrentCalls" in result.stderr
    assert result.stdout == ""


def test_bad_number_is_refused(gateway: Gateway) -> None:
    result = gateway.cli("call", "--to", "555-0100", "--message", "hi")
    assert result.returncode == 1
    assert "E.164" in result.stderr
    assert gateway.cli_json("list") == {"calls": []}


def test_rpc_needs_the_token(gateway: Gateway) -> None:
    body = {"method": "voicecall.list", "params": {}}
    assert httpx.post(f"{gateway.url}/rpc", json=body).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    response = httpx.post(f"{gateway.url}/rpc", json=body, headers=wrong)
    assert response.status_code == 401
    assert response.json()["ok"] is False
    right = {"Authorization": f"Bearer {gateway.token()}"}
    assert httpx.post(f"{gateway.url}/rpc", json=body, headers=right).json() == {
        "ok": True,
        "payload": {"calls": []},
    }
    token_file = gateway.store / "gateway-token"
    assert token_file.stat().st_mode & 0o777 == 0o600


def test_rpc_bad_requests_are_clear_errors(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.token()}"}
    garbage = httpx.post(f"{gateway.url}/rpc", content=b"{not json", headers=headers)
    assert garbage.status_code == 400
    unknown = gateway.rpc("voicecall.nope", {})
    assert unknown["error"]["code"] == "method_not_found"
    wrong_type = gateway.rpc("voicecall.initiate", {"message": 5})
    assert wrong_type["ok"] is False and "string" in wrong_type["error"]["message"]


def test_inbound_allowlisted_is_answered_and_stranger_rejected(gateway: Gateway) -> None:
    accepted = gateway.cli_json("simulate", "inbound", "--from", ALLOWED)
    assert accepted["accepted"] is True
    call = gateway.wait_state(accepted["callId"], "hangup-user", timeout=15)
    assert call["transcript"][0] == {
        "speaker": "bot",
        "text": "Hello! How can I help you today?",
        "at": call["transcript"][0]["at"],
    }
    assert any(t["speaker"] == "user" for t in call["transcript"])
    rejected = gateway.cli_json("simulate", "inbound", "--from", "+15559990000")
    assert rejected["accepted"] is False
    assert rejected["call"]["state"] == "hangup-bot"
    assert rejected["call"]["transcript"] == []


@pytest.mark.timeout(60)
def test_tail_follows_events_and_does_not_hold_up_shutdown(gateway: Gateway) -> None:
    placed = gateway.cli_json("call", "--to", CALLEE, "--message", "tail me")
    gateway.wait_state(placed["callId"], "completed")
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicecall",
            "tail",
            "--since",
            "0",
            "--config",
            str(gateway.config_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=gateway.env,
    )
    try:
        assert tail.stdout is not None
        lines = []
        # No deadline of our own: readline() cannot time out, the test's timeout bounds it.
        for line in tail.stdout:
            lines.append(json.loads(line))
            if lines[-1]["data"].get("state") == "completed":
                break
        types = [event["type"] for event in lines]
        assert types[0] == "call.created"
        assert "call.transcript" in types
        assert lines[-1]["data"]["state"] == "completed"
        assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
        # The tail is still attached to an idle feed. SIGTERM must still end serve by itself
        # with exit code 0 (stop() fails the test on a SIGKILL escalation or another code),
        # and the tail sees its stream end and exits cleanly.
        assert gateway.stop(signal.SIGTERM) == 0
        assert tail.wait(10) == 0, tail.stderr.read() if tail.stderr else ""
        assert "state flushed" in gateway.log_path.read_text()
    finally:
        if tail.poll() is None:
            tail.terminate()
            tail.wait(5)


def test_cli_without_a_gateway_says_so(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    result = gw.cli("status", "--call-id", "x")
    assert result.returncode == 3  # unreachable has its own exit code (issue 12)
    assert result.stderr.startswith("voicecall: the gateway is not running")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").glob("*.sqlite3"))


def test_bad_config_exits_2_naming_the_path(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    write_config(gw.config_path, gw.store, serve={"port": "3334"})
    result = gw.cli("serve")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "voicecall: plugins.entries.voice-call.config.serve.port: expected an integer"
    )
    assert not gw.store.exists()


def test_skipping_signatures_on_a_public_bind_is_refused(tmp_path: Path) -> None:
    gw = Gateway(tmp_path)
    write_config(
        gw.config_path,
        gw.store,
        skipSignatureVerification=True,
        serve={"bind": "0.0.0.0", "port": 3334},
    )
    result = gw.cli("serve")
    assert result.returncode == 2
    assert "skipSignatureVerification: only allowed when serve.bind is a loopback" in result.stderr


def test_skipping_signatures_is_announced_loudly(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, skipSignatureVerification=True)
    gw.start()
    gw.stop()
    assert "skipSignatureVerification is ON" in gw.log_path.read_text()


def test_sigterm_shuts_down_cleanly(gateway: Gateway) -> None:
    assert gateway.stop(signal.SIGTERM) == 0
    assert "state flushed" in gateway.log_path.read_text()


def test_restart_after_sigkill_keeps_the_call_and_never_redials(gateway: Gateway) -> None:
    placed = gateway.cli_json(
        "call", "--to", CALLEE, "--message", "Before the crash.", "--mode", "conversation"
    )
    gateway.wait_state(placed["callId"], "listening")
    assert gateway.mock_dials() == 1
    gateway.stop(signal.SIGKILL)
    gateway.start()
    status = gateway.cli_json("status", "--call-id", placed["callId"])
    assert status["found"] is True
    assert status["call"]["state"] == "listening"  # the carrier says live: kept
    assert status["call"]["transcript"][0]["text"] == "Before the crash."
    turn = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Still there?")
    assert turn["success"] is True
    assert gateway.mock_dials() == 1  # nobody was dialled again
    listed = gateway.cli_json("list")
    assert len(listed["calls"]) == 1
    events = gateway.rpc("voicecall.list", {"active": True})["payload"]["calls"]
    assert [c["callId"] for c in events] == [placed["callId"]]
