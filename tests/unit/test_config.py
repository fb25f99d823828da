"""The config file: defaults, the OpenClaw layout, strict validation with exact paths (SPEC §2)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from voicecall.config import (
    DEFAULT_CONFIG_PATH,
    AppConfig,
    ConfigError,
    load_config,
    parse_config,
    resolve_config_path,
)

VC = "plugins.entries.voice-call.config"


def plugin(config: Any, **entry: Any) -> dict[str, Any]:
    """A document with ``config`` at ``plugins.entries.voice-call.config``."""
    return {"plugins": {"entries": {"voice-call": {"config": config, **entry}}}}


def error_of(data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, env or {})
    return str(caught.value)


# ------------------------------------------------------------------------------------------
# Defaults
# ------------------------------------------------------------------------------------------


def test_empty_config_has_the_spec_defaults() -> None:
    config = parse_config({}, {})
    voice = config.voice

    assert config.source == "<memory>"
    assert voice.enabled is False
    assert voice.provider == "mock"
    assert voice.from_number is None
    assert voice.to_number is None
    assert voice.twilio.account_sid is None
    assert voice.twilio.auth_token is None
    assert voice.twilio.api_base_url == "https://api.twilio.com"
    assert voice.telnyx.api_key is None
    assert voice.telnyx.connection_id is None
    assert voice.telnyx.public_key is None
    assert voice.telnyx.api_base_url == "https://api.telnyx.com/v2"
    assert voice.plivo.auth_id is None
    assert voice.plivo.auth_token is None
    assert voice.plivo.api_base_url == "https://api.plivo.com"
    assert (voice.serve.port, voice.serve.bind, voice.serve.path) == (
        3334,
        "127.0.0.1",
        "/voice/webhook",
    )
    assert voice.public_url is None
    assert voice.tunnel.provider == "none"
    assert (voice.tunnel.ngrok_auth_token, voice.tunnel.ngrok_domain) == (None, None)
    assert voice.tunnel.allow_ngrok_free_tier_loopback_bypass is False
    assert voice.tailscale.mode == "off"
    assert voice.tailscale.path == "/voice/webhook"
    assert voice.webhook_security.allowed_hosts == ()
    assert voice.webhook_security.trust_forwarding_headers is False
    assert voice.webhook_security.trusted_proxy_ips == ()
    assert voice.skip_signature_verification is False
    assert voice.outbound.default_mode == "notify"
    assert voice.outbound.notify_hangup_delay_sec == 3
    assert voice.streaming.enabled is False
    assert voice.streaming.stream_path == "/voice/stream"
    assert voice.inbound_policy == "disabled"
    assert voice.allow_from == ()
    assert voice.inbound_greeting == "Hello! How can I help you today?"
    assert voice.response_model is None
    assert voice.response_system_prompt.strip()
    assert voice.response_timeout_ms == 30000
    assert voice.max_concurrent_calls == 1
    assert voice.max_duration_seconds == 300
    assert voice.ring_timeout_ms == 30000
    assert voice.silence_timeout_ms == 800
    assert voice.transcript_timeout_ms == 180000
    assert voice.stale_call_reaper_seconds == 0
    assert voice.store == "~/.openclaw/voice-calls"
    assert voice.store_path == pathlib.Path("~/.openclaw/voice-calls").expanduser()
    assert voice.mock.answer_delay_ms == 300
    assert voice.mock.outcome == "answer"
    assert len(voice.mock.replies) >= 3
    assert all(isinstance(line, str) and line for line in voice.mock.replies)

    assert config.tts.provider is None
    assert config.tts.openai.api_key is None
    assert config.tts.elevenlabs.api_key is None

    assert config.gateway.bind == "127.0.0.1"
    assert config.gateway.port == 18789
    assert config.gateway.auth.token is None


def test_default_config_path() -> None:
    assert DEFAULT_CONFIG_PATH == "~/.openclaw/openclaw.json"


# ------------------------------------------------------------------------------------------
# A full OpenClaw-shaped file
# ------------------------------------------------------------------------------------------

FULL_FILE = """\
// An OpenClaw config: voicecall reads only its own sections.
{
  agents: { defaults: { model: { primary: "openai/gpt-4.1-mini" } } },
  channels: { telegram: { enabled: true, botToken: "123:abc" } },
  messages: {
    ackReaction: "eyes",  // not ours: ignored
    tts: {
      auto: "always",
      mode: "final",
      provider: "openai",
      summaryModel: "openai/gpt-4.1-mini",
      modelOverrides: { enabled: true },
      prefsPath: "~/.openclaw/settings/tts.json",
      maxTextLength: 4000,
      timeoutMs: 30000,
      openai: { apiKey: "sk-core", model: "gpt-4o-mini-tts", voice: "alloy" },
      elevenlabs: {
        apiKey: "el-core",
        voiceId: "voice123",
        modelId: "eleven_multilingual_v2",
        baseUrl: "https://api.elevenlabs.io",
        seed: 42,
        applyTextNormalization: "auto",
        languageCode: "en",
        voiceSettings: {
          stability: 0.5,
          similarityBoost: 0.75,
          style: 0,
          useSpeakerBoost: true,
          speed: 1,
        },
      },
      edge: {
        enabled: true,
        voice: "en-US-MichelleNeural",
        lang: "en-US",
        outputFormat: "audio-24khz-48kbitrate-mono-mp3",
        pitch: "+0Hz",
        rate: "+10%",
        volume: "+0%",
        saveSubtitles: false,
        proxy: "http://proxy.local:8080",
        timeoutMs: 20000,
      },
    },
  },
  gateway: { bind: "127.0.0.1", port: 18790, auth: { token: "gw-secret" } },
  plugins: {
    entries: {
      "other-plugin": { enabled: true, config: { anything: [1, 2, 3] } },
      "voice-call": {
        enabled: true,
        config: {
          provider: "twilio",
          fromNumber: "+15550001111",
          toNumber: "+15550002222",
          twilio: {
            accountSid: "AC123",
            authToken: "tok",
            apiBaseUrl: "http://127.0.0.1:9999",
          },
          telnyx: { apiKey: "KEY", connectionId: "conn", publicKey: "pk" },
          plivo: { authId: "MA123", authToken: "ptok" },
          serve: { port: 4444, bind: "127.0.0.1", path: "/hooks/voice" },
          publicUrl: "https://voice.example.com/hooks/voice",
          tunnel: { provider: "ngrok", allowNgrokFreeTierLoopbackBypass: true },
          tailscale: { mode: "funnel", path: "/voice" },
          webhookSecurity: {
            allowedHosts: ["voice.example.com"],
            trustForwardingHeaders: false,
            trustedProxyIPs: ["127.0.0.1", "::1"],
          },
          skipSignatureVerification: false,
          outbound: { defaultMode: "conversation", notifyHangupDelaySec: 1.5 },
          streaming: { enabled: true, streamPath: "/voice/media" },
          inboundPolicy: "allowlist",
          allowFrom: ["+15550003333", "+442071838750"],
          inboundGreeting: "Hi there!",
          responseModel: "openai/gpt-4.1-mini",
          responseSystemPrompt: "Be brief.",
          responseTimeoutMs: 15000,
          maxConcurrentCalls: 3,
          maxDurationSeconds: 600,
          ringTimeoutMs: 20000,
          silenceTimeoutMs: 1000,
          transcriptTimeoutMs: 60000,
          staleCallReaperSeconds: 90,
          store: "/var/lib/voicecall",
          mock: { answerDelayMs: 0, outcome: "busy", replies: ["one", "two"] },
          tts: { openai: { voice: "coral" } },
        },
      },
    },
  },
}
"""


def test_full_openclaw_file_loads(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(FULL_FILE, encoding="utf-8")

    config = load_config(path, env={})
    voice = config.voice

    assert config.source == str(path)
    assert voice.enabled is True
    assert voice.provider == "twilio"
    assert (voice.from_number, voice.to_number) == ("+15550001111", "+15550002222")
    assert voice.twilio.account_sid == "AC123"
    assert voice.twilio.auth_token == "tok"
    assert voice.twilio.api_base_url == "http://127.0.0.1:9999"
    assert voice.telnyx.public_key == "pk"
    assert voice.plivo.auth_id == "MA123"
    assert (voice.serve.port, voice.serve.path) == (4444, "/hooks/voice")
    assert voice.public_url == "https://voice.example.com/hooks/voice"
    assert voice.tunnel.provider == "ngrok"
    assert voice.tunnel.allow_ngrok_free_tier_loopback_bypass is True
    assert (voice.tailscale.mode, voice.tailscale.path) == ("funnel", "/voice")
    assert voice.webhook_security.allowed_hosts == ("voice.example.com",)
    assert voice.webhook_security.trusted_proxy_ips == ("127.0.0.1", "::1")
    assert voice.outbound.default_mode == "conversation"
    assert voice.outbound.notify_hangup_delay_sec == 1.5
    assert (voice.streaming.enabled, voice.streaming.stream_path) == (True, "/voice/media")
    assert voice.inbound_policy == "allowlist"
    assert voice.allow_from == ("+15550003333", "+442071838750")
    assert voice.inbound_greeting == "Hi there!"
    assert voice.response_model == "openai/gpt-4.1-mini"
    assert voice.response_system_prompt == "Be brief."
    assert voice.response_timeout_ms == 15000
    assert voice.max_concurrent_calls == 3
    assert voice.max_duration_seconds == 600
    assert voice.ring_timeout_ms == 20000
    assert voice.silence_timeout_ms == 1000
    assert voice.transcript_timeout_ms == 60000
    assert voice.stale_call_reaper_seconds == 90
    assert voice.store_path == pathlib.Path("/var/lib/voicecall")
    assert voice.mock.answer_delay_ms == 0
    assert voice.mock.outcome == "busy"
    assert voice.mock.replies == ("one", "two")

    tts = config.tts
    assert (tts.auto, tts.mode, tts.provider) == ("always", "final", "openai")
    assert tts.summary_model == "openai/gpt-4.1-mini"
    assert tts.model_overrides == {"enabled": True}
    assert tts.prefs_path == "~/.openclaw/settings/tts.json"
    assert (tts.max_text_length, tts.timeout_ms) == (4000, 30000)
    assert tts.openai.api_key == "sk-core"
    assert tts.openai.model == "gpt-4o-mini-tts"
    assert tts.openai.voice == "coral"  # the plugin's tts wins
    assert tts.elevenlabs.voice_id == "voice123"
    assert tts.elevenlabs.seed == 42
    assert tts.elevenlabs.apply_text_normalization == "auto"
    assert tts.elevenlabs.voice_settings.similarity_boost == 0.75
    assert tts.elevenlabs.voice_settings.use_speaker_boost is True
    assert tts.elevenlabs.voice_settings.speed == 1.0
    assert tts.edge.output_format == "audio-24khz-48kbitrate-mono-mp3"
    assert tts.edge.timeout_ms == 20000

    assert config.gateway.port == 18790
    assert config.gateway.auth.token == "gw-secret"


def test_config_is_frozen() -> None:
    config = parse_config({}, {})
    with pytest.raises(AttributeError):
        config.voice.provider = "twilio"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------
# Errors: one line, exact path
# ------------------------------------------------------------------------------------------

NGROK_ONLY = (
    f'{VC}.tunnel.allowNgrokFreeTierLoopbackBypass: only allowed when tunnel.provider is "ngrok"'
)

ERROR_CASES = [
    # wrong types at several depths
    pytest.param(
        plugin({"serve": {"port": "3334"}}),
        f"{VC}.serve.port: expected an integer",
        id="str for int",
    ),
    pytest.param(
        plugin({"maxConcurrentCalls": True}),
        f"{VC}.maxConcurrentCalls: expected an integer",
        id="bool for int",
    ),
    pytest.param(
        plugin({"ringTimeoutMs": 1.5}),
        f"{VC}.ringTimeoutMs: expected an integer",
        id="float for int",
    ),
    pytest.param(
        plugin({"enabled": 1}), f"{VC}.enabled: expected true or false", id="int for bool"
    ),
    pytest.param(
        plugin({"streaming": {"enabled": "yes"}}),
        f"{VC}.streaming.enabled: expected true or false",
        id="str for bool",
    ),
    pytest.param(
        plugin({"outbound": {"notifyHangupDelaySec": True}}),
        f"{VC}.outbound.notifyHangupDelaySec: expected a number",
        id="bool for float",
    ),
    pytest.param(
        plugin({"fromNumber": 15551234567}), f"{VC}.fromNumber: expected a string", id="int for str"
    ),
    pytest.param(
        plugin({"inboundGreeting": None}),
        f"{VC}.inboundGreeting: expected a string",
        id="null for str",
    ),
    pytest.param(
        plugin({"serve": 3334}), f"{VC}.serve: expected an object", id="scalar for object"
    ),
    pytest.param(
        plugin({"allowFrom": "+15551234567"}),
        f"{VC}.allowFrom: expected a list",
        id="string for list",
    ),
    pytest.param(
        plugin({"mock": {"replies": ["ok", 3]}}),
        f"{VC}.mock.replies[1]: expected a string",
        id="list item",
    ),
    pytest.param(plugin([]), f"{VC}: expected an object", id="config not object"),
    pytest.param(
        {"messages": {"tts": {"openai": {"voice": 1}}}},
        "messages.tts.openai.voice: expected a string",
        id="core tts",
    ),
    pytest.param(
        {"messages": {"tts": {"elevenlabs": {"voiceSettings": {"speed": "fast"}}}}},
        "messages.tts.elevenlabs.voiceSettings.speed: expected a number",
        id="core tts deep",
    ),
    pytest.param(
        plugin({"tts": {"openai": {"model": False}}}),
        f"{VC}.tts.openai.model: expected a string",
        id="plugin tts",
    ),
    pytest.param(
        {"messages": {"tts": {"modelOverrides": "yes"}}},
        "messages.tts.modelOverrides: expected an object",
        id="modelOverrides",
    ),
    pytest.param(
        {"gateway": {"port": "18789"}}, "gateway.port: expected an integer", id="gateway port"
    ),
    pytest.param(
        {"gateway": {"auth": {"token": 5}}},
        "gateway.auth.token: expected a string",
        id="gateway token",
    ),
    pytest.param(
        {"plugins": {"entries": {"voice-call": {"enabled": "true"}}}},
        "plugins.entries.voice-call.enabled: expected true or false",
        id="entry enabled",
    ),
    # unknown keys at several depths
    pytest.param(plugin({"bogusKey": 1}), f"{VC}.bogusKey: unknown key", id="unknown top"),
    pytest.param(
        plugin({"serve": {"host": "x"}}), f"{VC}.serve.host: unknown key", id="unknown nested"
    ),
    pytest.param(
        plugin({"tts": {"elevenlabs": {"voiceSettings": {"pitch": 1}}}}),
        f"{VC}.tts.elevenlabs.voiceSettings.pitch: unknown key",
        id="unknown deep",
    ),
    pytest.param(
        plugin({"from_number": "+15551234567"}),
        f'{VC}.from_number: unknown key (did you mean "fromNumber"?)',
        id="snake_case key",
    ),
    pytest.param(
        plugin({"webhookSecurity": {"trustedProxyIps": []}}),
        f'{VC}.webhookSecurity.trustedProxyIps: unknown key (did you mean "trustedProxyIPs"?)',
        id="wrong case",
    ),
    pytest.param(
        plugin({"zeta": 1, "alpha": 2}), f"{VC}.zeta: unknown key", id="first unknown in file order"
    ),
    pytest.param(
        {"plugins": {"entries": {"voice-call": {"env": {}}}}},
        "plugins.entries.voice-call.env: unknown key",
        id="unknown entry key",
    ),
    pytest.param(
        {"messages": {"tts": {"voice": "alloy"}}},
        "messages.tts.voice: unknown key",
        id="unknown core tts",
    ),
    pytest.param(
        {"gateway": {"bind": "tailnet"}},
        'gateway.bind: OpenClaw bind mode "tailnet" is not supported here; use "loopback", '
        '"lan" or an IP address',
        id="unsupported gateway bind mode",
    ),
    # Literal values
    pytest.param(
        plugin({"provider": "vonage"}),
        f'{VC}.provider: expected one of "twilio", "telnyx", "plivo", "mock"',
        id="provider",
    ),
    pytest.param(
        plugin({"inboundPolicy": "all"}),
        f'{VC}.inboundPolicy: expected one of "disabled", "allowlist", "pairing", "open"',
        id="inboundPolicy",
    ),
    pytest.param(
        plugin({"mock": {"outcome": "ok"}}),
        f'{VC}.mock.outcome: expected one of "answer", "busy", "no-answer", "voicemail", "fail"',
        id="mock outcome",
    ),
    pytest.param(
        plugin({"tunnel": {"provider": "cloudflare"}}),
        f'{VC}.tunnel.provider: expected one of "none", "ngrok", "tailscale-serve", '
        '"tailscale-funnel"',
        id="tunnel provider",
    ),
    pytest.param(
        {"messages": {"tts": {"provider": "google"}}},
        'messages.tts.provider: expected one of "openai", "elevenlabs", "edge"',
        id="tts provider",
    ),
    # field rules
    pytest.param(
        plugin({"allowFrom": ["+15551234567", "5551234567"]}),
        f"{VC}.allowFrom[1]: expected an E.164 number like +15551234567",
        id="E.164 in allowFrom",
    ),
    pytest.param(
        plugin({"fromNumber": "+0123"}),
        f"{VC}.fromNumber: expected an E.164 number like +15551234567",
        id="E.164 fromNumber",
    ),
    pytest.param(
        plugin({"serve": {"port": 65536}}),
        f"{VC}.serve.port: expected a port number between 1 and 65535",
        id="port too high",
    ),
    pytest.param(
        {"gateway": {"port": 0}},
        "gateway.port: expected a port number between 1 and 65535",
        id="port zero",
    ),
    pytest.param(
        plugin({"maxConcurrentCalls": 0}),
        f"{VC}.maxConcurrentCalls: must be at least 1",
        id="min concurrency",
    ),
    pytest.param(
        plugin({"mock": {"answerDelayMs": -1}}),
        f"{VC}.mock.answerDelayMs: must be at least 0",
        id="negative delay",
    ),
    pytest.param(
        plugin({"publicUrl": "voice.example.com/hook"}),
        f"{VC}.publicUrl: expected an absolute http(s) URL",
        id="publicUrl",
    ),
    pytest.param(
        plugin({"serve": {"path": "voice"}}),
        f'{VC}.serve.path: must start with "/"',
        id="serve.path",
    ),
    pytest.param(
        plugin({"streaming": {"streamPath": "stream"}}),
        f'{VC}.streaming.streamPath: must start with "/"',
        id="streamPath",
    ),
    pytest.param(
        plugin({"webhookSecurity": {"trustedProxyIPs": ["10.0.0.1", "proxy.local"]}}),
        f"{VC}.webhookSecurity.trustedProxyIPs[1]: expected an IP address",
        id="proxy IP",
    ),
    # missing credentials per provider
    pytest.param(
        plugin({"provider": "twilio", "fromNumber": "+15550001111"}),
        f'{VC}.twilio.accountSid: required for provider "twilio" (or set TWILIO_ACCOUNT_SID)',
        id="twilio sid",
    ),
    pytest.param(
        plugin(
            {"provider": "twilio", "fromNumber": "+15550001111", "twilio": {"accountSid": "AC1"}}
        ),
        f'{VC}.twilio.authToken: required for provider "twilio" (or set TWILIO_AUTH_TOKEN)',
        id="twilio token",
    ),
    pytest.param(
        plugin({"provider": "telnyx", "fromNumber": "+15550001111"}),
        f'{VC}.telnyx.apiKey: required for provider "telnyx" (or set TELNYX_API_KEY)',
        id="telnyx key",
    ),
    pytest.param(
        plugin({"provider": "telnyx", "telnyx": {"apiKey": "k"}}),
        f'{VC}.telnyx.connectionId: required for provider "telnyx" (or set TELNYX_CONNECTION_ID)',
        id="telnyx connection",
    ),
    pytest.param(
        plugin({"provider": "telnyx", "telnyx": {"apiKey": "k", "connectionId": "c"}}),
        f'{VC}.telnyx.publicKey: required for provider "telnyx" (or set TELNYX_PUBLIC_KEY)',
        id="telnyx public key",
    ),
    pytest.param(
        plugin({"provider": "plivo"}),
        f'{VC}.plivo.authId: required for provider "plivo" (or set PLIVO_AUTH_ID)',
        id="plivo id",
    ),
    pytest.param(
        plugin({"provider": "plivo", "plivo": {"authId": "MA1"}}),
        f'{VC}.plivo.authToken: required for provider "plivo" (or set PLIVO_AUTH_TOKEN)',
        id="plivo token",
    ),
    pytest.param(
        plugin({"provider": "plivo", "plivo": {"authId": "MA1", "authToken": "t"}}),
        f'{VC}.fromNumber: required for provider "plivo"',
        id="fromNumber",
    ),
    # cross-field rules
    pytest.param(
        plugin({"skipSignatureVerification": True, "serve": {"bind": "0.0.0.0"}}),
        f"{VC}.skipSignatureVerification: only allowed when serve.bind is a loopback address",
        id="skip sig, public bind",
    ),
    pytest.param(
        plugin(
            {"tunnel": {"provider": "tailscale-funnel", "allowNgrokFreeTierLoopbackBypass": True}}
        ),
        NGROK_ONLY,
        id="ngrok bypass",
    ),
    pytest.param(
        plugin({"tunnel": {"allowNgrokFreeTierLoopbackBypass": True}}),
        NGROK_ONLY,
        id="ngrok bypass, no tunnel",
    ),
    # our containers must be objects
    pytest.param({"plugins": []}, "plugins: expected an object", id="plugins not object"),
    pytest.param(
        {"plugins": {"entries": {"voice-call": True}}},
        "plugins.entries.voice-call: expected an object",
        id="entry not object",
    ),
    pytest.param(
        {"messages": {"tts": "openai"}},
        "messages.tts: expected an object",
        id="messages.tts not object",
    ),
]


@pytest.mark.parametrize(("data", "expected"), ERROR_CASES)
def test_invalid_config_names_the_exact_path(data: dict[str, Any], expected: str) -> None:
    message = error_of(data)
    assert message == expected
    assert "\n" not in message


def test_config_error_carries_path_and_message() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(plugin({"serve": {"port": "x"}}), {})
    assert caught.value.path == f"{VC}.serve.port"
    assert caught.value.message == "expected an integer"


def test_floats_accept_integers() -> None:
    config = parse_config(plugin({"outbound": {"notifyHangupDelaySec": 2}}), {})
    assert config.voice.outbound.notify_hangup_delay_sec == 2.0
    assert isinstance(config.voice.outbound.notify_hangup_delay_sec, float)


def test_top_level_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match=r"^<memory>: expected a JSON object"):
        parse_config([], {})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Credentials and env fallbacks
# ------------------------------------------------------------------------------------------

CARRIER_ENV = {
    "TWILIO_ACCOUNT_SID": "AC-env",
    "TWILIO_AUTH_TOKEN": "tw-env",
    "TELNYX_API_KEY": "tx-key-env",
    "TELNYX_CONNECTION_ID": "tx-conn-env",
    "TELNYX_PUBLIC_KEY": "tx-pk-env",
    "PLIVO_AUTH_ID": "MA-env",
    "PLIVO_AUTH_TOKEN": "pl-env",
}


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "plivo"])
def test_env_fills_carrier_credentials(provider: str) -> None:
    config = parse_config(
        plugin(
            {
                "provider": provider,
                "fromNumber": "+15550001111",
                "publicUrl": "https://voice.example.com/voice/webhook",
            }
        ),
        dict(CARRIER_ENV),
    )
    voice = config.voice
    assert voice.provider == provider
    assert (voice.twilio.account_sid, voice.twilio.auth_token) == ("AC-env", "tw-env")
    assert voice.telnyx.api_key == "tx-key-env"
    assert voice.telnyx.connection_id == "tx-conn-env"
    assert voice.telnyx.public_key == "tx-pk-env"
    assert (voice.plivo.auth_id, voice.plivo.auth_token) == ("MA-env", "pl-env")


def test_file_value_wins_over_env() -> None:
    config = parse_config(plugin({"twilio": {"accountSid": "AC-file"}}), dict(CARRIER_ENV))
    assert config.voice.twilio.account_sid == "AC-file"
    assert config.voice.twilio.auth_token == "tw-env"


def test_empty_env_value_does_not_count() -> None:
    message = error_of(
        plugin({"provider": "twilio", "fromNumber": "+15550001111"}),
        {"TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "t"},
    )
    assert message.startswith(f"{VC}.twilio.accountSid: required")


def test_telnyx_public_key_not_needed_when_signatures_are_skipped() -> None:
    config = parse_config(
        plugin(
            {
                "provider": "telnyx",
                "fromNumber": "+15550001111",
                "telnyx": {"apiKey": "k", "connectionId": "c"},
                "publicUrl": "https://voice.example.com/voice/webhook",
                "skipSignatureVerification": True,
            }
        ),
        {},
    )
    assert config.voice.telnyx.public_key is None
    assert config.voice.skip_signature_verification is True


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_skip_signature_verification_with_loopback_bind(bind: str) -> None:
    config = parse_config(plugin({"skipSignatureVerification": True, "serve": {"bind": bind}}), {})
    assert config.voice.skip_signature_verification is True


def test_tts_and_gateway_env_fallbacks() -> None:
    env = {
        "OPENAI_API_KEY": "sk-env",
        "XI_API_KEY": "xi-env",
        "VOICECALL_GATEWAY_TOKEN": "gw-env",
    }
    config = parse_config({}, env)
    assert config.tts.openai.api_key == "sk-env"
    assert config.tts.elevenlabs.api_key == "xi-env"
    assert config.gateway.auth.token == "gw-env"

    env["ELEVENLABS_API_KEY"] = "el-env"
    assert parse_config({}, env).tts.elevenlabs.api_key == "el-env"

    in_file = {"messages": {"tts": {"openai": {"apiKey": "sk-file"}}}}
    assert parse_config(in_file, env).tts.openai.api_key == "sk-file"


# ------------------------------------------------------------------------------------------
# TTS merge, enabling, shared-file tolerance
# ------------------------------------------------------------------------------------------


def test_plugin_tts_is_deep_merged_over_messages_tts() -> None:
    data = {
        "messages": {
            "tts": {
                "provider": "openai",
                "timeoutMs": 10000,
                "modelOverrides": {"enabled": True, "allowVoice": True},
                "openai": {"apiKey": "sk-core", "model": "gpt-4o-mini-tts", "voice": "alloy"},
                "elevenlabs": {"voiceId": "v1", "voiceSettings": {"stability": 0.3, "speed": 1.2}},
            }
        },
        **plugin(
            {
                "tts": {
                    "provider": "elevenlabs",
                    "modelOverrides": {"enabled": False},
                    "openai": {"voice": "coral"},
                    "elevenlabs": {"voiceSettings": {"speed": 0.9}},
                }
            }
        ),
    }
    tts = parse_config(data, {}).tts

    assert tts.provider == "elevenlabs"  # scalars replace
    assert tts.timeout_ms == 10000  # untouched keys stay
    assert tts.model_overrides == {"enabled": False, "allowVoice": True}  # objects merge
    assert tts.openai.api_key == "sk-core"
    assert tts.openai.model == "gpt-4o-mini-tts"
    assert tts.openai.voice == "coral"
    assert tts.elevenlabs.voice_id == "v1"
    assert tts.elevenlabs.voice_settings.stability == 0.3
    assert tts.elevenlabs.voice_settings.speed == 0.9


def test_plugin_tts_alone() -> None:
    tts = parse_config(plugin({"tts": {"openai": {"voice": "nova"}}}), {}).tts
    assert tts.openai.voice == "nova"


@pytest.mark.parametrize(
    ("entry", "config", "enabled"),
    [
        ({}, {}, False),
        ({"enabled": True}, {}, True),
        ({}, {"enabled": True}, True),
        ({"enabled": False}, {"enabled": True}, True),
        ({"enabled": True}, {"enabled": False}, True),
    ],
)
def test_either_enabled_flag_turns_the_plugin_on(
    entry: dict[str, Any], config: dict[str, Any], enabled: bool
) -> None:
    assert parse_config(plugin(config, **entry), {}).voice.enabled is enabled


def test_unrelated_openclaw_keys_are_ignored() -> None:
    data = {
        "agents": {"defaults": {"workspace": "~/clawd"}},
        "channels": {"whatsapp": {"allowFrom": ["not-a-number"]}},
        "messages": {"groupChat": {"mentionPatterns": ["@bot"]}},
        "plugins": {
            "allow": ["voice-call"],
            "entries": {"memory": {"enabled": True, "config": {"weird": [None]}}},
        },
        "somethingNew": 42,
    }
    config = parse_config(data, {})
    assert config == parse_config({}, {})


def test_null_sections_count_as_absent() -> None:
    data = {"messages": None, "gateway": None, "plugins": {"entries": {"voice-call": None}}}
    assert parse_config(data, {}) == parse_config({}, {})


# ------------------------------------------------------------------------------------------
# Files and paths
# ------------------------------------------------------------------------------------------


def test_resolve_config_path_order(tmp_path: pathlib.Path) -> None:
    env = {"VOICECALL_CONFIG": str(tmp_path / "env.json")}
    assert resolve_config_path(str(tmp_path / "cli.json"), env) == tmp_path / "cli.json"
    assert resolve_config_path(None, env) == tmp_path / "env.json"
    assert resolve_config_path(None, {}) == pathlib.Path(DEFAULT_CONFIG_PATH).expanduser()
    assert resolve_config_path("~/x.json", {}) == pathlib.Path("~/x.json").expanduser()


def test_missing_file_at_default_path_is_an_empty_config(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(env={})
    assert isinstance(config, AppConfig)
    assert config.source == str(tmp_path / ".openclaw" / "openclaw.json")
    assert config.voice == parse_config({}, {}).voice


def test_default_path_file_is_read(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".openclaw").mkdir()
    (tmp_path / ".openclaw" / "openclaw.json").write_text(
        "{plugins: {entries: {'voice-call': {config: {maxConcurrentCalls: 2}}}}}"
    )
    assert load_config(env={}).voice.max_concurrent_calls == 2


def test_env_config_path_is_used(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "vc.json5"
    path.write_text("{gateway: {port: 1234}}")
    assert load_config(env={"VOICECALL_CONFIG": str(path)}).gateway.port == 1234


def test_explicit_missing_file_is_an_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == f"{path}: config file not found"


def test_missing_file_named_by_env_is_an_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as caught:
        load_config(env={"VOICECALL_CONFIG": str(path)})
    assert str(caught.value) == f"{path}: config file not found"


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("{plugins: [1 2]}", "invalid JSON5: line 1: Unexpected"),
        ("{\n  gateway: {port: 1\n", "invalid JSON5: line 3: Unexpected end of input"),
        ("", "invalid JSON5: "),
    ],
)
def test_bad_json5_is_one_line_with_file_name(
    tmp_path: pathlib.Path, text: str, prefix: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    # The parser's own wording may change between json5 releases; the shape may not.
    assert str(caught.value).startswith(f"{path}: {prefix}")
    assert "\n" not in str(caught.value)
    assert "<string>" not in str(caught.value)
    assert caught.value.path == str(path)


def test_validation_error_from_a_file_names_the_json_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text("{plugins: {entries: {'voice-call': {config: {serve: {port: '80'}}}}}}")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env={})
    assert str(caught.value) == f"{VC}.serve.port: expected an integer"


def test_real_carriers_start_without_a_public_url() -> None:
    """Inbound-only behind a proxy, or a tunnel: the URL is not needed to start (issue 11)."""
    config = parse_config(
        plugin({"provider": "plivo", "fromNumber": "+15550001111"}), dict(CARRIER_ENV)
    )
    assert config.voice.public_url is None
    assert config.voice.tunnel.provider == "none"


def test_stale_call_reaper_zero_means_off_and_negative_is_refused() -> None:
    assert (
        parse_config(plugin({"staleCallReaperSeconds": 0}), {}).voice.stale_call_reaper_seconds == 0
    )
    assert error_of(plugin({"staleCallReaperSeconds": -1})) == (
        f"{VC}.staleCallReaperSeconds: must be at least 0"
    )


def test_ngrok_credentials_fall_back_to_the_environment() -> None:
    env = {"NGROK_AUTHTOKEN": "tok-env", "NGROK_DOMAIN": "calls.ngrok.app"}
    tunnel = parse_config(plugin({"tunnel": {"provider": "ngrok"}}), env).voice.tunnel
    assert (tunnel.ngrok_auth_token, tunnel.ngrok_domain) == ("tok-env", "calls.ngrok.app")
    tunnel = parse_config(
        plugin({"tunnel": {"provider": "ngrok", "ngrokAuthToken": "tok-file"}}), env
    ).voice.tunnel
    assert tunnel.ngrok_auth_token == "tok-file"


def test_openclaw_gateway_section_is_shared_not_ours() -> None:
    """OpenClaw's own gateway keys are left to OpenClaw; ours are still checked."""
    config = parse_config(
        {
            "gateway": {
                "mode": "local",
                "port": 18790,
                "bind": "loopback",
                "auth": {"mode": "token", "token": "gw-secret", "password": "x"},
                "tailscale": {"mode": "off", "resetOnExit": False},
                "reload": {"mode": "hybrid"},
                "controlUi": {"allowInsecureAuth": False},
            }
        },
        {},
    )
    assert (config.gateway.bind, config.gateway.port) == ("127.0.0.1", 18790)
    assert config.gateway.auth.token == "gw-secret"
    assert parse_config({"gateway": {"bind": "lan"}}, {}).gateway.bind == "0.0.0.0"
    assert parse_config({"gateway": {"bind": "10.1.2.3"}}, {}).gateway.bind == "10.1.2.3"
