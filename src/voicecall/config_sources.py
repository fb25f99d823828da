"""What OpenClaw's config loader does before any key is checked: ``$include``, env, ``${VAR}``.

A file migrated from OpenClaw must mean the same thing here, so a document is resolved the way
OpenClaw resolves it (https://docs.openclaw.ai/environment and its configuration page):

* ``$include``: a path or a list of paths, relative to the file that names it and never outside
  the top-level config's directory; each included document is resolved in turn (at most 10
  deep, no cycles). A list merges in order; keys next to ``$include`` merge over what it brought.
  Merging is deep: objects key by key, arrays concatenate, anything else is replaced.
* The environment, highest first, never overriding a value already set: the process, ``.env``
  in the working directory, ``~/.openclaw/.env`` (``$OPENCLAW_STATE_DIR/.env``), then the
  config's top-level ``env`` block (``env.vars.*`` and the block's own string keys).
* ``${VAR}`` in any string value is replaced by that variable (only ``[A-Z_][A-Z0-9_]*`` names;
  ``$${VAR}`` stays a literal ``${VAR}``). A variable that is unset or empty stops the start with
  the path of the value and the variable's name.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any, Final

import json5

__all__ = [
    "ConfigSourceError",
    "apply_env_block",
    "merge_documents",
    "read_dotenv",
    "resolve_document",
    "resolve_includes",
    "substitute_env",
]

INCLUDE_KEY: Final = "$include"
MAX_INCLUDE_DEPTH: Final = 10
MAX_INCLUDE_BYTES: Final = 2 * 1024 * 1024
_REFERENCE: Final = re.compile(r"\$(\$?)\{([A-Z_][A-Z0-9_]*)\}")
_DOTENV_LINE: Final = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)\s*")


class ConfigSourceError(Exception):
    """The document cannot be resolved; ``path`` is the JSON path or the file at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def merge_documents(base: Any, over: Any) -> Any:
    """OpenClaw's include merge: objects key by key, arrays concatenated, else ``over`` wins."""
    if isinstance(base, list) and isinstance(over, list):
        return [*base, *over]
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = merge_documents(merged[key], value) if key in merged else value
        return merged
    return over


def _inside(root: pathlib.Path, candidate: pathlib.Path) -> bool:
    try:
        candidate.relative_to(root)
    except ValueError:
        return False
    return True


