"""Start-up mistakes a newcomer or operator makes are one line and exit 2, not a traceback:
a store directory that cannot be made (found pointing ``store`` under ``/proc``), and
``voicecall serve`` before any config file exists (README "Using it" on a fresh machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Gateway, write_config


@pytest.mark.parametrize(
    ("relative", "why"),
    [("a-file", "it is not a directory"), ("a-file/store", "Not a directory")],
    ids=["store-is-a-file", "parent-is-a-file"],
)
def test_a_store_that_cannot_be_made_exits_2_naming_the_key(
    tmp_path: Path, relative: str, why: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    store = tmp_path / relative
    gw = Gateway(tmp_path)
    write_config(gw.config_path, store)
    result = gw.cli("serve")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("voicecall: ")]
    assert errors == [
        f"voicecall: plugins.entries.voice-call.config.store: cannot use {str(store)!r} as the "
        f"store: {why}"
    ]
    assert (tmp_path / "a-file").read_text() == "not a directory\n"


def test_serve_with_no_config_file_says_how_to_write_one(tmp_path: Path) -> None:
    # README "Using it" on a fresh machine, before any config exists: the default path.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "voicecall", "serve"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    default = tmp_path / ".openclaw" / "openclaw.json"
    errors = [line for line in result.stderr.splitlines() if line.startswith("voicecall: ")]
    assert errors == [
        f"voicecall: no config file at {default}: write one with "
        'plugins.entries.voice-call.config.enabled: true (README "Configuration" has a minimal '
        "one for the mock carrier), or pass --config PATH"
    ]
    assert not (tmp_path / ".openclaw").exists()
