"""The agent over Anthropic's Messages API, streamed through the official ``anthropic`` SDK.

Used for ``anthropic/<model>`` and ``models.providers`` entries with
``api: "anthropic-messages"``. Anthropic's OpenAI-compatible layer is not meant for production
(https://docs.anthropic.com/en/api/openai-sdk), so this speaks the native API: the system
prompt is a top-level field, tool calls are ``tool_use`` blocks and results ``tool_result``
blocks in a user turn (https://docs.anthropic.com/en/api/messages-streaming).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic

from voicecall.adapters.agent.tool_calls import ToolCallAssembler
from voicecall.domain.conversation import (
    ChatMessage,
    ModelEvent,
    Role,
    TextDelta,
    ToolSpec,
)
from voicecall.domain.errors import TransientError, VoiceCallError

__all__ = ["AnthropicChatModel", "anthropic_request"]


def anthropic_request(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(system, messages, tools) in the Messages API's shape.

    System notes after the first message become bracketed user text (the API has one system
    prompt); consecutive same-role turns are merged, as the API wants them alternating.
    """
    system_parts: list[str] = []
    wire: list[dict[str, Any]] = []

    def add(role: str, block: dict[str, Any]) -> None:
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].append(block)
        else:
            wire.append({"role": role, "content": [block]})

    for message in messages:
        if message.role is Role.SYSTEM:
            if not wire:
                system_parts.append(message.content)
            else:
                add("user", {"type": "text", "text": f"[note: {message.content}]"})
        elif message.role is Role.USER:
            add("user", {"type": "text", "text": message.content})
        elif message.role is Role.ASSISTANT:
            if message.content:
                add("assistant", {"type": "text", "text": message.content})
            for call in message.tool_calls:
                try:
                    arguments = json.loads(call.arguments or "{}")
                except ValueError:
                    arguments = {}
                add(
                    "assistant",
                    {"type": "tool_use", "id": call.call_id, "name": call.name, "input": arguments},
                )
        else:
            add(
                "user",
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id or "",
                    "content": message.content,
                },
            )
    if wire and wire[0]["role"] != "user":
        wire.insert(0, {"role": "user", "content": [{"type": "text", "text": "(the call began)"}]})
    specs = [
        {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
        for t in tools
    ]
    return "\n\n".join(system_parts), wire, specs


class AnthropicChatModel:
    """Streams a Messages API reply: text deltas, then each ``tool_use`` once complete."""

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        max_tokens: int = 300,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        # The SDK (2.x) runs on its own HTTP client; it is never handed ours.
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=1)

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        system, wire, specs = anthropic_request(messages, tools)
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": wire,
        }
        if system:
            request["system"] = system
        if specs:
            request["tools"] = specs
        uses = ToolCallAssembler(empty_arguments="{}")
        try:
            async with self._client.messages.stream(**request) as stream:
                async for event in stream:
                    if (
                        event.type == "content_block_start"
                        and event.content_block.type == "tool_use"
                    ):
                        block = event.content_block
                        uses.add(event.index, call_id=block.id, name=block.name)
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            yield TextDelta(delta.text)
                        elif delta.type == "input_json_delta" and event.index in uses:
                            uses.add(event.index, arguments=delta.partial_json)
        except (
            anthropic.APITimeoutError,
            anthropic.APIConnectionError,
            anthropic.InternalServerError,
        ) as err:
            raise TransientError(f"the response model is unreachable: {err}") from err
        except anthropic.APIStatusError as err:
            raise VoiceCallError(f"the response model refused: HTTP {err.status_code}") from err
        for call in uses.calls():
            yield call

    async def aclose(self) -> None:
        await self._client.close()
