"""The agent over any OpenAI-compatible chat completions API, streamed (issue 10).

OpenAI itself, OpenRouter, and every ``models.providers`` entry with
``api: "openai-completions"`` (Ollama, vLLM, LiteLLM, a corporate gateway). The SDK (2.x)
runs on httpx, so tests point ``base_url`` at the loopback fake in ``voicecall.testing``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import openai

from voicecall.adapters.agent.tool_calls import ToolCallAssembler
from voicecall.domain.conversation import (
    ChatMessage,
    ModelEvent,
    Role,
    TextDelta,
    ToolSpec,
)
from voicecall.domain.errors import TransientError, VoiceCallError

__all__ = ["OpenAIChatModel", "openai_messages", "openai_tools"]


def openai_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for message in messages:
        entry: dict[str, Any] = {"role": message.role.value, "content": message.content}
        if message.tool_calls:
            entry["content"] = message.content or None
            entry["tool_calls"] = [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ]
        if message.role is Role.TOOL:
            entry["tool_call_id"] = message.tool_call_id
        wire.append(entry)
    return wire


def openai_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }
        for tool in tools
    ]


class OpenAIChatModel:
    """Streams chat completions; text deltas as they come, tool calls once each is whole.

    Args:
        model: the model name the provider knows (``gpt-4o-mini``, ``llama3.1:8b``).
        api_key: the provider's key.
        base_url: the provider's endpoint; None for OpenAI's own.
        http_client: an httpx client to use (None makes one).
        max_tokens: a bound on one reply; phone answers are short.
    """

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_tokens: int = 300,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, http_client=http_client, max_retries=1
        )

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(messages),
            "max_tokens": self.max_tokens,
            "stream": True,
        }
        if tools:
            request["tools"] = openai_tools(tools)
        calls = ToolCallAssembler()
        try:
            stream = await self._client.chat.completions.create(**request)
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta.content:
                            yield TextDelta(delta.content)
                        for part in delta.tool_calls or ():
                            function = part.function
                            calls.add(
                                part.index,
                                call_id=part.id,
                                name=function.name if function is not None else None,
                                arguments=function.arguments if function is not None else None,
                            )
        except (
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
        ) as err:
            raise TransientError(f"the response model is unreachable: {err}") from err
        except openai.APIStatusError as err:
            raise VoiceCallError(f"the response model refused: HTTP {err.status_code}") from err
        for call in calls.calls():
            yield call

    async def aclose(self) -> None:
        await self._client.close()
