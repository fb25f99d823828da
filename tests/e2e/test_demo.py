"""The demo a newcomer runs, judged from outside: every carrier's tour leaves four calls that a
fresh gateway on the demo's store reports, over RPC, exactly as the tour promised.

The demo's own summary and ``_judge()`` are not trusted here; the demo keeps its files
(``--keep``), a new ``voicecall serve`` is started on them, and the calls are read back with
``voicecall list`` / ``status``, the same way an operator would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

FRIEND = "+15551230001"
STRANGER = "+15559990000"
CALLEE = "+15557654321"
GREETING = "Hello! How can I help you today?"


def cli(config: Path, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "voicecall", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    document = json.loads(config.read_text())
    port = document["gateway"]["port"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "voicecall", "serve", "--config", str(config)],
            stdout=out,
            stderr=out,
        )
    while True:  # bounded by the test's timeout
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            pass


@pytest.mark.timeout(240)
@pytest.mark.parametrize("carrier", ["mock", "twilio", "telnyx", "plivo"])
def test_demo_tour(carrier: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voicecall", "demo", "--carrier", carrier, "--keep"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r"files in (\S+)", result.stdout)
    assert found, result.stdout[-3000:] + result.stderr[-3000:]
    directory = Path(found.group(1))
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        config = directory / "openclaw.json"
        gateway = serve(config, directory / "judge-serve.log")
        try:
            calls = cli(config, "list")["calls"]
            judge(config, calls)
        finally:
            gateway.terminate()
            assert gateway.wait(10) == 0, (directory / "judge-serve.log").read_text()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def judge(config: Path, calls: list[dict[str, Any]]) -> None:
    # `list` is newest first; the tour placed notify, conversation, friend, stranger.
    assert len(calls) == 4, calls
    ids = [c["callId"] for c in reversed(calls)]
    notify, conversation, friend, stranger = (cli(config, "status", "--call-id", i) for i in ids)
    assert all(s["found"] for s in (notify, conversation, friend, stranger))
    notify, conversation, friend, stranger = (
        s["call"] for s in (notify, conversation, friend, stranger)
    )

    assert (notify["direction"], notify["mode"], notify["to"]) == ("outbound", "notify", CALLEE)
    assert notify["state"] == "completed"
    assert [t["speaker"] for t in notify["transcript"]] == ["bot"]

    assert (conversation["direction"], conversation["mode"]) == ("outbound", "conversation")
    assert conversation["state"] == "hangup-bot"
    speakers = [t["speaker"] for t in conversation["transcript"]]
    assert speakers.count("user") >= 2, conversation["transcript"]
    assert speakers[0] == "bot"

    assert (friend["direction"], friend["from"]) == ("inbound", FRIEND)
    assert friend["state"] in {"completed", "hangup-user", "hangup-bot"}
    assert friend["transcript"][0] == {
        "speaker": "bot",
        "text": GREETING,
        "at": friend["transcript"][0]["at"],
    }

    assert (stranger["direction"], stranger["from"]) == ("inbound", STRANGER)
    assert stranger["state"] == "hangup-bot"
    assert stranger["transcript"] == []
    assert "allowFrom" in (stranger["endDetail"] or "")
