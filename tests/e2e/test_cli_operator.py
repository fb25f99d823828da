"""The CLI as an operator meets it (issue 12): global options anywhere, the exit-code table,
tail from now, ``call --follow``, and a clear word for an empty message."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import CALLEE, Gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path)
    gw.start(timeout=90)  # a loaded CI box can take a while to import the server
    yield gw
    if gw.process is not None:
        gw.stop()


def run(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with exactly these arguments (no --config appended)."""
    return subprocess.run(
        [sys.executable, "-m", "voicecall", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=gateway.env,
    )


def test_config_before_the_subcommand_is_honoured(gateway: Gateway) -> None:
    # Regression: `voicecall --config F list` used to talk to the default port.
    result = run(gateway, "--config", str(gateway.config_path), "list")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"calls": []}


def test_json_and_version_before_or_after_the_subcommand(gateway: Gateway) -> None:
    config = str(gateway.config_path)
    before = run(gateway, "--json", "--config", config, "list")
    after = run(gateway, "list", "--config", config, "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout) == {"calls": []}
    for args in (["--version"], ["list", "--version"]):
        version = run(gateway, *args)
        assert version.returncode == 0
        assert version.stdout.startswith("voicecall ")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["list"], 0),
        (["status", "--call-id", "missing"], 1),
        (["end", "--call-id", "missing"], 1),
        (["continue", "--call-id", "missing", "--message", "hi"], 1),
        (["call", "--to", "555", "--message", "hi"], 1),
        (["call", "--message", ""], 2),
        (["status"], 2),
        (["no-such-command"], 2),
    ],
)
def test_exit_code_table(gateway: Gateway, args: list[str], code: int) -> None:
    result = gateway.cli(*args)
    assert result.returncode == code, result.stderr
    if code:
        assert result.stderr.strip(), "a failure says why on stderr"


def test_unreachable_gateway_is_exit_3_and_bad_config_exit_2(gateway: Gateway) -> None:
    gateway.stop()
    result = gateway.cli("list")
    assert result.returncode == 3
    assert result.stderr.startswith("voicecall: the gateway is not running")
    gateway.config_path.write_text("{ plugins: 5 }")
    bad = gateway.cli("list")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "voicecall: plugins: expected an object"


def test_empty_message_says_what_is_wrong(gateway: Gateway) -> None:
    # Regression: --message "" used to come back as "missing parameter".
    result = gateway.cli("call", "--message", "")
    assert result.returncode == 2
    assert "--message: must not be empty" in result.stderr
    assert "missing parameter" not in result.stderr
    assert gateway.rpc("voicecall.initiate", {"message": "  "})["error"]["message"] == (
        "parameter 'message' must not be empty"
    )


@pytest.mark.timeout(60)
def test_tail_follows_from_now_and_since_replays(gateway: Gateway) -> None:
    # Regression: tail with no --since used to replay the whole history.
    old = gateway.cli_json("call", "--to", CALLEE, "--message", "old news")
    gateway.wait_state(old["callId"], "completed")
    tail = subprocess.Popen(
        [sys.executable, "-m", "voicecall", "tail", "--json", "--config", str(gateway.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=gateway.env,
    )
    try:
        assert tail.stdout is not None
        # Give the tail a moment to open its stream; events before that are not "from now".
        time.sleep(1.0)
        new = gateway.cli_json("call", "--to", CALLEE, "--message", "fresh")
        first = json.loads(tail.stdout.readline())
        assert first["callId"] == new["callId"], "no event of the old call is replayed"
    finally:
        tail.terminate()
        tail.wait(10)
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voicecall",
            "tail",
            "--since",
            "0",
            "--json",
            "--config",
            str(gateway.config_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=gateway.env,
    )
    try:
        assert replay.stdout is not None
        assert json.loads(replay.stdout.readline())["callId"] == old["callId"]
    finally:
        replay.terminate()
        replay.wait(10)


@pytest.mark.timeout(60)
def test_call_follow_prints_the_call_live_and_exits_0_when_completed(gateway: Gateway) -> None:
    result = gateway.cli("call", "--to", CALLEE, "--message", "Your order shipped.", "--follow")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    call_id = events[0]["placed"]["callId"]
    assert all(e["callId"] == call_id for e in events[1:])
    texts = [e["data"].get("text") for e in events if e.get("type") == "call.transcript"]
    assert "Your order shipped." in texts
    assert events[-1]["type"] == "call.state" and events[-1]["data"]["endReason"] == "completed"


@pytest.mark.timeout(60)
def test_call_follow_exits_1_when_the_call_fails(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, mock={"answerDelayMs": 50, "outcome": "busy"})
    gw.start(timeout=60)
    try:
        result = gw.cli("call", "--to", CALLEE, "--message", "hello", "--follow")
        assert result.returncode == 1
        last = json.loads(result.stdout.splitlines()[-1])
        assert last["data"]["endReason"] == "busy"
    finally:
        gw.stop()
