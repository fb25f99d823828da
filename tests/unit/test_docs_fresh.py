"""docs/configuration.md is generated from the schema; a key added without regenerating fails."""

from __future__ import annotations

from pathlib import Path

from voicecall.config_docs import render
from voicecall.config_schema import SECTIONS, schema_keys

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_doc_is_fresh() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run "
        "`.venv/bin/python -m voicecall.config_docs > docs/configuration.md`"
    )


def test_every_key_and_env_fallback_is_documented() -> None:
    text = render()
    roots = [root for _section, _cls, root in SECTIONS]
    for key in schema_keys():
        root = next(r for r in roots if key.path.startswith(r + "."))
        assert f"| `{key.path[len(root) + 1 :]}` |" in text
        for name in key.env:
            assert f"`{name}`" in text
    assert "`TWILIO_AUTH_TOKEN`" in text and "`serve.port`" in text
