"""Which voice speaks a call and which ear hears it (SPEC §6): pure rules, table-tested.

Two questions are answered here, with no I/O:

* **The TTS settings.** The plugin's ``tts`` block has the shape of OpenClaw's core
  ``messages.tts`` and is deep-merged over it: objects merge key by key; any other value
  (a string, a number, an array) replaces the one beneath; ``null`` clears the key so its
  default applies again.
* **The speech path of a call.** With media streaming on, the merged provider (OpenAI or
  ElevenLabs) speaks over the stream and the streaming transcriber listens. Edge never speaks a
  call (it does not produce telephony PCM). With streaming off, the carrier's native voice and
  recogniser do both. With streaming on but no usable TTS (Edge, or no key) or no STT key, the
  call runs natively, without a stream at all (Twilio cannot ``<Say>`` while a
  ``<Connect><Stream>`` holds the call), and one start-up line says why. The offline mock
  carrier and simulated carriers without keys keep the labelled offline tone doubles, so demos
  and tests run with no account.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = [
    "SpeechInputs",
    "SpeechPath",
    "SpeechPlan",
    "TtsProvider",
    "choose_speech",
    "deep_merge",
    "resolve_tts_provider",
]


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged onto ``base``: objects key by key, ``None`` clears, the rest replaces.

    Neither argument is changed; nested objects in the result are fresh dicts.
    """
    merged: dict[str, Any] = dict(base)
    for key, value in over.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        elif isinstance(value, Mapping):
            merged[key] = deep_merge({}, value)
        else:
            merged[key] = value
    return merged


class TtsProvider(enum.StrEnum):
    OPENAI = "openai"
    ELEVENLABS = "elevenlabs"
    EDGE = "edge"
    OFFLINE = "offline"
    """The labelled offline tone double (mock carrier, simulators without keys)."""


class SpeechPath(enum.StrEnum):
    STREAM = "stream"
    """Media stream: synthesised audio out, streaming transcription in."""
    NATIVE = "native"
    """The carrier's own voice and speech recognition; no media stream is opened."""


@attrs.frozen
class SpeechInputs:
    """What the choice depends on, already reduced to facts.

    Attributes:
        streaming: ``streaming.enabled``.
        provider: the merged ``tts.provider`` (None when unset).
        openai_key: an OpenAI key for TTS is configured (file or env).
        elevenlabs_key: an ElevenLabs key is configured.
        stt_key: a key for the streaming transcriber (``streaming.openaiApiKey`` or env).
        simulated: the carrier is a simulated one (its API on loopback): without keys it
            keeps the offline doubles rather than going native.
        offline_carrier: the carrier is the offline mock, whose simulated callee speaks and
            hears only the tone code: it always streams with the offline doubles.
    """

    streaming: bool
    provider: str | None = None
    openai_key: bool = False
    elevenlabs_key: bool = False
    stt_key: bool = False
    simulated: bool = False
    offline_carrier: bool = False


@attrs.frozen
class SpeechPlan:
    """How calls speak and listen.

    Attributes:
        path: over the media stream, or natively.
        tts: who synthesises on a stream (None when native).
        stt: who transcribes on a stream: ``"openai-realtime"`` or ``"offline"`` (None native).
        notice: the one start-up line saying why streaming was not used as configured.
    """

    path: SpeechPath
    tts: TtsProvider | None = None
    stt: str | None = None
    notice: str | None = None


_PROVIDERS: Final = {p.value: p for p in TtsProvider if p is not TtsProvider.OFFLINE}


def resolve_tts_provider(
    provider: str | None, *, openai_key: bool, elevenlabs_key: bool
) -> TtsProvider:
    """The provider that would speak: the configured one, else the first with a key
    (OpenAI, then ElevenLabs), else Edge (OpenClaw's keyless default)."""
    if provider is not None:
        if provider not in _PROVIDERS:
            raise ValueError(f"unknown TTS provider {provider!r}")
        return _PROVIDERS[provider]
    if openai_key:
        return TtsProvider.OPENAI
    if elevenlabs_key:
        return TtsProvider.ELEVENLABS
    return TtsProvider.EDGE


def choose_speech(inputs: SpeechInputs) -> SpeechPlan:
    """The speech path for every call this gateway makes or takes (SPEC §6)."""
    if not inputs.streaming:
        return SpeechPlan(SpeechPath.NATIVE)
    if inputs.offline_carrier:
        return SpeechPlan(SpeechPath.STREAM, tts=TtsProvider.OFFLINE, stt="offline")
    provider = resolve_tts_provider(
        inputs.provider, openai_key=inputs.openai_key, elevenlabs_key=inputs.elevenlabs_key
    )
    problem: str | None = None
    if provider is TtsProvider.EDGE:
        problem = "Edge TTS cannot speak calls (telephony needs PCM)"
    elif provider is TtsProvider.OPENAI and not inputs.openai_key:
        problem = "tts.provider is openai but no OpenAI key is set (OPENAI_API_KEY)"
    elif provider is TtsProvider.ELEVENLABS and not inputs.elevenlabs_key:
        problem = "tts.provider is elevenlabs but no ElevenLabs key is set (ELEVENLABS_API_KEY)"
    elif not inputs.stt_key:
        problem = "streaming transcription has no OpenAI key (streaming.openaiApiKey)"
    if problem is None:
        return SpeechPlan(SpeechPath.STREAM, tts=provider, stt="openai-realtime")
    if inputs.simulated:
        return SpeechPlan(
            SpeechPath.STREAM,
            tts=TtsProvider.OFFLINE,
            stt="offline",
            notice=f"streaming uses the offline tone doubles: {problem}",
        )
    return SpeechPlan(
        SpeechPath.NATIVE,
        notice=f"streaming is on but calls speak natively: {problem}",
    )
