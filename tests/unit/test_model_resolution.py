"""responseModel resolved as OpenClaw does: every reference form, with exact errors (issue 10)."""

from __future__ import annotations

from typing import Any

import pytest

from voicecall.adapters.agent.chat_anthropic import AnthropicChatModel
from voicecall.adapters.agent.chat_openai import OpenAIChatModel
from voicecall.adapters.agent.models import build_chat_model, resolve_model
from voicecall.adapters.agent.rules import RuleChatModel
from voicecall.config import AppConfig, ConfigError, parse_config

PATH = "plugins.entries.voice-call.config.responseModel"


def config(
    model: str | None, env: dict[str, str], providers: dict[str, Any] | None = None
) -> AppConfig:
    voice: dict[str, Any] = {} if model is None else {"responseModel": model}
    data: dict[str, Any] = {"plugins": {"entries": {"voice-call": {"config": voice}}}}
    if providers is not None:
        data["models"] = {"mode": "merge", "providers": providers}
    return parse_config(data, env)


OLLAMA = {"baseUrl": "http://127.0.0.1:11434/v1", "apiKey": "ollama", "api": "openai-completions"}


@pytest.mark.parametrize(
    ("model", "env", "providers", "expected"),
    [
        (
            "openai/gpt-4o-mini",
            {"OPENAI_API_KEY": "sk"},
            None,
            ("openai", "gpt-4o-mini", "openai-completions", None, "sk"),
        ),
        (
            "openai/gpt-4o-mini",
            {"OPENAI_API_KEY": "sk", "OPENAI_BASE_URL": "http://gw/v1"},
            None,
            ("openai", "gpt-4o-mini", "openai-completions", "http://gw/v1", "sk"),
        ),
        (
            "openrouter/meta-llama/llama-3.1-8b",
            {"OPENROUTER_API_KEY": "or"},
            None,
            (
                "openrouter",
                "meta-llama/llama-3.1-8b",
                "openai-completions",
                "https://openrouter.ai/api/v1",
                "or",
            ),
        ),
        (
            "anthropic/claude-sonnet-4",
            {"ANTHROPIC_API_KEY": "ak"},
            None,
            ("anthropic", "claude-sonnet-4", "anthropic-messages", None, "ak"),
        ),
        (
            "ollama/llama3.1:8b",
            {},
            {"ollama": OLLAMA},
            ("ollama", "llama3.1:8b", "openai-completions", "http://127.0.0.1:11434/v1", "ollama"),
        ),
        (
            "corp/claude",
            {},
            {
                "corp": {
                    "baseUrl": "https://llm.corp/anthropic",
                    "apiKey": "c",
                    "api": "anthropic-messages",
                    "models": [{"id": "claude"}],
                }
            },
            ("corp", "claude", "anthropic-messages", "https://llm.corp/anthropic", "c"),
        ),
        # An entry named like a built-in overrides its endpoint; the key may stay in the env.
        (
            "openai/gpt-4o",
            {"OPENAI_API_KEY": "sk"},
            {"openai": {"baseUrl": "https://proxy/v1"}},
            ("openai", "gpt-4o", "openai-completions", "https://proxy/v1", "sk"),
        ),
        ("offline/rules", {}, None, ("offline", "rules", "offline", None, None)),
        (
            None,
            {"OPENAI_API_KEY": "sk"},
            None,
            ("openai", "gpt-4o-mini", "openai-completions", None, "sk"),
        ),
    ],
)
def test_references_resolve(model, env, providers, expected) -> None:  # type: ignore[no-untyped-def]
    route = resolve_model(config(model, env, providers))
    assert (route.provider, route.model, route.api, route.base_url, route.api_key) == expected
    assert route.notice is None


def test_unset_without_a_key_falls_back_offline_with_one_notice() -> None:
    route = resolve_model(config(None, {}))
    assert route.reference == "offline/rules" and route.api == "offline"
    assert route.notice == (
        "responseModel is not set and OPENAI_API_KEY is not set: callers are answered by the "
        "offline rule responder (offline/rules)"
    )
    assert isinstance(build_chat_model(route), RuleChatModel)


