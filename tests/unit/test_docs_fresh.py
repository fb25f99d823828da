"""docs/configuration.md is generated from the schema; a key added without regenerating fails."""

from __future__ import annotations

from pathlib import Path

from voicecall.config_docs import OPENCLAW_SECTION, PLUGIN_ROOT, render
from voicecall.config_schema import SECTIONS, schema_keys
from voicecall.openclaw_keys import OPENCLAW_KEYS

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


def _section_rows(text: str, heading: str) -> list[list[str]]:
    """The table rows (cells stripped, header and rule excluded) under one ``## heading``."""
    lines = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0].splitlines()
    table = [line for line in lines if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in table[1:]]


def test_every_openclaw_key_is_listed_with_its_status_and_nothing_else() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = _section_rows(text, OPENCLAW_SECTION)
    documented = [row[0].strip("`") for row in rows]
    assert documented == [key.path for key in OPENCLAW_KEYS]  # each once, none missing or extra
    for row, key in zip(rows, OPENCLAW_KEYS, strict=True):
        assert row[1:3] == [key.openclaw_default, key.status], row
        assert row[3] == key.note.replace("|", "\\|"), row


def test_the_plugin_table_has_an_openclaw_column_agreeing_with_openclaw_keys() -> None:
    text = DOC.read_text(encoding="utf-8")
    rows = _section_rows(text, f"`{PLUGIN_ROOT}`")
    header = text.split(f"\n## `{PLUGIN_ROOT}`\n", 1)[1].split("\n|---", 1)[0].strip()
    assert header.endswith("| OpenClaw |")
    status = {key.path: key.status for key in OPENCLAW_KEYS}
    column = {row[0].strip("`"): row[-1] for row in rows}
    ours = {
        key.path[len(PLUGIN_ROOT) + 1 :]
        for key in schema_keys()
        if key.path.startswith(PLUGIN_ROOT)
    }
    assert set(column) == ours
    for path, shown in column.items():
        # A key inside an object OpenClaw takes whole (tts.*) shows the object's status.
        parts = path.split(".")
        owners = [".".join(parts[:end]) for end in range(len(parts), 0, -1)]
        expected = next((status[p] for p in owners if p in status), "—")
        assert shown == expected, (path, shown, expected)
    # Every OpenClaw leaf our schema has is marked, and ours-only keys are marked as such.
    assert column["webhookSecurity.trustedProxyIPs"] == "used"
    assert column["stt.model"] == "inert"
    assert column["twilio.apiBaseUrl"] == "—"
