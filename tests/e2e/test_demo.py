"""The demo a newcomer runs: every carrier's tour ends with all four calls as expected."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
@pytest.mark.parametrize("carrier", ["mock", "twilio", "telnyx", "plivo"])
def test_demo_tour(carrier: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voicecall", "demo", "--carrier", carrier],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "All four calls behaved as expected." in result.stdout
    assert "bot says: 'Hello! How can I help you today?'" in result.stdout
    assert "rejected: caller is not in allowFrom" in result.stdout
