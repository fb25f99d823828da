"""``voicecall config check`` and ``voicecall doctor`` refuse what ``serve`` refuses.

Found: ``responseModel: "nope"`` (or a model whose key is missing) was "valid" to both, while
``voicecall serve`` exited 2 on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicecall.entrypoints.config_check import config_report
from voicecall.entrypoints.doctor import run_doctor


def _config(tmp_path: Path, **plugin: object) -> Path:
    path = tmp_path / "openclaw.json"
    config = {"enabled": True, "store": str(tmp_path / "store"), **plugin}
    path.write_text(json.dumps({"plugins": {"entries": {"voice-call": {"config": config}}}}))
    return path


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("nope", "expected \"provider/model\" (e.g. openai/gpt-4o-mini), got 'nope'"),
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini needs an API key: set OPENAI_API_KEY"),
    ],
)
def test_a_response_model_serve_refuses_is_invalid_everywhere(
    tmp_path: Path, model: str, error: str
) -> None:
    path = _config(tmp_path, responseModel=model)
    expected = f"plugins.entries.voice-call.config.responseModel: {error}"
    report = config_report(str(path), {})
    assert report["valid"] is False and report["error"] == expected
    doctor = run_doctor(str(path), {})
    assert doctor.ok is False
    assert [(c.name, c.ok, c.detail) for c in doctor.checks] == [("config", False, expected)]
    assert not (tmp_path / "store").exists()


def test_the_offline_responder_needs_no_key(tmp_path: Path) -> None:
    path = _config(tmp_path, responseModel="offline/rules")
    assert config_report(str(path), {})["valid"] is True