@pytest.mark.parametrize(
    ("model", "env", "providers", "path", "message"),
    [
        (
            "openai/gpt-4o-mini",
            {},
            None,
            PATH,
            "openai/gpt-4o-mini needs an API key: set OPENAI_API_KEY",
        ),
        (
            "anthropic/claude-sonnet-4",
            {"OPENAI_API_KEY": "sk"},
            None,
            PATH,
            "anthropic/claude-sonnet-4 needs an API key: set ANTHROPIC_API_KEY",
        ),
        ("openrouter/x", {}, None, PATH, "openrouter/x needs an API key: set OPENROUTER_API_KEY"),
        (
            "mistral/large",
            {},
            {"ollama": OLLAMA},
            PATH,
            "unknown provider 'mistral' in 'mistral/large' (available: anthropic, offline, "
            "ollama, openai, openrouter)",
        ),
        (
            "gpt-4o-mini",
            {},
            None,
            PATH,
            "expected \"provider/model\" (e.g. openai/gpt-4o-mini), got 'gpt-4o-mini'",
        ),
        ("offline/gpt", {}, None, PATH, 'the offline responder is "offline/rules"'),
        (
            "local/m",
            {},
            {"local": {"baseUrl": "http://h/v1", "apiKey": "k"}},
            "models.providers.local.api",
            "required to use 'local/m': one of openai-completions, anthropic-messages",
        ),
        (
            "local/m",
            {},
            {"local": {"baseUrl": "http://h/v1", "apiKey": "k", "api": "google-generative-ai"}},
            "models.providers.local.api",
            "'google-generative-ai' is not supported for calls (supported: openai-completions, "
            "anthropic-messages)",
        ),
        (
            "local/m",
            {},
            {"local": {"apiKey": "k", "api": "openai-completions"}},
            "models.providers.local.baseUrl",
            "required to use 'local/m'",
        ),
        (
            "local/m",
            {},
            {"local": {"baseUrl": "http://h/v1", "api": "openai-completions"}},
            PATH,
            "local/m needs an API key: set models.providers.local.apiKey",
        ),
    ],
)
def test_unresolvable_references_name_the_path(model, env, providers, path, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        resolve_model(config(model, env, providers))
    assert (caught.value.path, caught.value.message) == (path, message)


def test_models_providers_are_type_checked_at_parse() -> None:
    with pytest.raises(ConfigError) as caught:
        config(None, {}, {"x": {"baseUrl": 3}})
    assert str(caught.value).startswith("models.providers.x.baseUrl")
    with pytest.raises(ConfigError) as caught:
        config(None, {}, {"x": {"baseUrl": "ftp://nope"}})
    assert "absolute http(s) URL" in str(caught.value)


def test_each_api_style_gets_its_adapter() -> None:
    openai_route = resolve_model(config("openai/gpt-4o-mini", {"OPENAI_API_KEY": "sk"}))
    anthropic_route = resolve_model(config("anthropic/claude-sonnet-4", {"ANTHROPIC_API_KEY": "a"}))
    assert isinstance(build_chat_model(openai_route), OpenAIChatModel)
    assert isinstance(build_chat_model(anthropic_route), AnthropicChatModel)


def test_serve_refuses_an_unresolvable_model_with_exit_2() -> None:
    from voicecall.entrypoints.server import StartupError, _check

    data = {
        "plugins": {
            "entries": {
                "voice-call": {
                    "config": {"enabled": True, "responseModel": "anthropic/claude-sonnet-4"}
                }
            }
        }
    }
    with pytest.raises(StartupError) as caught:
        _check(parse_config(data, {}))
    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        f"{PATH}: anthropic/claude-sonnet-4 needs an API key: set ANTHROPIC_API_KEY"
    )


def test_serve_starts_offline_with_one_notice(caplog: pytest.LogCaptureFixture) -> None:
    from voicecall.entrypoints.server import _check

    caplog.set_level("INFO", logger="voicecall")
    data = {"plugins": {"entries": {"voice-call": {"config": {"enabled": True}}}}}
    _check(parse_config(data, {}))
    notices = [r.getMessage() for r in caplog.records if "offline rule responder" in r.getMessage()]
    assert len(notices) == 1
