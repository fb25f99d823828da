"""A second ``voicecall serve`` on a store a running gateway owns is refused (exit 1, one line)
and changes nothing: the first gateway's live call stays as it was, nobody is dialled.

Found by starting a second gateway with other ports on the same ``store``: both restored the
same live call and both would have driven it (its speech, its timers).
"""

from __future__ import annotations

import subprocess
import sys

from .conftest import CALLEE, Gateway, write_config


def test_a_second_gateway_on_the_same_store_is_refused(gateway: Gateway) -> None:
    placed = gateway.cli_json(
        "call", "--to", CALLEE, "--message", "Are you there?", "--mode", "conversation"
    )
    gateway.wait_state(placed["callId"], "listening")
    assert gateway.mock_dials() == 1

    second = gateway.tmp / "second.json"
    write_config(second, gateway.store)  # other free ports, the same store
    result = subprocess.run(
        [sys.executable, "-m", "voicecall", "serve", "--config", str(second)],
        capture_output=True,
        text=True,
        timeout=120,
        env=gateway.env,
    )
    assert result.returncode == 1, result.stderr
    refusal = [line for line in result.stderr.splitlines() if line.startswith("voicecall: ")]
    assert refusal == [
        f"voicecall: the store {gateway.store} is in use by another voicecall gateway "
        f"(pid {gateway.process.pid if gateway.process else '?'}); stop it first, or give "
        "this one its own store"
    ]
    assert "Traceback" not in result.stderr

    status = gateway.cli_json("status", "--call-id", placed["callId"])
    assert status["call"]["state"] == "listening"
    assert gateway.mock_dials() == 1
    turn = gateway.cli_json("continue", "--call-id", placed["callId"], "--message", "Still there?")
    assert turn["success"] is True
