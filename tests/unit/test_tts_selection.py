"""SPEC §6: the deep merge of the plugin's tts over messages.tts, and the speech-path table."""

from __future__ import annotations

from typing import Any

import pytest

from voicecall.adapters.speech.wiring import speech_plan
from voicecall.config import parse_config
from voicecall.domain.tts import (
    SpeechInputs,
    SpeechPath,
    SpeechPlan,
    TtsProvider,
    choose_speech,
    deep_merge,
)


@pytest.mark.parametrize(
    ("base", "over", "expected"),
    [
        ({}, {}, {}),
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"o": {"x": 1, "y": 2}}, {"o": {"y": 3}}, {"o": {"x": 1, "y": 3}}),
        ({"o": {"p": {"q": 1, "r": 2}}}, {"o": {"p": {"r": 9}}}, {"o": {"p": {"q": 1, "r": 9}}}),
        # Arrays replace; they are never concatenated or merged by index.
        ({"l": [1, 2, 3]}, {"l": [9]}, {"l": [9]}),
        ({"l": [1, 2]}, {"l": []}, {"l": []}),
        # A scalar replaces an object and an object replaces a scalar.
        ({"o": {"x": 1}}, {"o": "flat"}, {"o": "flat"}),
        ({"o": "flat"}, {"o": {"x": 1}}, {"o": {"x": 1}}),
        # null clears the key: its default applies again.
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"o": {"x": 1, "y": 2}}, {"o": {"x": None}}, {"o": {"y": 2}}),
        ({"o": {"x": 1}}, {"o": None}, {}),
        ({}, {"missing": None}, {}),
        # false and 0 are values, not absences.
        ({"a": True, "n": 5}, {"a": False, "n": 0}, {"a": False, "n": 0}),
    ],
)
def test_deep_merge(base: dict[str, Any], over: dict[str, Any], expected: dict[str, Any]) -> None:
    before = repr(base), repr(over)
    assert deep_merge(base, over) == expected
    assert (repr(base), repr(over)) == before  # neither input is changed


def test_the_plugin_tts_block_is_merged_over_messages_tts() -> None:
    data = {
        "messages": {
            "tts": {
                "provider": "openai",
                "openai": {"apiKey": "core-key", "voice": "alloy", "model": "tts-1"},
                "elevenlabs": {"voiceSettings": {"stability": 0.2, "style": 0.1}},
            }
        },
        "plugins": {
            "entries": {
                "voice-call": {
                    "config": {
                        "tts": {
                            "provider": "elevenlabs",
                            "openai": {"voice": "nova", "model": None},
                            "elevenlabs": {"apiKey": "el", "voiceSettings": {"stability": 0.9}},
                        }
                    }
                }
            }
        },
    }
    tts = parse_config(data, env={}).tts
    assert tts.provider == "elevenlabs"
    assert (tts.openai.api_key, tts.openai.voice, tts.openai.model) == ("core-key", "nova", None)
    assert tts.elevenlabs.api_key == "el"
    assert tts.elevenlabs.voice_settings.stability == 0.9
    assert tts.elevenlabs.voice_settings.style == 0.1


STREAM_OPENAI = SpeechPlan(SpeechPath.STREAM, TtsProvider.OPENAI, "openai-realtime")
STREAM_ELEVEN = SpeechPlan(SpeechPath.STREAM, TtsProvider.ELEVENLABS, "openai-realtime")
NATIVE = SpeechPath.NATIVE


