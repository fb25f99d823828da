"""``voicecall expose`` against a stand-in ``tailscale`` that records what it was asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAKE = """#!/bin/sh
echo "$@" >> "{log}"
if [ "$1" = "status" ]; then echo '{{"Self": {{"DNSName": "box.tail1234.ts.net."}}}}'; fi
exit {code}
"""


def run(tmp_path: Path, mode: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "tailscale"
    fake.write_text(FAKE.format(log=tmp_path / "calls.log", code=code))
    fake.chmod(0o755)
    config = tmp_path / "openclaw.json"
    config.write_text(
        json.dumps({"plugins": {"entries": {"voice-call": {"config": {"serve": {"port": 4444}}}}}})
    )
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "voicecall", "expose", "--mode", mode, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


@pytest.mark.parametrize("mode", ["serve", "funnel"])
def test_publishes_only_the_webhook_path(tmp_path: Path, mode: str) -> None:
    result = run(tmp_path, mode)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["publicUrl"] == "https://box.tail1234.ts.net/voice/webhook"
    assert "publicUrl" in answer["hint"]
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert (
        calls[0]
        == f"{mode} --bg --yes --set-path=/voice/webhook http://127.0.0.1:4444/voice/webhook"
    )


def test_off_withdraws_the_path(tmp_path: Path) -> None:
    result = run(tmp_path, "off")
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == ["funnel --set-path=/voice/webhook off", "serve --set-path=/voice/webhook off"]


def test_tailscale_failure_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "funnel", code=1)
    assert result.returncode == 1
    assert result.stderr.startswith("voicecall: tailscale funnel failed")
    assert result.stderr.count("\n") == 1


def test_missing_tailscale(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "voicecall", "expose", "--mode", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 1
    assert "tailscale is not installed" in result.stderr
