"""``voicecall config check``: validate the file and show what the gateway would run with.

Every key is printed with its resolved value (secrets redacted) and where it came from: the
file, an environment variable, or the default. Nothing is started and nothing is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from voicecall.config import ConfigError, load_config, resolve_config_path
from voicecall.config_schema import SECTIONS, SchemaKey, is_secret, schema_keys

__all__ = ["config_report", "run_config_check"]

_REDACTED = "********"


def _present(document: Any, path: str) -> bool:
    node = document
    for part in _split(path):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _split(path: str) -> list[str]:
    # "plugins.entries.voice-call.config.serve.port": the plugin id holds no dots.
    return path.split(".")


def _read_document(path: str) -> Any:
    import json5

    try:
        with open(path, encoding="utf-8") as handle:
            return json5.load(handle)
    except (OSError, ValueError):
        return {}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _source(key: SchemaKey, document: Any, env: Mapping[str, str], value: Any) -> str:
    in_file = _present(document, key.path)
    if key.path.startswith("messages.tts."):
        # The plugin's tts block is merged over messages.tts.
        plugin_path = "plugins.entries.voice-call.config.tts." + key.path[len("messages.tts.") :]
        in_file = in_file or _present(document, plugin_path)
    if in_file:
        return "file"
    for name in key.env:
        if env.get(name):
            return f"env {name}"
    if value != key.default:
        return "file (resolved)"
    return "default"


def config_report(config_path: str | None, env: Mapping[str, str]) -> dict[str, Any]:
    """The resolved config as data: ``{"source", "valid", "error"?, "warnings", "keys"}``."""
    source = str(resolve_config_path(config_path, env))
    try:
        config = load_config(config_path, env)
        # serve also refuses a responseModel it cannot resolve (exit 2); say so here too.
        from voicecall.container import model_route

        model_route(config)
    except ConfigError as err:
        return {"source": source, "valid": False, "error": str(err), "warnings": [], "keys": []}
    document = _read_document(config.source)
    roots = {section: getattr(config, section) for section, _cls, _root in SECTIONS}
    section_of = {root: section for section, _cls, root in SECTIONS}
    keys = []
    for key in schema_keys():
        section = next(s for root, s in section_of.items() if key.path.startswith(root + "."))
        value: Any = roots[section]
        for name in key.attr_path:
            value = getattr(value, name, None)
        origin = _source(key, document, env, value)
        shown = _plain(value)
        if value is not None and is_secret(key.path.rsplit(".", 1)[-1]):
            shown = _REDACTED
        keys.append({"key": key.path, "value": shown, "from": origin})
    return {
        "source": config.source,
        "valid": True,
        "warnings": list(config.warnings),
        "keys": keys,
    }


def _text(report: Mapping[str, Any]) -> str:
    lines = [f"config: {report['source']}"]
    if not report["valid"]:
        lines.append(f"✗ invalid: {report['error']}")
        return "\n".join(lines) + "\n"
    lines.append("✓ valid")
    lines.extend(f"! {warning}" for warning in report["warnings"])
    width = max((len(k["key"]) for k in report["keys"]), default=0)
    for key in report["keys"]:
        value = json.dumps(key["value"]) if not isinstance(key["value"], str) else key["value"]
        if key["value"] is None:
            value = "-"
        lines.append(f"{key['key'].ljust(width)}  {value}  [{key['from']}]")
    return "\n".join(lines) + "\n"


def run_config_check(config_path: str | None, env: Mapping[str, str], *, as_json: bool) -> int:
    """Print the report; exit 0 when the config is valid, 2 when it is not."""
    report = config_report(config_path, env)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(_text(report))
    if not report["valid"]:
        print(f"voicecall: {report['error']}", file=sys.stderr)
        return 2
    return 0
