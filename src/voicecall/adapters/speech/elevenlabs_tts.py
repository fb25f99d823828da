"""ElevenLabs text-to-speech over a media stream, through the official SDK.

``text_to_speech.stream`` with ``output_format="ulaw_8000"`` returns exactly what a carrier's
media stream carries (G.711 μ-law, 8 kHz), so the bytes go out as they arrive, with no
resampling (https://elevenlabs.io/docs/api-reference/text-to-speech/stream, output formats).
The SDK is httpx-based: tests fake it at the transport with respx, and ``baseUrl`` points it at
any compatible server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import attrs
import httpx
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.types import VoiceSettings

from voicecall.domain.errors import TransientError, VoiceCallError

__all__ = ["DEFAULT_ELEVENLABS_MODEL", "DEFAULT_ELEVENLABS_VOICE", "ElevenLabsSynthesizer"]

DEFAULT_ELEVENLABS_MODEL: Final = "eleven_flash_v2_5"
# ElevenLabs' long-standing premade voice "Rachel"; any voice id of the account works.
DEFAULT_ELEVENLABS_VOICE: Final = "21m00Tcm4TlvDq8ikWAM"


@attrs.frozen
class ElevenLabsTts:
    """What the adapter needs from ``tts.elevenlabs``."""

    api_key: str
    voice_id: str = DEFAULT_ELEVENLABS_VOICE
    model_id: str = DEFAULT_ELEVENLABS_MODEL
    base_url: str | None = None
    language_code: str | None = None
    optimize_streaming_latency: int | None = None
    seed: int | None = None
    apply_text_normalization: str | None = None
    voice_settings: dict[str, Any] = attrs.Factory(dict)
    timeout_s: float = 10.0


class ElevenLabsSynthesizer:
    """The ``SpeechSynthesizer`` port over ElevenLabs' streaming endpoint (``ulaw_8000``).

    Args:
        settings: voice, model, voice settings, latency level, key and base URL.
        http_client: an httpx client to use (tests pass one).
    """

    name = "elevenlabs"

    def __init__(
        self, settings: ElevenLabsTts, http_client: httpx.AsyncClient | None = None
    ) -> None:
        self.settings = settings
        kwargs: dict[str, Any] = {"api_key": settings.api_key, "timeout": settings.timeout_s}
        if settings.base_url:
            kwargs["base_url"] = settings.base_url.rstrip("/")
        if http_client is not None:
            kwargs["httpx_client"] = http_client
        self._client = AsyncElevenLabs(**kwargs)

    def cache_key(self, voice: str | None) -> dict[str, Any]:
        """Every parameter that changes the audio, for the phrase cache."""
        s = self.settings
        return {
            "provider": "elevenlabs",
            "model": s.model_id,
            "voice": s.voice_id,
            "settings": dict(sorted(s.voice_settings.items())),
            "language": s.language_code,
            "seed": s.seed,
            "normalization": s.apply_text_normalization,
            "format": "ulaw_8000",
        }

    async def synthesize(self, text: str, voice: str | None) -> AsyncIterator[bytes]:
        # ``voice`` is the call's OpenAI-style name; ElevenLabs speaks with its configured id.
        s = self.settings
        extra: dict[str, Any] = {}
        if s.voice_settings:
            extra["voice_settings"] = VoiceSettings(**s.voice_settings)
        if s.language_code:
            extra["language_code"] = s.language_code
        if s.seed is not None:
            extra["seed"] = s.seed
        if s.apply_text_normalization:
            extra["apply_text_normalization"] = s.apply_text_normalization
        if s.optimize_streaming_latency is not None:
            extra["optimize_streaming_latency"] = s.optimize_streaming_latency
        try:
            async for chunk in self._client.text_to_speech.stream(
                s.voice_id, text=text, model_id=s.model_id, output_format="ulaw_8000", **extra
            ):
                if chunk:
                    yield chunk
        except ApiError as err:
            status = err.status_code or 0
            detail = f"ElevenLabs TTS refused the request (HTTP {status})"
            if status == 429 or status >= 500:
                raise TransientError(detail) from err
            raise VoiceCallError(detail) from err
        except httpx.TimeoutException as err:
            raise TransientError("ElevenLabs TTS timed out") from err
        except httpx.HTTPError as err:
            raise TransientError(f"ElevenLabs TTS unreachable: {err}") from err
