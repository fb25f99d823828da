"""``voicecall doctor``'s store check agrees with what ``serve`` can do.

Found: with ``store`` under a regular (executable) file, doctor said "does not exist yet;
serve will create it" while serve could not (it now exits 2 naming ``store``).
"""

from __future__ import annotations

import json
from pathlib import Path

from voicecall.config import load_config
from voicecall.entrypoints.doctor import check_store


def _config(tmp_path: Path, store: Path) -> Path:
    path = tmp_path / "openclaw.json"
    plugin = {"enabled": True, "store": str(store)}
    path.write_text(json.dumps({"plugins": {"entries": {"voice-call": {"config": plugin}}}}))
    return path


def test_a_store_under_a_regular_file_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-file").chmod(0o755)  # writable and "executable": access() alone says yes
    store = tmp_path / "a-file" / "store"
    check = check_store(load_config(_config(tmp_path, store), {}))
    assert check.ok is False
    assert (
        check.detail
        == f"{store} does not exist and {tmp_path / 'a-file'} is not a writable directory"
    )
    assert not store.exists()


def test_a_store_that_serve_can_create_passes(tmp_path: Path) -> None:
    store = tmp_path / "new" / "store"
    check = check_store(load_config(_config(tmp_path, store), {}))
    assert check.ok is True
    assert "serve will create it" in check.detail
    assert not store.exists()