def _load_include(
    raw: str, base_file: pathlib.Path, root: pathlib.Path, chain: tuple[pathlib.Path, ...]
) -> Any:
    target = pathlib.Path(os.path.normpath(base_file.parent / pathlib.Path(raw).expanduser()))
    where = f"{base_file}: {INCLUDE_KEY} {raw!r}"
    if not _inside(root, target) or not _inside(root.resolve(), target.resolve()):
        raise ConfigSourceError(where, f"escapes the config directory {root}")
    if target in chain:
        cycle = " -> ".join(str(p) for p in (*chain, target))
        raise ConfigSourceError(where, f"circular include: {cycle}")
    if len(chain) > MAX_INCLUDE_DEPTH:
        raise ConfigSourceError(where, f"includes nest more than {MAX_INCLUDE_DEPTH} deep")
    try:
        if target.stat().st_size > MAX_INCLUDE_BYTES:
            raise ConfigSourceError(where, f"larger than {MAX_INCLUDE_BYTES} bytes")
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigSourceError(where, f"cannot read {target}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigSourceError(where, f"{target} is not UTF-8 text") from None
    try:
        parsed = json5.loads(text)
    except ValueError as exc:
        raise ConfigSourceError(where, f"invalid JSON5 in {target}: {exc}") from None
    return _resolve(parsed, target, root, (*chain, target))


def _resolve(
    value: Any, file: pathlib.Path, root: pathlib.Path, chain: tuple[pathlib.Path, ...]
) -> Any:
    if isinstance(value, list):
        return [_resolve(item, file, root, chain) for item in value]
    if not isinstance(value, Mapping):
        return value
    if INCLUDE_KEY not in value:
        return {key: _resolve(item, file, root, chain) for key, item in value.items()}
    spec = value[INCLUDE_KEY]
    paths = [spec] if isinstance(spec, str) else spec
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ConfigSourceError(
            f"{file}: {INCLUDE_KEY}", "expected a file path or a list of file paths"
        )
    included: Any = {} if isinstance(spec, list) else None
    for raw in paths:
        loaded = _load_include(raw, file, root, chain)
        included = loaded if included is None else merge_documents(included, loaded)
    rest = {k: _resolve(v, file, root, chain) for k, v in value.items() if k != INCLUDE_KEY}
    if not rest:
        return included
    if not isinstance(included, Mapping):
        raise ConfigSourceError(
            f"{file}: {INCLUDE_KEY}", "keys beside $include need the included file to be an object"
        )
    return merge_documents(included, rest)


def resolve_includes(document: Any, file: pathlib.Path) -> Any:
    """Replace every ``$include`` in ``document`` (read from ``file``) by what it names."""
    file = pathlib.Path(os.path.normpath(file.absolute()))
    return _resolve(document, file, file.parent, (file,))


def read_dotenv(path: pathlib.Path) -> dict[str, str]:
    """``KEY=value`` lines (``export`` allowed, quotes stripped, ``#`` comments); none if absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:
            continue
        key, raw = match.group(1), match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
            if match.group(2).strip()[0] == '"':
                raw = raw.replace("\\n", "\n")
        else:
            raw = raw.split(" #", 1)[0].strip()
        values[key] = raw
    return values


def apply_env_block(document: Any, env: dict[str, str]) -> None:
    """Fill ``env`` from the config's top-level ``env`` block, never overriding a set value."""
    block = document.get("env") if isinstance(document, Mapping) else None
    if not isinstance(block, Mapping):
        return
    inline = {k: v for k, v in block.items() if k not in ("vars", "shellEnv")}
    nested = block.get("vars")
    for source in (inline, nested if isinstance(nested, Mapping) else {}):
        for key, value in source.items():
            if isinstance(value, str) and not env.get(key):
                env[key] = value


def _substitute_string(value: str, path: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped, name = match.group(1), match.group(2)
        if escaped:
            return "${" + name + "}"
        found = env.get(name)
        if not found:
            raise ConfigSourceError(path, f"${{{name}}} is not set (environment variable {name})")
        return found

    return _REFERENCE.sub(replace, value) if "$" in value else value


def substitute_env(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` in every string of ``value``; errors name the JSON path."""
    if isinstance(value, str):
        return _substitute_string(value, path or "<root>", env)
    if isinstance(value, list):
        return [substitute_env(item, env, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return {
            key: substitute_env(item, env, f"{path}.{key}" if path else str(key))
            for key, item in value.items()
        }
    return value


def _state_dir(env: Mapping[str, str]) -> pathlib.Path:
    explicit = env.get("OPENCLAW_STATE_DIR")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    home = env.get("OPENCLAW_HOME") or env.get("HOME")
    return (pathlib.Path(home) if home else pathlib.Path.home()) / ".openclaw"


def resolve_document(
    document: Any, file: pathlib.Path, env: Mapping[str, str], cwd: pathlib.Path | None = None
) -> tuple[Any, dict[str, str]]:
    """Includes, then the environment in OpenClaw's precedence, then ``${VAR}``.

    Returns:
        The resolved document and the environment it was resolved with (credential fallbacks
        such as ``TWILIO_AUTH_TOKEN`` are read from the same one).
    """
    document = resolve_includes(document, file)
    effective = dict(env)
    for dotenv in ((cwd or pathlib.Path.cwd()) / ".env", _state_dir(env) / ".env"):
        for key, value in read_dotenv(dotenv).items():
            effective.setdefault(key, value)
    apply_env_block(document, effective)
    return substitute_env(document, effective), effective
