"""The quick read of the gateway settings never disagrees with the full loader (issue 12).

Each document is read both ways. When the quick read decides, its answer must equal the full
loader's; where only the loader can be sure (JSON5, ``$include``, ``${VAR}``, a typo'd section, a
bad value in a section it reads), the quick read must step back so the loader answers, or names
the exact path of the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicecall.client_settings import ClientSettings, client_settings, read_client_settings
from voicecall.config import ConfigError, load_config


def _write(tmp_path: Path, document: dict[str, Any] | str) -> Path:
    path = tmp_path / "openclaw.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _plugin(tmp_path: Path, **config: Any) -> dict[str, Any]:
    return {"config": {"store": str(tmp_path / "store"), **config}}


def _doc(tmp_path: Path, gateway: Any = None, **config: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"plugins": {"entries": {"voice-call": _plugin(tmp_path, **config)}}}
    if gateway is not None:
        document["gateway"] = gateway
    return document


def _full(path: Path, env: dict[str, str]) -> ClientSettings:
    return client_settings(load_config(path, env))


DECIDED: dict[str, Any] = {
    "defaults": lambda tmp: _doc(tmp),
    "port and token": lambda tmp: _doc(tmp, {"port": 4000, "auth": {"token": "s3cret"}}),
    "OpenClaw bind name": lambda tmp: _doc(tmp, {"bind": "lan", "port": 4001}),
    "IPv6 bind": lambda tmp: _doc(tmp, {"bind": "::1"}),
    "OpenClaw's other gateway keys": lambda tmp: _doc(
        tmp, {"mode": "local", "auth": {"mode": "token", "token": "t"}, "reload": {"mode": "off"}}
    ),
    "timeouts": lambda tmp: _doc(tmp, transcriptTimeoutMs=5000, ringTimeoutMs=7000),
    "plugin switch": lambda tmp: {
        "plugins": {"entries": {"voice-call": {"enabled": True, **_plugin(tmp)}}},
        "agents": {"defaults": {}},
    },
    "null sections": lambda tmp: {**_doc(tmp), "gateway": None, "messages": None},
    "JSON5 comment": lambda tmp: "// ours\n" + json.dumps(_doc(tmp, {"port": 4300})),
    "trailing comma": lambda tmp: json.dumps(_doc(tmp, {"port": 4301}))[:-1] + ",}",
}


@pytest.mark.parametrize("name", sorted(DECIDED))
def test_quick_read_equals_the_full_loader(name: str, tmp_path: Path) -> None:
    path = _write(tmp_path, DECIDED[name](tmp_path))
    quick = read_client_settings(str(path), {})
    assert quick is not None, "the quick read should decide a plain document"
    assert quick == _full(path, {})


def test_token_precedence_file_then_env_then_saved_token(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "gateway-token").write_text("saved\n")
    bare = _write(tmp_path, _doc(tmp_path))
    env = {"VOICECALL_GATEWAY_TOKEN": "from-env"}
    for config_env, expected in (({}, "saved"), (env, "from-env")):
        quick = read_client_settings(str(bare), config_env)
        assert quick is not None and quick.token == expected
        assert quick == _full(bare, config_env)
    in_file = _write(tmp_path, _doc(tmp_path, {"auth": {"token": "in-file"}}))
    quick = read_client_settings(str(in_file), env)
    assert quick is not None and quick.token == "in-file" == _full(in_file, env).token


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    named = _write(tmp_path, _doc(tmp_path, {"port": 4100}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_doc(tmp_path, {"port": 4200})))
    env = {"VOICECALL_CONFIG": str(other)}
    assert read_client_settings(str(named), env) == _full(named, env)
    assert read_client_settings(str(named), env).port == 4100  # type: ignore[union-attr]
    from_env = read_client_settings(None, env)
    assert from_env is not None and from_env.port == 4200
    assert from_env == client_settings(load_config(None, env))
    # No file at the default path: all defaults, as the loader gives.
    default = read_client_settings(None, {"HOME": str(tmp_path)})
    assert default is not None and default.port == 18789
    assert default == client_settings(load_config(None, {"HOME": str(tmp_path)}))


UNDECIDED: dict[str, Any] = {
    "$include": lambda tmp: {**_doc(tmp), "gateway": {"$include": "./gateway.json5"}},
    "${VAR}": lambda tmp: _doc(tmp, {"auth": {"token": "${GATEWAY_SECRET}"}}),
    "env block": lambda tmp: {**_doc(tmp), "env": {"VOICECALL_GATEWAY_TOKEN": "x"}},
    "top-level typo": lambda tmp: {**_doc(tmp), "gatway": {"port": 4302}},
    "port as a string": lambda tmp: _doc(tmp, {"port": "4303"}),
    "port true": lambda tmp: _doc(tmp, {"port": True}),
    "port out of range": lambda tmp: _doc(tmp, {"port": 70000}),
    "unsupported bind mode": lambda tmp: _doc(tmp, {"bind": "tailnet"}),
    "auth not an object": lambda tmp: _doc(tmp, {"auth": "t"}),
    "token not a string": lambda tmp: _doc(tmp, {"auth": {"token": 5}}),
    "gateway not an object": lambda tmp: {**_doc(tmp), "gateway": [1]},
    "unknown plugin entry key": lambda tmp: {
        "plugins": {"entries": {"voice-call": {"confg": {}, **_plugin(tmp)}}}
    },
    "enabled not a bool": lambda tmp: {
        "plugins": {"entries": {"voice-call": {"enabled": "yes", **_plugin(tmp)}}}
    },
    "store not a string": lambda tmp: {
        "plugins": {"entries": {"voice-call": {"config": {"store": 1}}}}
    },
    "negative timeout": lambda tmp: _doc(tmp, ringTimeoutMs=-1),
    "not an object": lambda tmp: "[1, 2]",
}


@pytest.mark.parametrize("name", sorted(UNDECIDED))
def test_the_quick_read_steps_back_where_only_the_loader_can_tell(
    name: str, tmp_path: Path
) -> None:
    (tmp_path / "gateway.json5").write_text('{port: 4310, auth: {token: "inc"}}')
    env = {"GATEWAY_SECRET": "s"}
    path = _write(tmp_path, UNDECIDED[name](tmp_path))
    assert read_client_settings(str(path), env) is None
    # The loader then gives the answer (the JSON5 cases) or the exact path of the problem.
    try:
        _full(path, env)
    except ConfigError as err:
        assert err.path


def test_a_named_file_that_is_missing_is_left_to_the_loader(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert read_client_settings(str(missing), {}) is None
    assert read_client_settings(None, {"VOICECALL_CONFIG": str(missing)}) is None
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(missing, {})


def test_a_dotenv_that_may_hold_the_token_is_left_to_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text("VOICECALL_GATEWAY_TOKEN=dotenv-token\n")
    monkeypatch.chdir(work)
    env = {"OPENCLAW_STATE_DIR": str(tmp_path / "state")}
    path = _write(tmp_path, _doc(tmp_path))
    assert read_client_settings(str(path), env) is None
    assert _full(path, env).token == "dotenv-token"
    # A token set in the file or the process wins over .env, so the quick read decides then.
    with_env = {**env, "VOICECALL_GATEWAY_TOKEN": "process"}
    assert read_client_settings(str(path), with_env) == _full(path, with_env)


def test_reply_timeout_covers_ringing_and_the_reply() -> None:
    settings = ClientSettings(
        "127.0.0.1", 1, None, transcript_timeout_ms=5000, ring_timeout_ms=7000
    )
    assert settings.reply_timeout_s == pytest.approx(42.0)


# -- the everyday JSON5 the quick read rewrites itself -------------------------------------------

JSON5_TEXTS = {
    "comments and unquoted keys": "// mine\n{ gateway: { port: 4400, /* inline */ bind: 'lan' } }",
    "trailing commas": "{ a: [1, 2, ], b: { c: 'x', }, }",
    "single quotes holding double": """{ a: 'say "hi"', b: 'it\\'s', c: 'back\\\\slash' }""",
    "escapes JSON knows": '{ "a": "tab\\tnew\\nline \\u00e9", b: \'\\u0041\' }',
    "urls and slashes in strings": "{ u: 'http://x/y//z', v: \"/* not a comment */\" }",
    "numbers and literals": "{ a: -1.5e3, b: true, c: null, d: false, e: [0, 10] }",
    "$ and _ in keys": "{ $schema: 'x', _k: 1, a_b$: 2 }",
}


