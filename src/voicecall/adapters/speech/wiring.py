"""Settings to speech adapters: the container's helpers for the voice and the ear of calls.

The choice itself is the domain's (``voicecall.domain.tts.choose_speech``); this module only
reduces the config to the facts it needs and builds the chosen adapters with their settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from voicecall.adapters.speech.elevenlabs_tts import (
    DEFAULT_ELEVENLABS_MODEL,
    DEFAULT_ELEVENLABS_VOICE,
    ElevenLabsSynthesizer,
    ElevenLabsTts,
)
from voicecall.adapters.speech.offline import ToneSynthesizer, ToneTranscriber
from voicecall.adapters.speech.openai_realtime import (
    OpenAiRealtimeTranscriber,
    RealtimeConnect,
    RealtimeStt,
    realtime_url,
)
from voicecall.adapters.speech.openai_tts import (
    DEFAULT_OPENAI_TTS_MODEL,
    DEFAULT_OPENAI_VOICE,
    OpenAiSynthesizer,
    OpenAiTts,
    openai_base_url,
)
from voicecall.adapters.speech.phrase_cache import CachedSynthesizer
from voicecall.config import AppConfig
from voicecall.domain.ports import Clock, SpeechSynthesizer, Transcriber
from voicecall.domain.signed_url import is_loopback
from voicecall.domain.tts import SpeechInputs, SpeechPlan, TtsProvider, choose_speech

__all__ = ["build_synthesizer", "build_transcriber", "speech_plan"]

log = logging.getLogger(__name__)


def _simulated(config: AppConfig) -> bool:
    """A carrier reached over plain HTTP or on loopback is a simulator (every real carrier's
    API is HTTPS on the internet)."""
    voice = config.voice
    section = getattr(voice, voice.provider, None)
    base = getattr(section, "api_base_url", None)
    if not base:
        return False
    parts = urlsplit(base)
    host = parts.hostname or ""
    return parts.scheme == "http" or host == "localhost" or is_loopback(host)


def speech_plan(config: AppConfig) -> SpeechPlan:
    """How this gateway's calls speak and listen (SPEC §6)."""
    tts = config.tts
    return choose_speech(
        SpeechInputs(
            streaming=config.voice.streaming.enabled,
            provider=tts.provider,
            openai_key=bool(tts.openai.api_key),
            elevenlabs_key=bool(tts.elevenlabs.api_key),
            stt_key=bool(config.voice.streaming.openai_api_key),
            simulated=_simulated(config),
            offline_carrier=config.voice.provider == "mock",
        )
    )


def _timeout_s(config: AppConfig) -> float:
    return (config.tts.timeout_ms or 10_000) / 1000


def openai_tts_settings(config: AppConfig) -> OpenAiTts:
    openai = config.tts.openai
    return OpenAiTts(
        api_key=openai.api_key or "",
        model=openai.model or DEFAULT_OPENAI_TTS_MODEL,
        voice=openai.voice or DEFAULT_OPENAI_VOICE,
        instructions=openai.instructions,
        speed=openai.speed,
        base_url=openai.base_url,
        timeout_s=_timeout_s(config),
    )


def elevenlabs_tts_settings(config: AppConfig) -> ElevenLabsTts:
    eleven = config.tts.elevenlabs
    settings = eleven.voice_settings
    voice_settings: dict[str, Any] = {
        name: getattr(settings, name)
        for name in ("stability", "similarity_boost", "style", "use_speaker_boost", "speed")
        if getattr(settings, name) is not None
    }
    return ElevenLabsTts(
        api_key=eleven.api_key or "",
        voice_id=eleven.voice_id or DEFAULT_ELEVENLABS_VOICE,
        model_id=eleven.model_id or DEFAULT_ELEVENLABS_MODEL,
        base_url=eleven.base_url,
        # ElevenLabs takes ISO 639-1; the call's language applies unless one is configured.
        language_code=eleven.language_code or config.voice.language.split("-")[0].lower(),
        optimize_streaming_latency=eleven.optimize_streaming_latency,
        seed=eleven.seed,
        apply_text_normalization=eleven.apply_text_normalization,
        voice_settings=voice_settings,
        timeout_s=_timeout_s(config),
    )


def build_synthesizer(
    config: AppConfig, plan: SpeechPlan, *, cache: bool = True
) -> SpeechSynthesizer:
    """The synthesiser for streamed calls under ``plan`` (the offline double when native)."""
    inner: OpenAiSynthesizer | ElevenLabsSynthesizer
    if plan.tts is TtsProvider.OPENAI:
        inner = OpenAiSynthesizer(openai_tts_settings(config))
    elif plan.tts is TtsProvider.ELEVENLABS:
        inner = ElevenLabsSynthesizer(elevenlabs_tts_settings(config))
    else:
        return ToneSynthesizer(chars_per_sec=config.voice.mock.speech_chars_per_sec)
    if not cache:
        return inner
    return CachedSynthesizer(
        inner, config.voice.store_path / "phrase-cache", language=config.voice.language
    )


def realtime_settings(config: AppConfig, env: Mapping[str, str] | None = None) -> RealtimeStt:
    streaming = config.voice.streaming
    base = openai_base_url(config.tts.openai.base_url, os.environ if env is None else env)
    return RealtimeStt(
        api_key=streaming.openai_api_key or "",
        model=streaming.stt_model,
        language=config.voice.language,
        vad_threshold=streaming.vad_threshold,
        silence_duration_ms=streaming.silence_duration_ms,
        url=realtime_url(base),
    )


def build_transcriber(
    config: AppConfig, plan: SpeechPlan, clock: Clock, connect: RealtimeConnect | None = None
) -> Transcriber:
    """The transcriber for streamed calls under ``plan``."""
    if plan.stt == "openai-realtime":
        return OpenAiRealtimeTranscriber(realtime_settings(config), clock, connect)
    return ToneTranscriber(silence_ms=config.voice.silence_timeout_ms)
