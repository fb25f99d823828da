"""Settings: the OpenClaw-shaped JSON5 file, structured into frozen attrs classes (SPEC §2).

The file is shared with OpenClaw, so only our sections are read and checked:
``plugins.entries.voice-call``, ``messages.tts`` and ``gateway``. Inside those, validation is
strict: an unknown key or a value of the wrong type stops the start with one line naming the exact
JSON path, e.g. ``plugins.entries.voice-call.config.serve.port: expected an integer``.

Structuring is done by a dedicated cattrs converter whose primitive hooks refuse coercion (cattrs
would otherwise happily turn ``"3334"`` into ``3334`` or ``1`` into ``True``). Field-level rules
(ports, E.164 numbers, URLs, paths) ride on ``Annotated`` metadata so they fail *inside* cattrs and
keep the attribute path; rules that span fields run afterwards and name their path explicitly.
"""

from __future__ import annotations

import ipaddress
import math
import os
import pathlib
import re
import typing
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Final, Literal, TypeVar

import attrs
import cattrs
import json5
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from voicecall.config_hints import did_you_mean, top_level_warnings
from voicecall.config_sources import ConfigSourceError, resolve_document
from voicecall.domain.signed_url import UrlTrustSettings, is_loopback
from voicecall.domain.tts import deep_merge
from voicecall.openclaw_keys import inert_key_notices

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_RESPONSE_SYSTEM_PROMPT",
    "AgentConfig",
    "AppConfig",
    "ConfigError",
    "EdgeTtsConfig",
    "ElevenLabsTtsConfig",
    "ElevenLabsVoiceSettings",
    "GatewayAuthConfig",
    "GatewayConfig",
    "MockConfig",
    "ModelProviderConfig",
    "OpenAiTtsConfig",
    "OutboundConfig",
    "PlivoConfig",
    "ServeConfig",
    "StreamingConfig",
    "SttConfig",
    "TailscaleConfig",
    "TelnyxConfig",
    "TtsConfig",
    "TunnelConfig",
    "TwilioConfig",
    "VoiceCallConfig",
    "WebhookSecurityConfig",
    "load_config",
    "parse_config",
    "resolve_config_path",
    "url_trust_settings",
]

DEFAULT_CONFIG_PATH: Final = "~/.openclaw/openclaw.json"
_CONFIG_PATH_ENV: Final = "VOICECALL_CONFIG"

_T = TypeVar("_T")

_PLUGIN_ID: Final = "voice-call"
_PLUGIN_PATH: Final = f"plugins.entries.{_PLUGIN_ID}"
_VOICE_PATH: Final = f"{_PLUGIN_PATH}.config"
_CORE_TTS_PATH: Final = "messages.tts"

# A field whose JSON key is not the plain camelCase of its Python name carries it here.
_JSON_KEY: Final = "voicecall_json_key"


class ConfigError(Exception):
    """The configuration cannot be used; nothing may start.

    ``str(err)`` is always one line, ``"<path>: <message>"``.

    Attributes:
        path: the exact JSON path of the offending value (camelCase keys, ``[i]`` for list items),
            or the file path for errors about the file itself.
        message: what is wrong with it.
    """

    def __init__(self, path: str, message: str) -> None:
        # Parser and OS messages may span lines; operators grep logs, so keep it to one.
        message = " ".join(message.split())
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --------------------------------------------------------------------------------------------
# Field rules carried as Annotated metadata
# --------------------------------------------------------------------------------------------


@attrs.frozen
class _Rule:
    """A check applied after a value has been structured to its base type."""

    test: Callable[[Any], bool]
    message: str


def _is_e164(value: str) -> bool:
    return re.fullmatch(r"\+[1-9]\d{1,14}", value) is not None


def _is_http_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


_HOST_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_bind_address(value: str) -> bool:
    """An IP address or an RFC 1123 host name (``localhost``): something a listener can bind.

    OpenClaw's gateway bind names (``loopback``, ``lan``, ...) are host names to this test and
    are translated or refused by name afterwards.
    """
    if _is_ip(value):
        return True
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in value.split("."))


def _at_least(low: int) -> _Rule:
    return _Rule(lambda v: v >= low, f"must be at least {low}")


_PORT = _Rule(lambda v: 1 <= v <= 65535, "expected a port number between 1 and 65535")
_E164_RULE = _Rule(_is_e164, "expected an E.164 number like +15551234567")
_HTTP_URL = _Rule(_is_http_url, "expected an absolute http(s) URL")
_URL_PATH = _Rule(lambda v: v.startswith("/"), 'must start with "/"')
_IP = _Rule(_is_ip, "expected an IP address")
_BIND = _Rule(_is_bind_address, "expected an IP address or a host name to listen on")

