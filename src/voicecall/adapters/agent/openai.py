"""A model-backed responder: OpenAI chat completions answer inbound callers.

Used when ``responseModel`` is set. The SDK (2.x) runs on httpx, so tests fake it at the
transport with respx like every other outside call.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai

from voicecall.config import AppConfig
from voicecall.domain.call import Call, Speaker
from voicecall.domain.errors import TransientError, VoiceCallError

__all__ = ["OpenAIResponder", "model_name"]

# Enough context for a phone conversation without sending whole transcripts of long calls.
_MAX_HISTORY_LINES = 24


def model_name(configured: str) -> str:
    """``openai/gpt-4o-mini`` and ``gpt-4o-mini`` both name the same OpenAI model."""
    provider, slash, name = configured.partition("/")
    return name if slash and provider == "openai" else configured


class OpenAIResponder:
    """Answers with ``responseModel`` under ``responseSystemPrompt``, given the transcript.

    Args:
        model: the configured ``responseModel``.
        system_prompt: ``responseSystemPrompt``.
        api_key: the OpenAI key (``messages.tts.openai.apiKey`` or ``OPENAI_API_KEY``).
        base_url: an OpenAI-compatible endpoint, or None for OpenAI's own.
        http_client: an httpx client to use (tests pass one; None makes one).
    """

    def __init__(
        self,
        model: str,
        system_prompt: str,
        api_key: str | None,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model = model_name(model)
        self.system_prompt = system_prompt
        # The SDK refuses to start without a key; a missing key should fail a call, not start-up.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "missing-key",
            base_url=base_url,
            http_client=http_client,
            max_retries=1,
        )

    @classmethod
    def from_config(cls, config: AppConfig) -> OpenAIResponder:
        openai_tts = config.tts.openai
        return cls(
            model=config.voice.response_model or "",
            system_prompt=config.voice.response_system_prompt,
            api_key=openai_tts.api_key if openai_tts is not None else None,
            base_url=openai_tts.base_url if openai_tts is not None else None,
        )

    async def respond(self, call: Call, utterance: str) -> str:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        for line in call.transcript[-_MAX_HISTORY_LINES:]:
            role = "assistant" if line.speaker is Speaker.BOT else "user"
            messages.append({"role": role, "content": line.text})
        if not call.transcript or call.transcript[-1].text != utterance:
            messages.append({"role": "user", "content": utterance})
        try:
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=200,
            )
        except (
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
        ) as err:
            raise TransientError(f"the response model is unreachable: {err}") from err
        except openai.APIStatusError as err:
            raise VoiceCallError(f"the response model refused: HTTP {err.status_code}") from err
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        if not text:
            raise TransientError("the response model returned no text")
        return text

    async def aclose(self) -> None:
        await self._client.close()
