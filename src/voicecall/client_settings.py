"""What a CLI command needs to reach the gateway, read quickly from the config file.

Commands that only talk to a running gateway (``status``, ``list``, ``end``, ``continue``, ...)
need four things from the configuration: the gateway's address and port, its token (or the
store directory where the gateway saved one) and, for the commands that wait on a caller, two
timeouts. Validating the whole file with the attrs/cattrs schema costs more than the command
itself (issue 12: ``voicecall status`` must start in under 100 ms), so this module reads just
those values with the standard library.

It must never disagree with the full loader (:func:`voicecall.config.load_config`) and must not
quietly use a file the loader would refuse. So it decides only the plain cases and returns
``None`` whenever it cannot be sure, and the caller then runs the full loader, which gives the
answer or the exact error. It steps back for:

* JSON5 beyond the everyday subset it rewrites to JSON itself (comments, unquoted keys, single
  quotes, trailing commas): ``Infinity``, hex numbers, a leading ``+`` or ``.``, line
  continuations, ``\\x`` escapes, non-ASCII identifiers and so on (the ``json5`` package alone
  takes longer to import than the whole command may);
* ``$include``, a top-level ``env`` block or a ``${VAR}`` reference anywhere in the document;
* a top-level key that looks like a typo of one of ours (the loader warns about it);
* a value it reads that is missing the expected type or range, or an OpenClaw bind mode;
* no token from the file or the process environment while a ``.env`` file could supply one.

Only the sections it reads are checked: a mistake elsewhere in the plugin block (say
``serve.port: "x"``) is the gateway's to report when it starts, and ``voicecall config check``
or ``voicecall doctor`` report it on demand.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from voicecall.config_hints import top_level_warnings

if TYPE_CHECKING:
    from voicecall.config import AppConfig

__all__ = ["ClientSettings", "client_settings", "read_client_settings"]

# The same defaults and names as voicecall.config (a test checks that both agree).
_DEFAULT_CONFIG_PATH = "~/.openclaw/openclaw.json"
_CONFIG_PATH_ENV = "VOICECALL_CONFIG"
_TOKEN_ENV = "VOICECALL_GATEWAY_TOKEN"
_TOKEN_FILE = "gateway-token"
_DEFAULT_STORE = "~/.openclaw/voice-calls"
_DEFAULT_BIND = "127.0.0.1"
_DEFAULT_PORT = 18789
_DEFAULT_TRANSCRIPT_TIMEOUT_MS = 180000
_DEFAULT_RING_TIMEOUT_MS = 30000
_BIND_NAMES = {"loopback": "127.0.0.1", "lan": "0.0.0.0"}
_PLUGIN_ENTRY_KEYS = ("enabled", "config")
# The loader's rule for a bind address (voicecall.config._is_bind_address; a test checks both
# agree): an RFC 1123 host name, which IPv4 addresses are too, or an IP address.
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _bindable(value: str) -> bool:
    if ":" in value:
        import ipaddress  # only for an IPv6 bind: the common case stays import-free

        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return False
        return True
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in value.split("."))


class ClientSettings(NamedTuple):
    """Where the gateway listens and how to authenticate to it."""

    bind: str
    port: int
    token: str | None
    transcript_timeout_ms: int = _DEFAULT_TRANSCRIPT_TIMEOUT_MS
    ring_timeout_ms: int = _DEFAULT_RING_TIMEOUT_MS

    @property
    def reply_timeout_s(self) -> float:
        """How long a ``continue``/``speak`` may wait: ringing, then the caller's reply."""
        return (self.transcript_timeout_ms + self.ring_timeout_ms) / 1000 + 30


def client_settings(config: AppConfig) -> ClientSettings:
    """The settings of an already validated configuration (the full loader's answer)."""
    from voicecall.entrypoints.token import read_gateway_token

    return ClientSettings(
        bind=config.gateway.bind,
        port=config.gateway.port,
        token=read_gateway_token(config),
        transcript_timeout_ms=config.voice.transcript_timeout_ms,
        ring_timeout_ms=config.voice.ring_timeout_ms,
    )


class _Undecided(Exception):
    """The quick read cannot be sure; the full loader must decide."""


def read_client_settings(cli_path: str | None, env: Mapping[str, str]) -> ClientSettings | None:
    """The settings from the config file, or ``None`` when only the full loader can tell.

    Args:
        cli_path: ``--config`` if given; else ``VOICECALL_CONFIG``, else the OpenClaw default
            (the same precedence as :func:`voicecall.config.load_config`).
        env: the process environment.
    """
    try:
        return _read(cli_path, env)
    except _Undecided:
        return None