_Port = Annotated[int, _PORT]
_E164 = Annotated[str, _E164_RULE]
_E164Prefix = Annotated[
    str,
    _Rule(
        lambda v: re.fullmatch(r"\+[1-9]\d{0,14}", v) is not None,
        "expected an E.164 number or prefix like +1 or +4420",
    ),
]
_HttpUrl = Annotated[str, _HTTP_URL]
_UrlPath = Annotated[str, _URL_PATH]
_BindAddress = Annotated[str, _BIND]
_Positive = Annotated[int, _at_least(1)]
_NonNegative = Annotated[int, _at_least(0)]
_PositiveRate = Annotated[float, _Rule(lambda v: v > 0, "must be greater than 0")]
_NonEmpty = Annotated[str, _Rule(lambda v: v != "", "must not be empty")]
_UnitInterval = Annotated[float, _Rule(lambda v: 0 <= v <= 1, "must be between 0 and 1")]
# BCP-47 as carriers and speech services take it: a language, then optional subtags.
_LANGUAGE_RULE = _Rule(
    lambda v: re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", v) is not None,
    "expected a BCP-47 language tag like en-US",
)
_Language = Annotated[str, _LANGUAGE_RULE]


def _key(name: str) -> dict[str, str]:
    return {_JSON_KEY: name}


# --------------------------------------------------------------------------------------------
# plugins.entries.voice-call.config
# --------------------------------------------------------------------------------------------


@attrs.frozen
class TwilioConfig:
    """``twilio.*``: Programmable Voice credentials (env ``TWILIO_ACCOUNT_SID``/``_AUTH_TOKEN``)."""

    account_sid: str | None = None
    auth_token: str | None = None
    api_base_url: _HttpUrl = "https://api.twilio.com"


@attrs.frozen
class TelnyxConfig:
    """``telnyx.*``: Call Control v2 credentials and the webhook signing public key."""

    api_key: str | None = None
    connection_id: str | None = None
    public_key: str | None = None
    api_base_url: _HttpUrl = "https://api.telnyx.com/v2"


@attrs.frozen
class PlivoConfig:
    """``plivo.*``: Voice API credentials (env ``PLIVO_AUTH_ID``/``PLIVO_AUTH_TOKEN``)."""

    auth_id: str | None = None
    auth_token: str | None = None
    api_base_url: _HttpUrl = "https://api.plivo.com"


@attrs.frozen
class ServeConfig:
    """``serve.*``: where the webhook server listens."""

    port: _Port = 3334
    bind: _BindAddress = "127.0.0.1"
    path: _UrlPath = "/voice/webhook"


@attrs.frozen
class TunnelConfig:
    """``tunnel.*``: how the webhook server is exposed to the carrier."""

    provider: Literal["none", "ngrok", "tailscale-serve", "tailscale-funnel"] = "none"
    ngrok_auth_token: _NonEmpty | None = None
    """Env ``NGROK_AUTHTOKEN``."""
    ngrok_domain: _NonEmpty | None = None
    """A reserved ngrok domain (env ``NGROK_DOMAIN``): the URL then survives a reconnect."""
    allow_ngrok_free_tier_loopback_bypass: bool = False
    """With an ngrok tunnel and a loopback ``serve.bind``, a loopback peer's forwarding headers
    may rebuild the signed URL. Deliberately never lets a bad signature through (SPEC §4)."""


@attrs.frozen
class TailscaleConfig:
    """``tailscale.*``: the legacy exposure form."""

    mode: Literal["off", "serve", "funnel"] = "off"
    path: _NonEmpty = "/voice/webhook"


@attrs.frozen
class WebhookSecurityConfig:
    """``webhookSecurity.*``: when forwarding headers may rebuild the signed URL (SPEC §4)."""

    allowed_hosts: tuple[str, ...] = ()
    trust_forwarding_headers: bool = False
    trusted_proxy_ips: tuple[Annotated[str, _IP], ...] = attrs.field(
        default=(), metadata=_key("trustedProxyIPs")
    )


@attrs.frozen
class OutboundConfig:
    """``outbound.*``: defaults for calls the agent places."""

    default_mode: Literal["notify", "conversation"] = "notify"
    notify_hangup_delay_sec: float = 3.0
    allow_to: tuple[_E164Prefix, ...] = ()
    """E.164 numbers or prefixes; when set, nothing else is dialled."""
    deny_to: tuple[_E164Prefix, ...] = ("+1900", "+1976")
    """Prefixes never dialled; by default the NANP premium-rate codes. Numbers outside
    fromNumber's country code are refused too unless allowTo names them."""
    max_calls_per_hour: _Positive | None = None
    """At most this many outbound calls in any hour; unset, no cap."""
    max_calls_per_day: _Positive | None = None
    """At most this many outbound calls in any 24 hours; unset, no cap."""


