"""Which model answers calls: ``responseModel`` resolved the way OpenClaw resolves it.

A reference is ``provider/model``. The provider is a top-level ``models.providers.<name>``
entry of OpenClaw's file (``baseUrl``, ``apiKey``, ``api``; an entry named like a built-in
overrides it) or one of the built-ins ``openai``, ``openrouter`` and ``anthropic``, whose keys
come from the environment (https://docs.openclaw.ai/concepts/model-providers). ``offline/rules``
is the keyless rule responder. Anything that cannot be resolved stops start-up (exit 2) with
the path and what is available.
"""

from __future__ import annotations

from typing import Final, Literal

import attrs
import httpx

from voicecall.adapters.agent.chat_anthropic import AnthropicChatModel
from voicecall.adapters.agent.chat_openai import OpenAIChatModel
from voicecall.adapters.agent.rules import RuleChatModel
from voicecall.config import AppConfig, ConfigError, ModelProviderConfig
from voicecall.domain.ports import ChatModel

__all__ = ["DEFAULT_MODEL", "OFFLINE_MODEL", "ModelRoute", "build_chat_model", "resolve_model"]

DEFAULT_MODEL: Final = "openai/gpt-4o-mini"
OFFLINE_MODEL: Final = "offline/rules"
RESPONSE_MODEL_PATH: Final = "plugins.entries.voice-call.config.responseModel"

Api = Literal["openai-completions", "anthropic-messages", "offline"]
_APIS: Final = ("openai-completions", "anthropic-messages")


@attrs.frozen
class _BuiltIn:
    api: Api
    key_env: str
    base_url: str | None = None
    base_url_env: str | None = None


_BUILT_INS: Final = {
    "openai": _BuiltIn("openai-completions", "OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL"),
    # OpenRouter speaks the OpenAI chat completions API (https://openrouter.ai/docs/quickstart).
    "openrouter": _BuiltIn(
        "openai-completions", "OPENROUTER_API_KEY", base_url="https://openrouter.ai/api/v1"
    ),
    "anthropic": _BuiltIn(
        "anthropic-messages", "ANTHROPIC_API_KEY", base_url_env="ANTHROPIC_BASE_URL"
    ),
}


@attrs.frozen
class ModelRoute:
    """Where ``responseModel`` goes: the API style, endpoint, key and model name.

    ``notice`` is the one start-up line to print (the offline fallback), or None.
    """

    reference: str
    provider: str
    model: str
    api: Api
    base_url: str | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    notice: str | None = None


def resolve_model(config: AppConfig) -> ModelRoute:
    """Resolve ``responseModel`` against ``models.providers``, the built-ins and the env.

    Raises:
        ConfigError: a malformed reference, an unknown provider, an entry that cannot be used,
            or a configured model without a key (naming the env var to set).
    """
    env = dict(config.model_env)
    reference = config.voice.response_model
    if reference is None:
        if env.get("OPENAI_API_KEY") or _custom(config, "openai") is not None:
            reference = DEFAULT_MODEL
        else:
            return ModelRoute(
                OFFLINE_MODEL,
                "offline",
                "rules",
                "offline",
                notice=(
                    "responseModel is not set and OPENAI_API_KEY is not set: callers are "
                    f"answered by the offline rule responder ({OFFLINE_MODEL})"
                ),
            )
    provider, slash, model = reference.partition("/")
    if not slash or not provider or not model:
        raise ConfigError(
            RESPONSE_MODEL_PATH,
            f'expected "provider/model" (e.g. {DEFAULT_MODEL}), got {reference!r}',
        )
    if provider == "offline":
        if model != "rules":
            raise ConfigError(RESPONSE_MODEL_PATH, f'the offline responder is "{OFFLINE_MODEL}"')
        return ModelRoute(reference, provider, model, "offline")
    entry = _custom(config, provider)
    built_in = _BUILT_INS.get(provider)
    if entry is None and built_in is None:
        raise ConfigError(
            RESPONSE_MODEL_PATH,
            f"unknown provider {provider!r} in {reference!r} (available: "
            f"{', '.join(available_providers(config))})",
        )
    path = f"models.providers.{provider}"
    api: str | None = entry.api if entry is not None else None
    if api is None:
        if built_in is None:
            raise ConfigError(
                f"{path}.api", f"required to use {reference!r}: one of {', '.join(_APIS)}"
            )
        api = built_in.api
    if api not in _APIS:
        raise ConfigError(
            f"{path}.api", f"{api!r} is not supported for calls (supported: {', '.join(_APIS)})"
        )
    base_url = entry.base_url if entry is not None else None
    if base_url is None and built_in is not None:
        base_url = built_in.base_url or (
            env.get(built_in.base_url_env) if built_in.base_url_env else None
        )
    if base_url is None and built_in is None:
        raise ConfigError(f"{path}.baseUrl", f"required to use {reference!r}")
    key = entry.api_key if entry is not None else None
    if not key and built_in is not None:
        key = env.get(built_in.key_env)
    if not key:
        where = f"set {built_in.key_env}" if built_in is not None else f"set {path}.apiKey"
        if built_in is not None and entry is not None:
            where += f" or {path}.apiKey"
        raise ConfigError(RESPONSE_MODEL_PATH, f"{reference} needs an API key: {where}")
    return ModelRoute(reference, provider, model, api, base_url, key)  # type: ignore[arg-type]


def available_providers(config: AppConfig) -> list[str]:
    names = {"offline", *_BUILT_INS, *(p.name for p in config.model_providers)}
    return sorted(names)


def _custom(config: AppConfig, name: str) -> ModelProviderConfig | None:
    return next((p for p in config.model_providers if p.name == name), None)


def build_chat_model(route: ModelRoute, http_client: httpx.AsyncClient | None = None) -> ChatModel:
    """The adapter for a resolved route."""
    if route.api == "offline":
        return RuleChatModel()
    assert route.api_key is not None
    if route.api == "anthropic-messages":
        return AnthropicChatModel(route.model, route.api_key, route.base_url)
    return OpenAIChatModel(route.model, route.api_key, route.base_url, http_client)
