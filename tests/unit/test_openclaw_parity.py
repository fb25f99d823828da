"""Every config OpenClaw's voice-call schema accepts loads here, resolved as OpenClaw resolves it.

The reference is OpenClaw's extensions/voice-call/src/config.ts (zod schema), its README's two
example blocks, and its loader's ``$include`` / ``env`` / ``.env`` / ``${VAR}`` rules.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from voicecall.config import ConfigError, load_config, parse_config
from voicecall.config_sources import merge_documents, read_dotenv
from voicecall.openclaw_keys import OPENCLAW_KEYS, inert_key_notices

VC = "plugins.entries.voice-call.config"

# Every key of OpenClaw's VoiceCallConfigSchema set to a non-default value it accepts.
MAXIMAL: dict[str, Any] = {
    "enabled": True,
    "provider": "twilio",
    "telnyx": {"apiKey": "KEY", "connectionId": "conn", "publicKey": "pk"},
    "twilio": {"accountSid": "AC1", "authToken": "tok"},
    "plivo": {"authId": "MA1", "authToken": "ptok"},
    "fromNumber": "+15550001234",
    "toNumber": "+15550005678",
    "inboundPolicy": "pairing",
    "allowFrom": ["+15550009999"],
    "inboundGreeting": "Hi!",
    "outbound": {"defaultMode": "conversation", "notifyHangupDelaySec": 0},
    "maxDurationSeconds": 60,
    "staleCallReaperSeconds": 0,
    "silenceTimeoutMs": 500,
    "transcriptTimeoutMs": 1000,
    "ringTimeoutMs": 1000,
    "maxConcurrentCalls": 2,
    "serve": {"port": 3335, "bind": "127.0.0.1", "path": "/hook"},
    "tailscale": {"mode": "off", "path": "/hook"},
    "tunnel": {
        "provider": "ngrok",
        "ngrokAuthToken": "ngtok",
        "ngrokDomain": "calls.ngrok.app",
        "allowNgrokFreeTierLoopbackBypass": True,
    },
    "webhookSecurity": {
        "allowedHosts": ["calls.ngrok.app"],
        "trustForwardingHeaders": True,
        "trustedProxyIPs": ["127.0.0.1"],
    },
    "streaming": {
        "enabled": True,
        "sttProvider": "openai-realtime",
        "openaiApiKey": "sk-x",
        "sttModel": "gpt-4o-transcribe",
        "silenceDurationMs": 600,
        "vadThreshold": 1,
        "streamPath": "/stream",
    },
    "publicUrl": "https://calls.example.com/hook",
    "skipSignatureVerification": False,
    "stt": {"provider": "openai", "model": "whisper-1"},
    "tts": {"provider": "openai", "openai": {"voice": "alloy"}},
    "store": "/tmp/voicecall-parity-store",
    "responseModel": "openai/gpt-4o-mini",
    "responseSystemPrompt": "Be brief.",
    "responseTimeoutMs": 1000,
}

# OpenClaw's README, "Config" block (the public-exposure lines are comments there).
README_CONFIG: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "toNumber": "+15550005678",
    "twilio": {"accountSid": "ACxxxxxxxx", "authToken": "your_token"},
    "plivo": {"authId": "MAxxxxxxxxxxxxxxxxxxxx", "authToken": "your_token"},
    "serve": {"port": 3334, "path": "/voice/webhook"},
    "outbound": {"defaultMode": "notify"},
    "streaming": {"enabled": True, "streamPath": "/voice/stream"},
}
README_EXPOSURES: list[dict[str, Any]] = [
    {"publicUrl": "https://example.ngrok.app/voice/webhook"},
    {"tunnel": {"provider": "ngrok"}},
    {"tailscale": {"mode": "funnel", "path": "/voice/webhook"}},
]
# OpenClaw's README, "TTS for calls" block.
README_TTS: dict[str, Any] = {"tts": {"provider": "openai", "openai": {"voice": "alloy"}}}


def doc(voice: dict[str, Any]) -> dict[str, Any]:
    return {"plugins": {"entries": {"voice-call": {"config": voice}}}}


def _paths(value: Any, prefix: str = "") -> set[str]:
    if not isinstance(value, dict) or prefix == "tts":
        return {prefix}
    out: set[str] = set()
    for key, item in value.items():
        out |= _paths(item, f"{prefix}.{key}" if prefix else key)
    return out


def test_the_maximal_openclaw_config_loads_with_every_value() -> None:
    voice = parse_config(doc(MAXIMAL), {}).voice
    assert voice.inbound_policy == "pairing"
    assert voice.stale_call_reaper_seconds == 0
    assert voice.tunnel.provider == "ngrok"
    assert (voice.tunnel.ngrok_auth_token, voice.tunnel.ngrok_domain) == (
        "ngtok",
        "calls.ngrok.app",
    )
    assert voice.tailscale.mode == "off"
    assert (voice.stt.provider, voice.stt.model) == ("openai", "whisper-1")
    assert voice.streaming.openai_api_key == "sk-x"
    assert voice.outbound.notify_hangup_delay_sec == 0


def test_the_reference_lists_every_key_of_the_maximal_config() -> None:
    listed = {key.path for key in OPENCLAW_KEYS}
    assert _paths(MAXIMAL) - listed == set()
    assert all(key.status in ("used", "differs", "inert") for key in OPENCLAW_KEYS)
    assert all(key.note for key in OPENCLAW_KEYS if key.status != "used")


@pytest.mark.parametrize("exposure", README_EXPOSURES, ids=["publicUrl", "ngrok", "tailscale"])
def test_openclaws_readme_examples_load(exposure: dict[str, Any]) -> None:
    config = parse_config(doc({**README_CONFIG, **exposure, **README_TTS}), {})
    assert config.voice.provider == "twilio"
    assert config.tts.openai.voice == "alloy"


@pytest.mark.parametrize(
    "minimal",
    [
        {},
        {"enabled": True},
        {"enabled": True, "provider": "mock"},
        {"tunnel": {"provider": "none"}, "tailscale": {"mode": "off"}},
        {"inboundPolicy": "pairing"},
    ],
)
def test_openclaw_minimal_configs_load_with_openclaws_defaults(minimal: dict[str, Any]) -> None:
    voice = parse_config(doc(minimal), {}).voice
    assert voice.stale_call_reaper_seconds == 0
    assert voice.tunnel.provider == "none"
    assert voice.tailscale.path == "/voice/webhook"
    assert voice.public_url is None


def test_inert_keys_each_get_one_start_up_line() -> None:
    config = parse_config(doc({"stt": {"model": "whisper-1"}, "tts": {"auto": "always"}}), {})
    assert len(config.notices) == 2
    assert config.notices[0].startswith(f"{VC}.stt.model is accepted")
    assert "tts.auto" in config.notices[1]
    assert parse_config(doc({}), {}).notices == ()
    assert inert_key_notices({"stt": {}}) == ()


# ---------------------------------------------------------------- the loader


def write(path: pathlib.Path, data: Any) -> pathlib.Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_var_substitution_makes_the_secret_not_the_literal(tmp_path: pathlib.Path) -> None:
    cfg = write(
        tmp_path / "openclaw.json",
        doc(
            {
                "provider": "twilio",
                "fromNumber": "+15550001234",
                "twilio": {
                    "accountSid": "${TWILIO_ACCOUNT_SID}",
                    "authToken": "${TWILIO_AUTH_TOKEN}",
                },
            }
        ),
    )
    env = {"TWILIO_ACCOUNT_SID": "AC9", "TWILIO_AUTH_TOKEN": "s3cret", "HOME": str(tmp_path)}
    voice = load_config(cfg, env).voice
    assert (voice.twilio.account_sid, voice.twilio.auth_token) == ("AC9", "s3cret")


def test_an_unresolved_var_names_the_path_and_the_variable(tmp_path: pathlib.Path) -> None:
    cfg = write(tmp_path / "c.json", doc({"twilio": {"authToken": "x-${MISSING_TOKEN}"}}))
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, {"HOME": str(tmp_path)})
    assert str(caught.value) == (
        f"{VC}.twilio.authToken: ${{MISSING_TOKEN}} is not set (environment variable MISSING_TOKEN)"
    )


def test_escaped_and_lowercase_references_stay_literal(tmp_path: pathlib.Path) -> None:
    cfg = write(tmp_path / "c.json", doc({"inboundGreeting": "$${HOME_TOWN} ${lower} $5"}))
    voice = load_config(cfg, {"HOME": str(tmp_path)}).voice
    assert voice.inbound_greeting == "${HOME_TOWN} ${lower} $5"


def test_env_block_and_dotenv_files_fill_only_what_is_missing(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ".env").write_text(
        "# global\nexport FROM_DOTENV=dotenv\nSHARED='from-dotenv'\nBOTH=\"global\"\n"
    )
    cfg = write(
        tmp_path / "c.json",
        {
            "env": {"FROM_BLOCK": "block", "SHARED": "block", "vars": {"NESTED": "nested"}},
            **doc(
                {
                    "inboundGreeting": "${FROM_DOTENV} ${SHARED} ${FROM_BLOCK} ${NESTED} ${BOTH}",
                    "twilio": {"authToken": "${PROCESS}"},
                }
            ),
        },
    )
    env = {"OPENCLAW_STATE_DIR": str(state), "PROCESS": "proc", "BOTH": "process"}
    voice = load_config(cfg, env).voice
    assert voice.inbound_greeting == "dotenv from-dotenv block nested process"
    assert voice.twilio.auth_token == "proc"


def test_dotenv_credentials_reach_the_env_fallbacks(tmp_path: pathlib.Path) -> None:
    (tmp_path / ".openclaw").mkdir()
    (tmp_path / ".openclaw" / ".env").write_text("NGROK_AUTHTOKEN=from-dotenv\n")
    cfg = write(tmp_path / "c.json", doc({"tunnel": {"provider": "ngrok"}}))
    assert load_config(cfg, {"HOME": str(tmp_path)}).voice.tunnel.ngrok_auth_token == (
        "from-dotenv"
    )


def test_include_merges_with_siblings_winning(tmp_path: pathlib.Path) -> None:
    (tmp_path / "parts").mkdir()
    write(
        tmp_path / "parts" / "voice.json5",
        {"provider": "mock", "allowFrom": ["+15550000001"], "serve": {"port": 4000, "path": "/a"}},
    )
    write(tmp_path / "parts" / "more.json5", {"allowFrom": ["+15550000002"]})
    cfg = write(
        tmp_path / "c.json",
        doc({"$include": ["./parts/voice.json5", "parts/more.json5"], "serve": {"port": 4001}}),
    )
    voice = load_config(cfg, {"HOME": str(tmp_path)}).voice
    assert voice.allow_from == ("+15550000001", "+15550000002")
    assert (voice.serve.port, voice.serve.path) == (4001, "/a")


def test_include_refuses_cycles_and_escapes(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "a.json", {"$include": "b.json"})
    write(tmp_path / "b.json", {"$include": "a.json"})
    cfg = write(tmp_path / "c.json", {"plugins": {"$include": "a.json"}})
    with pytest.raises(ConfigError, match="circular include"):
        load_config(cfg, {"HOME": str(tmp_path)})
    inner = tmp_path / "inner"
    inner.mkdir()
    cfg = write(inner / "c.json", {"plugins": {"$include": "../a.json"}})
    with pytest.raises(ConfigError, match="escapes the config directory"):
        load_config(cfg, {"HOME": str(tmp_path)})


def test_merge_and_dotenv_rules() -> None:
    assert merge_documents({"a": [1], "b": {"c": 1}}, {"a": [2], "b": {"d": 2}}) == {
        "a": [1, 2],
        "b": {"c": 1, "d": 2},
    }
    assert merge_documents({"a": 1}, {"a": {"x": 1}}) == {"a": {"x": 1}}
    assert read_dotenv(pathlib.Path("/nonexistent/.env")) == {}