@attrs.frozen
class StreamingConfig:
    """``streaming.*``: carrier media streams over WebSocket (SPEC §5)."""

    enabled: bool = False
    """Carrier media streams on: core TTS speaks and streaming STT listens (else native)."""
    stream_path: _UrlPath = "/voice/stream"
    """Where carriers open the stream's WebSocket on the webhook listener."""
    stt_provider: Literal["openai-realtime"] = "openai-realtime"
    """Streaming transcription: an OpenAI realtime transcription session per call."""
    stt_model: str = "gpt-4o-transcribe"
    """The transcription model of the realtime session."""
    vad_threshold: _UnitInterval = 0.5
    """Server VAD activation threshold (0-1) of the transcription session."""
    silence_duration_ms: _Positive = 800
    """Server VAD: this much silence ends the caller's utterance."""
    openai_api_key: str | None = None
    """Key for the realtime transcription session (env ``OPENAI_API_KEY``)."""
    lead_ms: _NonNegative = 200
    """How far ahead of real time outbound audio may be sent."""


@attrs.frozen
class SttConfig:
    """``stt.*``: accepted as OpenClaw does; streaming transcription is ``streaming.*``."""

    provider: Literal["openai"] = "openai"
    """The only provider OpenClaw's voice-call schema knows."""
    model: str = "whisper-1"
    """OpenClaw's batch transcription model; calls here transcribe with ``streaming.sttModel``."""


@attrs.frozen
class MockConfig:
    """``mock.*``: how the offline simulated callee behaves."""

    answer_delay_ms: _NonNegative = 300
    outcome: Literal["answer", "busy", "no-answer", "voicemail", "fail"] = "answer"
    replies: tuple[str, ...] = (
        "Hi, this is the simulated callee.",
        "Yes, that works for me.",
        "Could you say that again, please?",
        "Thanks, goodbye.",
    )
    speech_chars_per_sec: _PositiveRate = 15.0
    """Simulated speech takes time, as on a real line: this many characters a second."""
    barge_in_after_ms: _Positive | None = None
    """On a media stream, the simulated callee talks over any bot line that has played this
    long (a barge-in); unset, it waits for the bot to finish."""


@attrs.frozen
class AgentConfig:
    """``agent.*``: how the model on the line behaves (issue 10)."""

    hold_after_ms: _NonNegative = 1500
    """When the model's first words take longer, the caller hears a short holding line."""
    transfer_allowlist: tuple[_E164, ...] = ()
    """The only numbers the agent's ``transfer`` tool may hand a call to."""


DEFAULT_RESPONSE_SYSTEM_PROMPT: Final = (
    "You are a helpful assistant speaking with someone on a phone call. Everything you write is "
    "read aloud, so answer in one to three short, natural spoken sentences. Do not use lists, "
    "markdown, emoji, links or symbols that cannot be spoken. Say numbers, times, dates and "
    "amounts as words, the way a person would say them. Ask one question at a time. If you "
    "did not understand the caller, ask them briefly to repeat."
)


@attrs.frozen
class VoiceCallConfig:
    """``plugins.entries.voice-call.config``: the plugin's own settings (SPEC §2).

    The plugin's ``tts`` block is not kept here: it is merged over ``messages.tts`` into
    :attr:`AppConfig.tts`.
    """

    enabled: bool = False
    provider: Literal["twilio", "telnyx", "plivo", "mock"] = "mock"
    from_number: _E164 | None = None
    to_number: _E164 | None = None
    twilio: TwilioConfig = attrs.Factory(TwilioConfig)
    telnyx: TelnyxConfig = attrs.Factory(TelnyxConfig)
    plivo: PlivoConfig = attrs.Factory(PlivoConfig)
    serve: ServeConfig = attrs.Factory(ServeConfig)
    public_url: _HttpUrl | None = None
    tunnel: TunnelConfig = attrs.Factory(TunnelConfig)
    tailscale: TailscaleConfig = attrs.Factory(TailscaleConfig)
    webhook_security: WebhookSecurityConfig = attrs.Factory(WebhookSecurityConfig)
    skip_signature_verification: bool = False
    outbound: OutboundConfig = attrs.Factory(OutboundConfig)
    streaming: StreamingConfig = attrs.Factory(StreamingConfig)
    stt: SttConfig = attrs.Factory(SttConfig)
    language: _Language = "en-US"
    """BCP-47; drives native voices, carrier recognisers, the STT session, TTS and the prompt."""
    inbound_policy: Literal["disabled", "allowlist", "pairing", "open"] = "disabled"
    allow_from: tuple[_E164, ...] = ()
    inbound_greeting: str = "Hello! How can I help you today?"
    response_model: str | None = None
    response_system_prompt: str = DEFAULT_RESPONSE_SYSTEM_PROMPT
    response_timeout_ms: _Positive = 30000
    agent: AgentConfig = attrs.Factory(AgentConfig)
    max_concurrent_calls: _Positive = 1
    max_duration_seconds: _Positive = 300
    ring_timeout_ms: _Positive = 30000
    silence_timeout_ms: _Positive = 800
    transcript_timeout_ms: _Positive = 180000
    stale_call_reaper_seconds: _NonNegative = 0
    """0 (OpenClaw's default) turns the reaper off; 120-300 is recommended in production."""
    store: str = "~/.openclaw/voice-calls"
    retention_days: _Positive = 30
    """Ended calls and the event log are kept this many days (the log is also size-capped)."""
    mock: MockConfig = attrs.Factory(MockConfig)

    @property
    def store_path(self) -> pathlib.Path:
        """The store directory with ``~`` expanded."""
        return pathlib.Path(self.store).expanduser()


