"""Did-you-mean for unknown keys and warnings for top-level typos (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest

from voicecall.config import ConfigError, parse_config
from voicecall.config_hints import did_you_mean, edit_distance, top_level_warnings

VC = "plugins.entries.voice-call.config"


def plugin(config: dict[str, Any]) -> dict[str, Any]:
    return {"plugins": {"entries": {"voice-call": {"config": config}}}}


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("gateway", "gateway", 0),
        ("gatway", "gateway", 1),
        ("Gateway", "gateway", 0),
        ("plugin", "plugins", 1),
        ("mesages", "messages", 1),
        ("host", "port", 2),
        ("", "ab", 2),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"provder": "mock"}, f'{VC}.provder: unknown key (did you mean "provider"?)'),
        ({"serve": {"prot": 1}}, f'{VC}.serve.prot: unknown key (did you mean "port"?)'),
        (
            {"twilio": {"authTokn": "x"}},
            f'{VC}.twilio.authTokn: unknown key (did you mean "authToken"?)',
        ),
        (
            {"maxConcurentCalls": 2},
            f'{VC}.maxConcurentCalls: unknown key (did you mean "maxConcurrentCalls"?)',
        ),
        # Nothing close: no guess rather than a wrong one ("host" is not a typo of "port").
        ({"serve": {"host": "x"}}, f"{VC}.serve.host: unknown key"),
        ({"bogusKey": 1}, f"{VC}.bogusKey: unknown key"),
    ],
)
def test_unknown_plugin_keys_suggest_the_near_key(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(plugin(config), {})
    assert str(caught.value) == expected


def test_unknown_key_on_the_plugin_entry_suggests_config() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"plugins": {"entries": {"voice-call": {"confg": {}}}}}, {})
    assert str(caught.value) == (
        'plugins.entries.voice-call.confg: unknown key (did you mean "config"?)'
    )


def test_a_top_level_typo_of_gateway_warns_instead_of_passing_silently() -> None:
    config = parse_config({"gatway": {"port": 19999}}, {})
    assert config.warnings == ('unknown top-level key "gatway" (did you mean "gateway"?)',)
    assert config.gateway.port == 18789  # the typo really is ignored, hence the warning


@pytest.mark.parametrize(
    ("key", "near"),
    [("plugin", "plugins"), ("mesages", "messages"), ("model", "models"), ("Gateway", "gateway")],
)
def test_each_of_our_sections_is_guarded(key: str, near: str) -> None:
    assert top_level_warnings({key: {}}) == (
        f'unknown top-level key "{key}" (did you mean "{near}"?)',
    )


def test_openclaw_sections_and_far_keys_do_not_warn() -> None:
    document = {
        "gateway": {},
        "agents": {},
        "channels": {},
        "tools": {},
        "session": {},
        "somethingElse": 1,
        "meta": {},
    }
    assert top_level_warnings(document) == ()
    assert parse_config(document, {}).warnings == ()


def test_did_you_mean_never_returns_the_key_itself() -> None:
    assert did_you_mean("port", ["port", "bind"]) is None
    assert did_you_mean("prot", ["port", "bind"]) == "port"