def _read(cli_path: str | None, env: Mapping[str, str]) -> ClientSettings:
    explicit = cli_path is not None or bool(env.get(_CONFIG_PATH_ENV))
    chosen = cli_path if cli_path is not None else env.get(_CONFIG_PATH_ENV) or _DEFAULT_CONFIG_PATH
    path = os.path.expanduser(chosen)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
        data = _parse(text)
    except FileNotFoundError:
        if explicit:
            raise _Undecided from None  # the loader names the missing file
        # No file at the default path: all defaults, as the loader does.
        data = {}
    except (OSError, ValueError):
        # Unreadable, not UTF-8, or not JSON once rewritten: the loader decides.
        raise _Undecided from None
    if not isinstance(data, dict) or "env" in data or top_level_warnings(data):
        raise _Undecided
    _refuse_indirection(data)

    entry = _section(_section(_section(data, "plugins"), "entries"), "voice-call")
    if any(key not in _PLUGIN_ENTRY_KEYS for key in entry):
        raise _Undecided
    if "enabled" in entry and type(entry["enabled"]) is not bool:
        raise _Undecided
    voice = _section(entry, "config")
    store = _value(voice, "store", str, _DEFAULT_STORE)
    transcript_ms = _positive(voice, "transcriptTimeoutMs", _DEFAULT_TRANSCRIPT_TIMEOUT_MS)
    ring_ms = _positive(voice, "ringTimeoutMs", _DEFAULT_RING_TIMEOUT_MS)

    gateway = _section(data, "gateway")
    bind = _value(gateway, "bind", str, _DEFAULT_BIND)
    port = _value(gateway, "port", int, _DEFAULT_PORT)
    if not 1 <= port <= 65535 or bind in ("tailnet", "auto", "custom"):
        raise _Undecided
    if not _bindable(bind):
        raise _Undecided  # not an address or host name: the loader names the mistake
    auth = gateway.get("auth", {})
    if not isinstance(auth, dict):
        raise _Undecided
    token = auth.get("token")
    if token is not None and type(token) is not str:
        raise _Undecided
    if token is None:
        token = env.get(_TOKEN_ENV) or None
    if token is None and _TOKEN_ENV not in env and _dotenv_present(env):
        raise _Undecided  # a .env file may hold the token (OpenClaw's env precedence)
    if not token:
        token = _saved_token(store)
    return ClientSettings(
        bind=_BIND_NAMES.get(bind, bind),
        port=port,
        token=token,
        transcript_timeout_ms=transcript_ms,
        ring_timeout_ms=ring_ms,
    )


# JSON5 tokens (https://spec.json5.org/): whitespace, comments, strings, identifiers, punctuation,
# and everything else (numbers and literals), which strict JSON must then accept as it is.
_TOKEN_PATTERN = r"""(?P<space>[ \t\r\n]+)
    |(?P<comment>//[^\n]*|/\*.*?\*/)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    |(?P<punct>[{}\[\]:,])
    |(?P<other>[^ \t\r\n{}\[\]:,"'/]+)"""
_JSON_ESCAPES = frozenset('"\\/bfnrtu')
_LITERALS = frozenset({"true", "false", "null"})


def _parse(text: str) -> Any:
    """The document: strict JSON as it is, else the everyday JSON5 subset rewritten."""
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(_as_json(text))


def _as_json(text: str) -> str:
    """The everyday JSON5 subset rewritten as strict JSON; anything else is left to the loader.

    Comments become spaces, an unquoted key is quoted, a single-quoted string is double-quoted
    and a trailing comma is dropped. Strict JSON passes through unchanged.
    """
    # Compiled here, not at import: a strict JSON file never needs it (re caches it after).
    pattern = re.compile(_TOKEN_PATTERN, re.DOTALL | re.VERBOSE)
    tokens = [(match.lastgroup, match.group()) for match in pattern.finditer(text)]
    if sum(len(value) for _, value in tokens) != len(text):
        raise _Undecided  # a character no token matched (an unterminated comment or string)
    out: list[str] = []
    last = ""  # the last significant token written
    for index, (kind, value) in enumerate(tokens):
        if kind in ("space", "comment"):
            continue
        if kind == "string":
            value = _double_quoted(value)
        elif kind == "name" and value not in _LITERALS:
            after = index + 1
            while after < len(tokens) and tokens[after][0] == "space":
                after += 1
            if after == len(tokens) or tokens[after][1] != ":":
                raise _Undecided  # Infinity, NaN, or a key with a comment before its colon
            value = f'"{value}"'
        elif value in ("}", "]") and last == ",":
            out.pop()
        out.append(value)
        last = value
    return " ".join(out)


def _double_quoted(literal: str) -> str:
    body = literal[1:-1]
    escapes = re.findall(r"\\(.)", body, re.DOTALL)
    if literal[0] == '"':
        if any(char not in _JSON_ESCAPES for char in escapes):
            raise _Undecided
        return literal
    if any(char not in _JSON_ESCAPES and char != "'" for char in escapes):
        raise _Undecided
    parts = re.split(r"(\\.)", body)
    converted = "".join(
        ("'" if part == "\\'" else part)
        if part.startswith("\\") and len(part) == 2
        else part.replace('"', '\\"')
        for part in parts
    )
    return f'"{converted}"'


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Undecided
    return value


def _value(data: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    if key not in data:
        return default
    value = data[key]
    # `type(...) is` so that `true` is not taken for the integer 1, as the loader refuses it.
    if type(value) is not kind:
        raise _Undecided
    return value


def _positive(data: Mapping[str, Any], key: str, default: int) -> int:
    value: int = _value(data, key, int, default)
    if value <= 0:
        raise _Undecided
    return value


def _refuse_indirection(value: Any) -> None:
    """``$include`` and ``${VAR}`` change what the document says; only the loader resolves them."""
    if isinstance(value, dict):
        if "$include" in value:
            raise _Undecided
        for item in value.values():
            _refuse_indirection(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_indirection(item)
    elif isinstance(value, str) and "${" in value:
        raise _Undecided


def _state_dir(env: Mapping[str, str]) -> str:
    explicit = env.get("OPENCLAW_STATE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    home = env.get("OPENCLAW_HOME") or env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".openclaw")


def _dotenv_present(env: Mapping[str, str]) -> bool:
    return any(
        os.path.exists(os.path.join(folder, ".env")) for folder in (os.getcwd(), _state_dir(env))
    )


def _saved_token(store: str) -> str | None:
    try:
        with open(os.path.join(os.path.expanduser(store), _TOKEN_FILE), encoding="utf-8") as file:
            return file.read().strip() or None
    except (OSError, ValueError):
        return None