# --------------------------------------------------------------------------------------------
# messages.tts (and the plugin's tts override, same shape)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class OpenAiTtsConfig:
    """``tts.openai.*`` (env ``OPENAI_API_KEY``). Unset values mean "the TTS adapter's default"."""

    api_key: str | None = None
    model: str | None = None
    """Default ``gpt-4o-mini-tts``."""
    voice: str | None = None
    """Default ``alloy``; with streaming off, mapped to a comparable native carrier voice."""
    instructions: str | None = None
    """How to speak (tone, pace); sent with models that take it."""
    speed: float | None = None
    base_url: _HttpUrl | None = None
    """Else ``OPENAI_BASE_URL``, else the SDK's default."""


@attrs.frozen
class ElevenLabsVoiceSettings:
    """``tts.elevenlabs.voiceSettings.*``."""

    stability: float | None = None
    similarity_boost: float | None = None
    style: float | None = None
    use_speaker_boost: bool | None = None
    speed: float | None = None


@attrs.frozen
class ElevenLabsTtsConfig:
    """``tts.elevenlabs.*`` (env ``ELEVENLABS_API_KEY``, also ``XI_API_KEY``)."""

    api_key: str | None = None
    voice_id: str | None = None
    model_id: str | None = None
    base_url: _HttpUrl | None = None
    optimize_streaming_latency: (
        Annotated[int, _Rule(lambda v: 0 <= v <= 4, "must be 0-4")] | None
    ) = None
    """ElevenLabs latency optimisation level (0 off, 4 most)."""
    seed: int | None = None
    apply_text_normalization: Literal["auto", "on", "off"] | None = None
    language_code: str | None = None
    voice_settings: ElevenLabsVoiceSettings = attrs.Factory(ElevenLabsVoiceSettings)


@attrs.frozen
class EdgeTtsConfig:
    """``tts.edge.*``: accepted because OpenClaw has it, never used for calls (it is not PCM)."""

    enabled: bool | None = None
    voice: str | None = None
    lang: str | None = None
    output_format: str | None = None
    pitch: str | None = None
    rate: str | None = None
    volume: str | None = None
    save_subtitles: bool | None = None
    proxy: str | None = None
    timeout_ms: _Positive | None = None


@attrs.frozen
class TtsConfig:
    """The OpenClaw ``messages.tts`` shape, after the plugin's ``tts`` is merged over it."""

    auto: Literal["off", "always", "inbound", "tagged"] | None = None
    mode: Literal["final", "all"] | None = None
    provider: Literal["openai", "elevenlabs", "edge"] | None = None
    summary_model: str | None = None
    # Free-form in OpenClaw; kept as given.
    model_overrides: Mapping[str, Any] | None = None
    openai: OpenAiTtsConfig = attrs.Factory(OpenAiTtsConfig)
    elevenlabs: ElevenLabsTtsConfig = attrs.Factory(ElevenLabsTtsConfig)
    edge: EdgeTtsConfig = attrs.Factory(EdgeTtsConfig)
    prefs_path: str | None = None
    max_text_length: _Positive | None = None
    timeout_ms: _Positive | None = None


# --------------------------------------------------------------------------------------------
# gateway
# --------------------------------------------------------------------------------------------


@attrs.frozen
class GatewayAuthConfig:
    """``gateway.auth.*`` (env ``VOICECALL_GATEWAY_TOKEN``)."""

    token: str | None = None


@attrs.frozen
class GatewayConfig:
    """``gateway.*``: where the long-lived gateway process listens for the CLI and tools."""

    bind: _BindAddress = "127.0.0.1"
    port: _Port = 18789
    auth: GatewayAuthConfig = attrs.Factory(GatewayAuthConfig)


@attrs.frozen
class ModelProviderConfig:
    """One ``models.providers.<name>`` entry of OpenClaw's file, as far as we use it.

    The section belongs to OpenClaw (its entries also carry ``models``, ``headers``, costs and
    more), so only the keys a responder needs are read and checked; the rest are left alone.
    See https://docs.openclaw.ai/concepts/model-providers.
    """

    name: str
    base_url: str | None = None
    api_key: str | None = None
    api: str | None = None


# The environment variables a model reference may need (issue 10); kept with the config so the
# resolver never reads os.environ itself.
MODEL_ENV_VARS: Final = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
)


