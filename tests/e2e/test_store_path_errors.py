"""A store directory that cannot be made is a configuration error naming ``store`` (exit 2),
not a traceback. Found by pointing ``store`` at a path under ``/proc``."""

from __future__ import annotations

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
