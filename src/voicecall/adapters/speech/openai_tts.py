"""OpenAI text-to-speech over a media stream: ``audio.speech`` streamed as 24 kHz PCM.

The request asks for ``response_format="pcm"`` (raw 24 kHz signed 16-bit little-endian mono;
https://platform.openai.com/docs/guides/text-to-speech, "Supported output formats") and reads
the body as it arrives: each chunk is resampled to 8 kHz with soxr and encoded to μ-law at once,
so the first frame reaches the carrier while the rest is still being synthesised. The SDK (2.x)
runs on httpx and honours ``OPENAI_BASE_URL``, so a compatible server or the loopback fake in
``voicecall.testing.fake_openai`` can stand in for OpenAI.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import attrs
import httpx
import openai

from voicecall.adapters.audio import Resampler, pcm16_to_ulaw
from voicecall.domain.errors import TransientError, VoiceCallError

__all__ = ["DEFAULT_OPENAI_TTS_MODEL", "DEFAULT_OPENAI_VOICE", "OpenAiSynthesizer", "OpenAiTts"]

DEFAULT_OPENAI_TTS_MODEL: Final = "gpt-4o-mini-tts"
DEFAULT_OPENAI_VOICE: Final = "alloy"
_PCM_RATE: Final = 24000
# Models before gpt-4o-mini-tts refuse ``instructions``.
_NO_INSTRUCTIONS: Final = ("tts-1", "tts-1-hd")


@attrs.frozen
class OpenAiTts:
    """What the adapter needs from ``tts.openai`` (after the deep merge and env fallbacks)."""

    api_key: str
    model: str = DEFAULT_OPENAI_TTS_MODEL
    voice: str = DEFAULT_OPENAI_VOICE
    instructions: str | None = None
    speed: float | None = None
    base_url: str | None = None
    timeout_s: float = 10.0


def openai_base_url(configured: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The SDK's own convention: the configured URL, else ``OPENAI_BASE_URL``, else OpenAI."""
    env = os.environ if env is None else env
    return configured or env.get("OPENAI_BASE_URL") or None


class OpenAiSynthesizer:
    """The ``SpeechSynthesizer`` port over OpenAI's streaming speech endpoint.

    Args:
        settings: model, voice, key and where to reach the API.
        http_client: an httpx client to use (tests and benchmarks pass one).
    """

    name = "openai"

    def __init__(self, settings: OpenAiTts, http_client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = openai.AsyncOpenAI(
            api_key=settings.api_key,
            base_url=openai_base_url(settings.base_url),
            http_client=http_client,
            timeout=settings.timeout_s,
            # A phone line cannot wait for retries: one failure falls back to the native voice.
            max_retries=0,
        )

    def cache_key(self, voice: str | None) -> dict[str, Any]:
        """Every parameter that changes the audio, for the phrase cache."""
        s = self.settings
        return {
            "provider": "openai",
            "model": s.model,
            "voice": voice or s.voice,
            "instructions": s.instructions,
            "speed": s.speed,
            "format": "pcm24k->ulaw8k",
        }

    async def synthesize(self, text: str, voice: str | None) -> AsyncIterator[bytes]:
        s = self.settings
        extra: dict[str, Any] = {}
        if s.instructions and s.model not in _NO_INSTRUCTIONS:
            extra["instructions"] = s.instructions
        if s.speed is not None:
            extra["speed"] = s.speed
        resampler = Resampler(_PCM_RATE, 8000)
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=s.model,
                voice=voice or s.voice,
                input=text,
                response_format="pcm",
                **extra,
            ) as response:
                async for chunk in response.iter_bytes():
                    samples = resampler.feed(chunk)
                    if samples.size:
                        yield pcm16_to_ulaw(samples)
        except openai.APITimeoutError as err:
            raise TransientError("OpenAI TTS timed out") from err
        except openai.APIConnectionError as err:
            raise TransientError(f"OpenAI TTS unreachable: {err}") from err
        except openai.APIStatusError as err:
            detail = f"OpenAI TTS refused the request (HTTP {err.status_code})"
            if err.status_code == 429 or err.status_code >= 500:
                raise TransientError(detail) from err
            raise VoiceCallError(detail) from err
        except httpx.HTTPError as err:  # the body broke off mid-stream
            raise TransientError(f"OpenAI TTS stream broke off: {err}") from err
        tail = resampler.feed(b"", last=True)
        if tail.size:
            yield pcm16_to_ulaw(tail)

    async def aclose(self) -> None:
        await self._client.close()