@attrs.frozen
class AppConfig:
    """Everything voicecall reads from the file, validated, with env fallbacks applied."""

    voice: VoiceCallConfig = attrs.Factory(VoiceCallConfig)
    tts: TtsConfig = attrs.Factory(TtsConfig)
    gateway: GatewayConfig = attrs.Factory(GatewayConfig)
    source: str = "<memory>"
    model_providers: tuple[ModelProviderConfig, ...] = ()
    """OpenClaw's top-level ``models.providers`` entries."""
    model_env: tuple[tuple[str, str], ...] = ()
    """The set ``MODEL_ENV_VARS`` and their values."""
    warnings: tuple[str, ...] = ()
    """Problems that do not stop the start (a top-level key that looks like a typo)."""
    notices: tuple[str, ...] = ()
    """One line per OpenClaw key set in the file that has no effect here; logged at start."""


# --------------------------------------------------------------------------------------------
# The strict converter
# --------------------------------------------------------------------------------------------


class _Invalid(Exception):
    """A leaf problem; ``segments`` is the path below the attribute cattrs reports it at."""

    def __init__(self, message: str, segments: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.segments = tuple(segments)


def _json_key(field: attrs.Attribute[Any]) -> str:
    explicit = field.metadata.get(_JSON_KEY)
    if explicit is not None:
        return str(explicit)
    head, *rest = field.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _json_keys(cls: type) -> dict[str, str]:
    return {field.name: _json_key(field) for field in attrs.fields(cls)}


def _structure_int(value: Any, _: Any) -> int:
    # bool is a subclass of int; `true` must not pass as 1.
    if type(value) is not int:
        raise _Invalid("expected an integer")
    return value


def _structure_float(value: Any, _: Any) -> float:
    if type(value) not in (int, float):
        raise _Invalid("expected a number")
    if not math.isfinite(value):
        # JSON5 allows Infinity and NaN; no duration or setting here means anything with them.
        raise _Invalid("expected a finite number")
    return float(value)


def _structure_bool(value: Any, _: Any) -> bool:
    if type(value) is not bool:
        raise _Invalid("expected true or false")
    return value


def _structure_str(value: Any, _: Any) -> str:
    if type(value) is not str:
        raise _Invalid("expected a string")
    return value


def _structure_free_object(value: Any, _: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid("expected an object")
    return dict(value)


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _literal_hook(tp: Any) -> Callable[[Any, Any], Any]:
    allowed = typing.get_args(tp)
    message = "expected one of " + ", ".join(f'"{a}"' for a in allowed)

    def structure(value: Any, _: Any) -> Any:
        # Compare type too: `1 == True`, and Literal["1"] must not take 1.
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise _Invalid(message)
        return value

    return structure


def _has_rules(tp: Any) -> bool:
    return typing.get_origin(tp) is Annotated and any(isinstance(m, _Rule) for m in tp.__metadata__)


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_free_object(tp: Any) -> bool:
    return tp in (Mapping[str, Any], dict[str, Any])


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook_func(_is_free_object, _structure_free_object)
    converter.register_structure_hook_factory(_is_literal, _literal_hook)

    def rules_hook(tp: Any) -> Callable[[Any, Any], Any]:
        base = typing.get_args(tp)[0]
        rules = [m for m in tp.__metadata__ if isinstance(m, _Rule)]
        structure_base = converter.get_structure_hook(base)

        def structure(value: Any, _: Any) -> Any:
            result = structure_base(value, base)
            for rule in rules:
                if not rule.test(result):
                    raise _Invalid(rule.message)
            return result

        return structure

    def tuple_hook(tp: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
        item_type = typing.get_args(tp)[0]
        structure_item = converter.get_structure_hook(item_type)

        def structure(value: Any, _: Any) -> tuple[Any, ...]:
            # cattrs would iterate a string character by character; a list is what we mean.
            if not isinstance(value, list):
                raise _Invalid("expected a list")
            items = []
            for index, item in enumerate(value):
                try:
                    items.append(structure_item(item, item_type))
                except Exception as exc:
                    segments, message = _first_problem(exc, item)
                    raise _Invalid(message, (index, *segments)) from None
            return tuple(items)

        return structure

    def attrs_hook(cls: type) -> Callable[[Any, Any], Any]:
        renames = {name: override(rename=key) for name, key in _json_keys(cls).items()}
        structure_fields: Callable[[Mapping[str, Any], Any], Any] = make_dict_structure_fn(
            cls,
            converter,
            **renames,  # type: ignore[arg-type]
        )

        def structure(value: Any, _: Any) -> Any:
            if not isinstance(value, Mapping):
                raise _Invalid("expected an object")
            return structure_fields(value, cls)

        return structure

    converter.register_structure_hook_factory(_is_homogeneous_tuple, tuple_hook)
    converter.register_structure_hook_factory(_has_rules, rules_hook)
    converter.register_structure_hook_factory(attrs.has, attrs_hook)
    return converter


_converter: Final = _make_converter()


def _first_problem(exc: BaseException, data: Any) -> tuple[tuple[str | int, ...], str]:
    """Walk cattrs's exception tree down to the first leaf, building the JSON path.

    cattrs notes name the *Python* attribute, so each step is mapped back to the JSON key through
    the class the error group was raised for. ``data`` follows along so an unknown key can be
    reported in file order (cattrs hands them over as a set).
    """
    if isinstance(exc, _Invalid):
        return exc.segments, exc.message
    if isinstance(exc, ForbiddenExtraKeysError):
        extra = exc.extra_fields
        keys = [k for k in data if k in extra] if isinstance(data, Mapping) else sorted(extra)
        return (keys[0],), _unknown_key(keys[0], _json_keys(exc.cl).values())
    if isinstance(exc, ClassValidationError):
        sub = exc.exceptions[0]
        for note in getattr(sub, "__notes__", ()):
            if isinstance(note, AttributeValidationNote):
                key = _json_keys(exc.cl).get(note.name, note.name)
                child = data.get(key) if isinstance(data, Mapping) else None
                segments, message = _first_problem(sub, child)
                return (key, *segments), message
        return _first_problem(sub, data)
    if isinstance(exc, IterableValidationError):
        sub = exc.exceptions[0]
        for note in getattr(sub, "__notes__", ()):
            if isinstance(note, IterableValidationNote):
                index = note.index
                child = None
                if isinstance(data, list) and isinstance(index, int) and index < len(data):
                    child = data[index]
                segments, message = _first_problem(sub, child)
                return (index, *segments), message
        return _first_problem(sub, data)
    return (), str(exc) or type(exc).__name__


def _unknown_key(key: str, known: typing.Iterable[str]) -> str:
    near = did_you_mean(key, known)
    return f'unknown key (did you mean "{near}"?)' if near else "unknown key"


def _join(prefix: str, segments: Sequence[str | int]) -> str:
    path = prefix
    for segment in segments:
        path += f"[{segment}]" if isinstance(segment, int) else f".{segment}"
    return path


def _structure(data: Any, cls: type[_T], path: str) -> _T:
    try:
        return _converter.structure(data, cls)
    except Exception as exc:
        segments, message = _first_problem(exc, data)
        raise ConfigError(_join(path, segments), message) from exc


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------


def _object_at(data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    """The object under ``key``, or an empty one when absent; anything else is an error."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, "expected an object")
    return value


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def _fill(obj: _T, env: Mapping[str, str], fallbacks: Mapping[str, tuple[str, ...]]) -> _T:
    """Fill each attribute the file left unset (``None``) from the first env var that is set."""
    changes = {}
    for attr, names in fallbacks.items():
        if getattr(obj, attr) is None:
            value = _env(env, *names)
            if value is not None:
                changes[attr] = value
    return attrs.evolve(obj, **changes) if changes else obj  # type: ignore[misc]


def _with_env_voice(voice: VoiceCallConfig, env: Mapping[str, str]) -> VoiceCallConfig:
    return attrs.evolve(
        voice,
        twilio=_fill(
            voice.twilio,
            env,
            {"account_sid": ("TWILIO_ACCOUNT_SID",), "auth_token": ("TWILIO_AUTH_TOKEN",)},
        ),
        telnyx=_fill(
            voice.telnyx,
            env,
            {
                "api_key": ("TELNYX_API_KEY",),
                "connection_id": ("TELNYX_CONNECTION_ID",),
                "public_key": ("TELNYX_PUBLIC_KEY",),
            },
        ),
        plivo=_fill(
            voice.plivo,
            env,
            {"auth_id": ("PLIVO_AUTH_ID",), "auth_token": ("PLIVO_AUTH_TOKEN",)},
        ),
        tunnel=_fill(
            voice.tunnel,
            env,
            {"ngrok_auth_token": ("NGROK_AUTHTOKEN",), "ngrok_domain": ("NGROK_DOMAIN",)},
        ),
        streaming=_fill(voice.streaming, env, {"openai_api_key": ("OPENAI_API_KEY",)}),
    )


def _with_env_tts(tts: TtsConfig, env: Mapping[str, str]) -> TtsConfig:
    return attrs.evolve(
        tts,
        openai=_fill(tts.openai, env, {"api_key": ("OPENAI_API_KEY",)}),
        elevenlabs=_fill(tts.elevenlabs, env, {"api_key": ("ELEVENLABS_API_KEY", "XI_API_KEY")}),
    )


# Which credentials each carrier needs, as (section, JSON key, Python name, env var).
_REQUIRED_CREDENTIALS: Final[dict[str, tuple[tuple[str, str, str, str], ...]]] = {
    "twilio": (
        ("twilio", "accountSid", "account_sid", "TWILIO_ACCOUNT_SID"),
        ("twilio", "authToken", "auth_token", "TWILIO_AUTH_TOKEN"),
    ),
    "telnyx": (
        ("telnyx", "apiKey", "api_key", "TELNYX_API_KEY"),
        ("telnyx", "connectionId", "connection_id", "TELNYX_CONNECTION_ID"),
        ("telnyx", "publicKey", "public_key", "TELNYX_PUBLIC_KEY"),
    ),
    "plivo": (
        ("plivo", "authId", "auth_id", "PLIVO_AUTH_ID"),
        ("plivo", "authToken", "auth_token", "PLIVO_AUTH_TOKEN"),
    ),
}


def _check_voice(voice: VoiceCallConfig) -> None:
    """Rules that span fields; each names the path the operator has to change."""
    provider = voice.provider
    for section, key, attr, env_name in _REQUIRED_CREDENTIALS.get(provider, ()):
        if attr == "public_key" and voice.skip_signature_verification:
            # The key only verifies webhook signatures; nothing else needs it.
            continue
        if not getattr(getattr(voice, section), attr):
            raise ConfigError(
                f"{_VOICE_PATH}.{section}.{key}",
                f'required for provider "{provider}" (or set {env_name})',
            )
    if provider != "mock" and not voice.from_number:
        raise ConfigError(f"{_VOICE_PATH}.fromNumber", f'required for provider "{provider}"')
    if voice.tunnel.allow_ngrok_free_tier_loopback_bypass and voice.tunnel.provider != "ngrok":
        raise ConfigError(
            f"{_VOICE_PATH}.tunnel.allowNgrokFreeTierLoopbackBypass",
            'only allowed when tunnel.provider is "ngrok"',
        )
    if voice.skip_signature_verification and not is_loopback(voice.serve.bind):
        raise ConfigError(
            f"{_VOICE_PATH}.skipSignatureVerification",
            "only allowed when serve.bind is a loopback address",
        )


def parse_config(
    data: Mapping[str, Any], env: Mapping[str, str], source: str = "<memory>"
) -> AppConfig:
    """Validate an already-parsed OpenClaw-shaped document and build the settings.

    Args:
        data: the whole document (JSON types only). Keys outside our sections are ignored.
        env: where credential fallbacks are read from (usually ``os.environ``).
        source: the file the data came from, kept for messages; ``"<memory>"`` otherwise.

    Returns:
        The validated settings with env fallbacks applied.

    Raises:
        ConfigError: for the first problem found, naming its exact JSON path.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(source, "expected a JSON object at the top level")

    plugins = _object_at(data, "plugins", "plugins")
    entries = _object_at(plugins, "entries", "plugins.entries")
    entry = _object_at(entries, _PLUGIN_ID, _PLUGIN_PATH)
    for key in entry:
        if key not in ("enabled", "config"):
            raise ConfigError(f"{_PLUGIN_PATH}.{key}", _unknown_key(key, ("enabled", "config")))
    entry_enabled = entry.get("enabled", False)
    if type(entry_enabled) is not bool:
        raise ConfigError(f"{_PLUGIN_PATH}.enabled", "expected true or false")

    voice_data = dict(_object_at(entry, "config", _VOICE_PATH))
    plugin_tts = _object_at(voice_data, "tts", f"{_VOICE_PATH}.tts")
    voice_data.pop("tts", None)
    voice = _structure(voice_data, VoiceCallConfig, _VOICE_PATH)
    if entry_enabled and not voice.enabled:
        # OpenClaw's own plugin switch; either place turning it on is the operator's intent.
        voice = attrs.evolve(voice, enabled=True)

    messages = _object_at(data, "messages", "messages")
    core_tts = _object_at(messages, "tts", _CORE_TTS_PATH)
    # Each side is checked on its own first so an error names the block it is really in.
    _structure(core_tts, TtsConfig, _CORE_TTS_PATH)
    _structure(plugin_tts, TtsConfig, f"{_VOICE_PATH}.tts")
    tts = _structure(deep_merge(core_tts, plugin_tts), TtsConfig, _CORE_TTS_PATH)

    gateway = _structure(_our_gateway_keys(data), GatewayConfig, "gateway")
    gateway = attrs.evolve(
        gateway,
        bind=_gateway_bind(gateway.bind),
        auth=_fill(gateway.auth, env, {"token": ("VOICECALL_GATEWAY_TOKEN",)}),
    )

    voice = _with_env_voice(voice, env)
    _check_voice(voice)
    return AppConfig(
        voice=voice,
        tts=_with_env_tts(tts, env),
        gateway=gateway,
        source=source,
        model_providers=_model_providers(data),
        model_env=tuple((name, env[name]) for name in MODEL_ENV_VARS if env.get(name)),
        warnings=top_level_warnings(data),
        notices=inert_key_notices(_object_at(entry, "config", _VOICE_PATH)),
    )


def _model_providers(data: Mapping[str, Any]) -> tuple[ModelProviderConfig, ...]:
    """``models.providers``: each entry's ``baseUrl``, ``apiKey`` and ``api``, type-checked."""
    models = _object_at(data, "models", "models")
    providers = _object_at(models, "providers", "models.providers")
    found = []
    for name, entry in providers.items():
        path = f"models.providers.{name}"
        if not isinstance(entry, Mapping):
            raise ConfigError(path, "expected an object")
        values: dict[str, str | None] = {}
        for key, attr in (("baseUrl", "base_url"), ("apiKey", "api_key"), ("api", "api")):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{path}.{key}", "expected a string")
            values[attr] = value
        if values["base_url"] is not None and not _is_http_url(values["base_url"]):
            raise ConfigError(f"{path}.baseUrl", "expected an absolute http(s) URL")
        found.append(ModelProviderConfig(name=str(name), **values))
    return tuple(found)


# OpenClaw's own gateway section has many more keys (mode, auth.mode, tailscale, reload,
# controlUi, ...). The file is shared with it, so only the keys this gateway reads are ours to
# check; the rest belong to OpenClaw and are left alone.
_GATEWAY_KEYS: Final = ("bind", "port", "auth")
_GATEWAY_AUTH_KEYS: Final = ("token",)
# OpenClaw names bind modes; the two that mean one fixed address translate directly.
_GATEWAY_BIND_NAMES: Final = {"loopback": "127.0.0.1", "lan": "0.0.0.0"}
_GATEWAY_BIND_UNSUPPORTED: Final = ("tailnet", "auto", "custom")


def _our_gateway_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    section = _object_at(data, "gateway", "gateway")
    ours = {key: section[key] for key in _GATEWAY_KEYS if key in section}
    auth = ours.get("auth")
    if isinstance(auth, Mapping):
        ours["auth"] = {key: auth[key] for key in _GATEWAY_AUTH_KEYS if key in auth}
    return ours


def _gateway_bind(bind: str) -> str:
    if bind in _GATEWAY_BIND_UNSUPPORTED:
        raise ConfigError(
            "gateway.bind",
            f'OpenClaw bind mode "{bind}" is not supported here; use "loopback", "lan" or an '
            "IP address",
        )
    return _GATEWAY_BIND_NAMES.get(bind, bind)


def resolve_config_path(cli_path: str | None, env: Mapping[str, str]) -> pathlib.Path:
    """``--config``, else ``VOICECALL_CONFIG``, else the OpenClaw default; ``~`` is expanded."""
    chosen = cli_path or env.get(_CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH
    return pathlib.Path(chosen).expanduser()


def load_config(
    path: pathlib.Path | str | None = None, env: Mapping[str, str] | None = None
) -> AppConfig:
    """Read, parse and validate the config file.

    Args:
        path: the file; ``None`` resolves it from ``VOICECALL_CONFIG`` or the default path.
        env: environment for the path and credential fallbacks; ``None`` means ``os.environ``.

    Returns:
        The validated settings. A missing file at the default path gives all defaults, so a new
        user can run the mock carrier with no file at all.

    Raises:
        ConfigError: the file was named but is missing or unreadable, is not valid JSON5, or fails
            validation.
    """
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get(_CONFIG_PATH_ENV))
    resolved = (
        pathlib.Path(path).expanduser() if path is not None else resolve_config_path(None, env)
    )
    source = str(resolved)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(source, "config file not found") from None
        return parse_config({}, env, source)
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(source, f"cannot read config file: {exc.strerror or exc}") from None
    try:
        data = json5.loads(text)
    except ValueError as exc:
        # json5 names the input "<string>"; the file name is already the path.
        detail = re.sub(r"^<string>:(\d+) ", r"line \1: ", str(exc))
        raise ConfigError(source, f"invalid JSON5: {detail}") from None
    try:
        # $include, .env files, the env block and ${VAR}, as OpenClaw resolves them.
        data, resolved_env = resolve_document(data, resolved, env)
    except ConfigSourceError as exc:
        raise ConfigError(exc.path, exc.message) from None
    return parse_config(data, resolved_env, source)


def url_trust_settings(voice: VoiceCallConfig) -> UrlTrustSettings:
    """What the webhook door may trust when rebuilding the URL a carrier signed (SPEC §4)."""
    security = voice.webhook_security
    return UrlTrustSettings(
        public_url=voice.public_url,
        allowed_hosts=tuple(security.allowed_hosts),
        trust_forwarding_headers=security.trust_forwarding_headers,
        trusted_proxy_ips=tuple(security.trusted_proxy_ips),
        tunnel_provider=voice.tunnel.provider,
        allow_ngrok_free_tier_loopback_bypass=voice.tunnel.allow_ngrok_free_tier_loopback_bypass,
        serve_bind=voice.serve.bind,
    )
