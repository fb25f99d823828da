"""Streamed tool calls put back together: the shared assembler, and both chat adapters
reading them off the wire (OpenAI faked at the HTTP transport with respx; the anthropic SDK
runs on its own HTTP stack, so it is pointed at a loopback server)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

from voicecall.adapters.agent.chat_anthropic import AnthropicChatModel
from voicecall.adapters.agent.chat_openai import OpenAIChatModel
from voicecall.adapters.agent.tool_calls import ToolCallAssembler
from voicecall.domain.conversation import ChatMessage, Role, TextDelta, ToolCall, ToolSpec
from voicecall.domain.errors import TransientError, VoiceCallError
from voicecall.testing.asgi import Receive, Scope, Send, read_request
from voicecall.testing.fake_llm import serve_fake_chat

OPENAI_URL = "https://api.openai.com/v1/chat/completions"
ASKED = [ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "Put me through.")]
TOOLS = [ToolSpec("transfer", "Transfer the call.", {"type": "object", "properties": {}})]


def test_pieces_are_joined_per_index_and_given_in_index_order() -> None:
    calls = ToolCallAssembler()
    calls.add(1, call_id="b", name="end_", arguments='{"rea')
    calls.add(0, call_id="a", name="transfer", arguments="")
    calls.add(1, name="call", arguments='son": "done"}')
    calls.add(0, arguments='{"to": "+15550100"}')
    calls.add(2, name="press")  # no id, no arguments
    assert 1 in calls and 3 not in calls
    assert calls.calls() == [
        ToolCall("a", "transfer", '{"to": "+15550100"}'),
        ToolCall("b", "end_call", '{"reason": "done"}'),
        ToolCall("call_2", "press", ""),
    ]
    empty_object = ToolCallAssembler(empty_arguments="{}")
    empty_object.add(0, call_id="x", name="end_call")
    assert empty_object.calls() == [ToolCall("x", "end_call", "{}")]


def sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for name, data in events:
        body = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {body}\n\n")
    return "".join(out).encode()


def openai_chunk(delta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


async def collect(model: OpenAIChatModel | AnthropicChatModel) -> list[object]:
    try:
        return [event async for event in model.stream(ASKED, TOOLS)]
    finally:
        await model.aclose()


@respx.mock
async def test_openai_stream_gives_text_then_each_tool_call_whole() -> None:
    # https://platform.openai.com/docs/api-reference/chat-streaming: the first piece of a tool
    # call carries its index, id and name; the arguments follow in pieces under the index.
    body = sse(
        [
            (None, openai_chunk({"role": "assistant", "content": "One moment."})),
            (
                None,
                openai_chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_abc",
                                "type": "function",
                                "function": {"name": "transfer", "arguments": ""},
                            }
                        ]
                    }
                ),
            ),
            (
                None,
                openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"to"'}}]}),
            ),
            (
                None,
                openai_chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": ': "+1555"}'}}]}
                ),
            ),
            (None, "[DONE]"),
        ]
    )
    respx.post(OPENAI_URL).mock(
        return_value=httpx.Response(
            200, content=body, headers={"content-type": "text/event-stream"}
        )
    )
    events = await collect(OpenAIChatModel("gpt-4o-mini", "sk-test"))
    assert events == [TextDelta("One moment."), ToolCall("call_abc", "transfer", '{"to": "+1555"}')]


@respx.mock
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(503, json={"error": {"message": "down"}}), TransientError),
        (httpx.Response(401, json={"error": {"message": "bad key"}}), VoiceCallError),
    ],
)
async def test_openai_failures_become_voicecall_errors(answer: httpx.Response, error: type) -> None:
    respx.post(OPENAI_URL).mock(return_value=answer)
    with pytest.raises(error):
        await collect(OpenAIChatModel("gpt-4o-mini", "sk-test"))


class _SseServer:
    """Answers any POST with ``body`` as an event stream; keeps what was posted."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.posted: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw, _headers = await read_request(scope, receive)
        self.posted.append((scope["path"], json.loads(raw)))
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


async def test_anthropic_stream_gives_text_then_each_tool_use_whole() -> None:
    # https://docs.anthropic.com/en/api/messages-streaming: a tool_use block starts with its id
    # and name, its input arrives as input_json_delta pieces under the block's index.
    body = sse(
        [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-test",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 10, "output_tokens": 1},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "One moment."},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "transfer",
                        "input": {},
                    },
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": '{"to": '},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": '"+1555"}'},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 1}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 2,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "end_call",
                        "input": {},
                    },
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 2}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                    "usage": {"output_tokens": 20},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )
    server = _SseServer(body)
    async with serve_fake_chat(server) as base_url:  # type: ignore[arg-type]
        model = AnthropicChatModel("claude-test", "sk-ant-test", base_url.removesuffix("/v1"))
        events = await collect(model)
    assert events == [
        TextDelta("One moment."),
        ToolCall("toolu_1", "transfer", '{"to": "+1555"}'),
        ToolCall("toolu_2", "end_call", "{}"),  # no input pieces: an empty object
    ]
    path, sent = server.posted[-1]
    assert path == "/v1/messages"
    assert sent["system"] == "Be brief." and sent["tools"][0]["name"] == "transfer"
