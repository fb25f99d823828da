"""End to end through ``voicecall serve`` and the real CLI: pairing an unknown caller on the mock
carrier, and the outbound refusal of a gateway with no public webhook URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicecall.entrypoints.tool import VOICE_CALL_TOOL_SCHEMA

from .conftest import CALLEE, Gateway, free_port

pytestmark = pytest.mark.e2e

UNKNOWN = "+15559990001"


def test_pairing_call_code_approve_call_again_answered(tmp_path: Path) -> None:
    gateway = Gateway(tmp_path, inboundPolicy="pairing", mock={"answerDelayMs": 50})
    gateway.start(timeout=90)
    try:
        first = gateway.cli_json("simulate", "inbound", "--from", UNKNOWN)
        assert first["accepted"] is True
        call = gateway.wait_state(first["callId"], "completed", timeout=30)
        [pending] = gateway.cli_json("pairing", "list")["pending"]
        assert pending["from"] == UNKNOWN and pending["callId"] == first["callId"]
        code = pending["code"]
        spaced = ", ".join(code)
        [said] = [line["text"] for line in call["transcript"] if line["speaker"] == "bot"]
        assert said.count(spaced) == 2  # the code, read digit by digit, twice

        # Not the model's to decide: the voice_call tool (also what MCP serves) has no pairing.
        assert "pairing" not in json.dumps(VOICE_CALL_TOOL_SCHEMA)

        wrong = gateway.cli("pairing", "approve", "000000" if code != "000000" else "111111")
        assert wrong.returncode == 1
        assert "no pending pairing request has code" in wrong.stderr
        assert gateway.cli("pairing", "approve", "12ab").returncode == 1

        approved = gateway.cli_json("pairing", "approve", code)
        assert approved["approved"] is True and approved["request"]["from"] == UNKNOWN
        again = gateway.cli("pairing", "approve", code)  # single use
        assert again.returncode == 1

        listing = gateway.cli_json("pairing", "list")
        assert listing["pending"] == []
        assert [a["number"] for a in listing["approved"]] == [UNKNOWN]
        store_file = gateway.store / "pairing.json"
        assert store_file.stat().st_mode & 0o777 == 0o600
        assert UNKNOWN not in gateway.config_path.read_text()  # never written to the config

        second = gateway.cli_json("simulate", "inbound", "--from", UNKNOWN)
        # The mock caller talks, then hangs up when out of lines: answered, greeted, no code.
        answered = gateway.wait_state(second["callId"], "hangup-user", timeout=60)
        assert answered["answeredAt"] is not None and answered["endDetail"] is None
        bot = [line["text"] for line in answered["transcript"] if line["speaker"] == "bot"]
        assert bot[0] == "Hello! How can I help you today?"
        assert not any(spaced in line for line in bot)
    finally:
        gateway.stop()


def test_no_public_url_refuses_outbound_calls_clearly(tmp_path: Path) -> None:
    gateway = Gateway(
        tmp_path,
        provider="twilio",
        twilio={
            "accountSid": "AC" + "4" * 32,
            "authToken": "e2e-token",
            # Never reached: the call is refused before anything is dialled.
            "apiBaseUrl": f"http://127.0.0.1:{free_port()}",
        },
    )
    gateway.start(timeout=90)
    try:
        answer = gateway.rpc("voicecall.initiate", {"to": CALLEE, "message": "Hello"})
        assert answer == {
            "ok": False,
            "error": {
                "code": "not_reachable",
                "message": "no public webhook URL: set publicUrl or tunnel.provider",
            },
        }
        result = gateway.cli("call", "--to", CALLEE, "--message", "Hello")
        assert result.returncode == 1
        assert result.stderr.strip() == (
            "voicecall: no public webhook URL: set publicUrl or tunnel.provider (not_reachable)"
        )
        assert gateway.cli_json("list")["calls"] == []
    finally:
        gateway.stop()