# (streaming, provider, openai key, elevenlabs key, stt key) -> path, tts, notice fragment
TABLE: list[tuple[bool, str | None, bool, bool, bool, SpeechPath, TtsProvider | None, str]] = [
    # Streaming off: the carrier's native voice, whatever the keys.
    (False, None, False, False, False, NATIVE, None, ""),
    (False, "openai", True, True, True, NATIVE, None, ""),
    (False, "elevenlabs", True, True, True, NATIVE, None, ""),
    (False, "edge", False, False, False, NATIVE, None, ""),
    # Streaming on with a usable provider and an STT key: the provider speaks.
    (True, "openai", True, False, True, SpeechPath.STREAM, TtsProvider.OPENAI, ""),
    (True, "elevenlabs", False, True, True, SpeechPath.STREAM, TtsProvider.ELEVENLABS, ""),
    (True, "elevenlabs", True, True, True, SpeechPath.STREAM, TtsProvider.ELEVENLABS, ""),
    # No provider set: the first with a key.
    (True, None, True, True, True, SpeechPath.STREAM, TtsProvider.OPENAI, ""),
    (True, None, False, True, True, SpeechPath.STREAM, TtsProvider.ELEVENLABS, ""),
    # Edge never speaks calls; a missing key or STT key means native with a reason.
    (True, "edge", True, True, True, NATIVE, None, "Edge TTS cannot speak calls"),
    (True, None, False, False, True, NATIVE, None, "Edge TTS cannot speak calls"),
    (True, "openai", False, True, True, NATIVE, None, "no OpenAI key"),
    (True, "elevenlabs", True, False, True, NATIVE, None, "no ElevenLabs key"),
    (True, "openai", True, False, False, NATIVE, None, "streaming transcription has no"),
    (True, "elevenlabs", False, True, False, NATIVE, None, "streaming transcription has no"),
]


@pytest.mark.parametrize(
    ("streaming", "provider", "openai_key", "eleven_key", "stt_key", "path", "tts", "why"), TABLE
)
def test_speech_path_table(
    streaming: bool,
    provider: str | None,
    openai_key: bool,
    eleven_key: bool,
    stt_key: bool,
    path: SpeechPath,
    tts: TtsProvider | None,
    why: str,
) -> None:
    inputs = SpeechInputs(streaming, provider, openai_key, eleven_key, stt_key)
    plan = choose_speech(inputs)
    assert (plan.path, plan.tts) == (path, tts)
    if why:
        assert plan.notice is not None
        assert why in plan.notice
        assert plan.notice.startswith("streaming is on but calls speak natively")
    else:
        assert plan.notice is None
    if path is SpeechPath.STREAM:
        assert plan.stt == "openai-realtime"
    # The offline mock always streams with the tone doubles, keys or not.
    mock = choose_speech(
        SpeechInputs(streaming, provider, openai_key, eleven_key, stt_key, offline_carrier=True)
    )
    if streaming:
        assert mock == SpeechPlan(SpeechPath.STREAM, TtsProvider.OFFLINE, "offline")
    else:
        assert mock.path is NATIVE
    # A simulated carrier without a usable key keeps the doubles instead of going native.
    simulated = choose_speech(
        SpeechInputs(streaming, provider, openai_key, eleven_key, stt_key, simulated=True)
    )
    if why:
        assert (simulated.path, simulated.tts, simulated.stt) == (
            SpeechPath.STREAM,
            TtsProvider.OFFLINE,
            "offline",
        )
        assert simulated.notice is not None and why in simulated.notice
    else:
        assert simulated == plan


def test_an_unknown_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown TTS provider 'polly'"):
        choose_speech(SpeechInputs(True, "polly", True, True, True))


def _config(plugin: dict[str, Any], tts: dict[str, Any], env: dict[str, str]) -> Any:
    base = {
        "provider": "twilio",
        "fromNumber": "+15550100000",
        "publicUrl": "https://voice.example.com/voice/webhook",
        "twilio": {"accountSid": "AC1", "authToken": "t"},
        "streaming": {"enabled": True},
    }
    data = {
        "plugins": {"entries": {"voice-call": {"config": {**base, **plugin}}}},
        "messages": {"tts": tts},
    }
    return parse_config(data, env=env)


