"""Every key of OpenClaw's voice-call schema, with what this project does with it.

The reference is OpenClaw's ``extensions/voice-call/src/config.ts`` (its zod schema, read at
commit 01ba9fd). Each row is one key path under ``plugins.entries.voice-call.config``, OpenClaw's
default, and its status here:

* ``used``: read and acted on, as in OpenClaw;
* ``differs``: read and acted on, deliberately differently (the note says how);
* ``inert``: accepted so a migrated file loads, but with no effect here; the gateway says so
  in one line at start for each such key the file sets.

``docs/configuration.md`` includes :data:`OPENCLAW_KEYS` as its OpenClaw column; a test loads a
config with every one of these keys set, so a key the schema accepts cannot be refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

__all__ = ["OPENCLAW_KEYS", "OpenClawKey", "inert_key_notices"]

Status = Literal["used", "differs", "inert"]


@attrs.frozen
class OpenClawKey:
    """One row of the reference: ``path`` below the plugin config, OpenClaw's default."""

    path: str
    openclaw_default: str
    status: Status
    note: str = ""


def _k(path: str, default: str, status: Status = "used", note: str = "") -> OpenClawKey:
    return OpenClawKey(path, default, status, note)


OPENCLAW_KEYS: Final[tuple[OpenClawKey, ...]] = (
    _k("enabled", "false"),
    _k("provider", "unset", "differs", "unset means the offline mock here"),
    _k("telnyx.apiKey", "env TELNYX_API_KEY"),
    _k("telnyx.connectionId", "env TELNYX_CONNECTION_ID"),
    _k("telnyx.publicKey", "env TELNYX_PUBLIC_KEY"),
    _k("twilio.accountSid", "env TWILIO_ACCOUNT_SID"),
    _k("twilio.authToken", "env TWILIO_AUTH_TOKEN"),
    _k("plivo.authId", "env PLIVO_AUTH_ID"),
    _k("plivo.authToken", "env PLIVO_AUTH_TOKEN"),
    _k("fromNumber", "unset"),
    _k("toNumber", "unset"),
    _k(
        "inboundPolicy",
        "disabled",
        "differs",
        '"pairing" works here: unknown callers hear a code the operator approves',
    ),
    _k("allowFrom", "[]"),
    _k("inboundGreeting", "unset", "differs", 'unset means "Hello! How can I help you today?"'),
    _k("outbound.defaultMode", "notify"),
    _k("outbound.notifyHangupDelaySec", "3"),
    _k("maxDurationSeconds", "300"),
    _k("staleCallReaperSeconds", "0", "used", "0 is off; 120-300 recommended in production"),
    _k("silenceTimeoutMs", "800"),
    _k("transcriptTimeoutMs", "180000"),
    _k("ringTimeoutMs", "30000"),
    _k("maxConcurrentCalls", "1"),
    _k("serve.port", "3334"),
    _k("serve.bind", "127.0.0.1"),
    _k("serve.path", "/voice/webhook"),
    _k("tailscale.mode", "off", "used", "legacy: maps to tunnel.provider tailscale-serve/funnel"),
    _k("tailscale.path", "/voice/webhook", "used", "legacy: the path Tailscale publishes"),
    _k("tunnel.provider", "none", "used", "ngrok in-process (the ngrok SDK); tailscale CLI"),
    _k("tunnel.ngrokAuthToken", "env NGROK_AUTHTOKEN"),
    _k(
        "tunnel.ngrokDomain", "env NGROK_DOMAIN", "used", "recommended: the URL survives reconnects"
    ),
    _k(
        "tunnel.allowNgrokFreeTierLoopbackBypass",
        "false",
        "differs",
        "only lets loopback forwarding headers rebuild the URL; a bad signature never passes",
    ),
    _k("webhookSecurity.allowedHosts", "[]"),
    _k("webhookSecurity.trustForwardingHeaders", "false"),
    _k("webhookSecurity.trustedProxyIPs", "[]"),
    _k("streaming.enabled", "false"),
    _k("streaming.sttProvider", "openai-realtime"),
    _k("streaming.openaiApiKey", "env OPENAI_API_KEY"),
    _k("streaming.sttModel", "gpt-4o-transcribe"),
    _k("streaming.silenceDurationMs", "800"),
    _k("streaming.vadThreshold", "0.5"),
    _k("streaming.streamPath", "/voice/stream"),
    _k("publicUrl", "unset", "used", "wins over any tunnel; optional"),
    _k(
        "skipSignatureVerification",
        "false",
        "differs",
        "only with a loopback serve.bind; no NODE_ENV/override variable",
    ),
    _k("stt.provider", "openai", "inert", "calls transcribe with streaming.* or the carrier"),
    _k("stt.model", "whisper-1", "inert", "calls transcribe with streaming.* or the carrier"),
    _k("tts", "unset", "used", "deep-merged over messages.tts"),
    _k("tts.auto", "unset", "inert", "a messaging setting; calls always speak"),
    _k("tts.mode", "unset", "inert", "a messaging setting"),
    _k("tts.summaryModel", "unset", "inert", "a messaging setting"),
    _k("tts.modelOverrides", "unset", "inert", "a messaging setting"),
    _k("tts.prefsPath", "unset", "inert", "a messaging setting"),
    _k("tts.edge", "unset", "inert", "Edge TTS is never used for calls (not PCM)"),
    _k("store", "~/.openclaw/voice-calls"),
    _k("responseModel", "openai/gpt-4o-mini"),
    _k("responseSystemPrompt", "unset", "used", "unset means a phone-style built-in prompt"),
    _k("responseTimeoutMs", "30000"),
)


def _present(data: Mapping[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def inert_key_notices(plugin_config: Mapping[str, Any]) -> tuple[str, ...]:
    """One line per key set in ``plugin_config`` that OpenClaw reads and this project ignores."""
    return tuple(
        f"plugins.entries.voice-call.config.{key.path} is accepted for OpenClaw compatibility "
        f"and has no effect here ({key.note})"
        for key in OPENCLAW_KEYS
        if key.status == "inert" and _present(plugin_config, key.path)
    )