@pytest.mark.parametrize("name", sorted(JSON5_TEXTS))
def test_everyday_json5_reads_as_the_json5_package_reads_it(name: str) -> None:
    import json5

    from voicecall.client_settings import _as_json

    text = JSON5_TEXTS[name]
    assert json.loads(_as_json(text)) == json5.loads(text)


JSON5_LEFT_TO_THE_LOADER = {
    "Infinity": "{ a: Infinity }",
    "NaN": "{ a: NaN }",
    "hex": "{ a: 0x1F }",
    "leading plus": "{ a: +1 }",
    "leading point": "{ a: .5 }",
    "line continuation": "{ a: 'one\\\ntwo' }",
    "\\x escape": "{ a: '\\x41' }",
    "\\' in double quotes": '{ a: "it\\\'s" }',
    "unterminated comment": "{ a: 1 } /* open",
    "unterminated string": "{ a: 'open }",
    "comment before a colon": "{ a /* why */ : 1 }",
    "non-ASCII key": "{ ключ: 1 }",
    "reserved word as key": "{ true: 1 }",
}


@pytest.mark.parametrize("name", sorted(JSON5_LEFT_TO_THE_LOADER))
def test_rarer_json5_is_left_to_the_loader(name: str, tmp_path: Path) -> None:
    import json5

    path = tmp_path / "openclaw.json"
    path.write_text(JSON5_LEFT_TO_THE_LOADER[name])
    assert read_client_settings(str(path), {}) is None
    try:
        json5.loads(JSON5_LEFT_TO_THE_LOADER[name])  # the loader reads it, or refuses it itself
    except ValueError:
        pass


@pytest.mark.parametrize("carrier", ["twilio", "telnyx", "plivo"])
def test_the_carrier_pages_rehearsal_configs_are_read_quickly(carrier: str, tmp_path: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "carriers" / f"{carrier}.md").read_text()
    text = page.split("`sim.json`:")[1].split("```json5")[1].split("```")[0]
    text = text.replace("/tmp/voicecall-sim", str(tmp_path / "store"))
    path = _write(tmp_path, text)
    quick = read_client_settings(str(path), {})
    assert quick is not None, "a documented config should not need the full loader"
    assert quick == _full(path, {})