def test_keys_come_from_the_file_before_the_environment() -> None:
    config = _config(
        {"streaming": {"enabled": True, "openaiApiKey": "stt-file"}},
        {"provider": "openai", "openai": {"apiKey": "tts-file"}},
        {"OPENAI_API_KEY": "env", "ELEVENLABS_API_KEY": "el-env"},
    )
    assert config.tts.openai.api_key == "tts-file"
    assert config.voice.streaming.openai_api_key == "stt-file"
    assert config.tts.elevenlabs.api_key == "el-env"
    assert speech_plan(config) == STREAM_OPENAI


def test_env_keys_fill_in_and_xi_api_key_is_accepted() -> None:
    config = _config({}, {"provider": "elevenlabs"}, {"XI_API_KEY": "xi", "OPENAI_API_KEY": "o"})
    assert config.tts.elevenlabs.api_key == "xi"
    assert config.voice.streaming.openai_api_key == "o"
    assert speech_plan(config) == STREAM_ELEVEN


def test_a_real_carrier_without_keys_runs_natively_with_one_reason() -> None:
    plan = speech_plan(_config({}, {}, {}))
    assert plan.path is NATIVE
    assert plan.notice == (
        "streaming is on but calls speak natively: "
        "Edge TTS cannot speak calls (telephony needs PCM)"
    )


def test_native_mode_opens_no_stream_and_the_container_wires_the_choice(tmp_path: Any) -> None:
    from voicecall.adapters.speech.offline import ToneSynthesizer, ToneTranscriber
    from voicecall.adapters.speech.openai_realtime import OpenAiRealtimeTranscriber
    from voicecall.adapters.speech.phrase_cache import CachedSynthesizer
    from voicecall.container import build_container, stream_url

    store = {"store": str(tmp_path / "store")}
    native = _config(store, {}, {})
    assert stream_url(native) is None
    keyed = _config(store, {"provider": "openai"}, {"OPENAI_API_KEY": "k"})
    assert stream_url(keyed) == "wss://voice.example.com/voice/stream"
    container = build_container(keyed)
    synthesizer = container.synthesizer()
    assert isinstance(synthesizer, CachedSynthesizer) and synthesizer.name == "openai"
    assert isinstance(container.transcriber(), OpenAiRealtimeTranscriber)
    mock = parse_config(
        {
            "plugins": {
                "entries": {"voice-call": {"config": {**store, "streaming": {"enabled": True}}}}
            }
        },
        env={"OPENAI_API_KEY": "k"},
    )
    offline = build_container(mock)
    assert isinstance(offline.synthesizer(), ToneSynthesizer)
    assert isinstance(offline.transcriber(), ToneTranscriber)


# The notice is the operator's one start-up line: it names the missing key and where to set it.
@pytest.mark.parametrize(
    ("provider", "openai_key", "eleven_key", "stt_key", "reason"),
    [
        (
            "openai",
            False,
            True,
            True,
            "tts.provider is openai but no OpenAI key is set (OPENAI_API_KEY)",
        ),
        (
            "elevenlabs",
            True,
            False,
            True,
            "tts.provider is elevenlabs but no ElevenLabs key is set (ELEVENLABS_API_KEY)",
        ),
        (
            "openai",
            True,
            False,
            False,
            "streaming transcription has no OpenAI key (streaming.openaiApiKey)",
        ),
        (
            "edge",
            True,
            True,
            True,
            "Edge TTS cannot speak calls (telephony needs PCM)",
        ),
    ],
)
def test_the_notice_names_the_missing_key_and_its_setting(
    provider: str, openai_key: bool, eleven_key: bool, stt_key: bool, reason: str
) -> None:
    inputs = SpeechInputs(True, provider, openai_key, eleven_key, stt_key)
    assert choose_speech(inputs).notice == f"streaming is on but calls speak natively: {reason}"
    simulated = SpeechInputs(True, provider, openai_key, eleven_key, stt_key, simulated=True)
    assert choose_speech(simulated).notice == (f"streaming uses the offline tone doubles: {reason}")
