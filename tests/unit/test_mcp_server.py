"""The MCP server over a fake gateway, in process with the SDK's own client; and the shared
``voice_call`` definition it and the gateway plugin both use."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client, types
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated

from voicecall.domain.errors import CallerError
from voicecall.entrypoints.mcp_server import GatewayError, VoiceCallMcp
from voicecall.entrypoints.rpc import error_envelope, ok_envelope
from voicecall.entrypoints.tool import VOICE_CALL_TOOL_SCHEMA, VoiceCallTool, voice_call_request

CALL = {"callId": "c1", "state": "active", "transcript": []}


class FakeGateway:
    """A gateway that answers from a table, can hold ``voicecall.continue`` open, and feeds
    call ids to the server's follower on demand."""

    wait_budget_s = 210.0

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, dict[str, Any] | GatewayError] = {
            "voicecall.initiate": {"callId": "c1", "initiated": True},
            "voicecall.status": {"found": True, "call": CALL},
            "voicecall.list": {"calls": [CALL]},
            "voicecall.end": {"success": True},
        }
        self.hold_continue = False
        self.continue_cancelled = asyncio.Event()
        self.events: asyncio.Queue[list[str]] = asyncio.Queue()
        self.following = asyncio.Event()

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        if method == "voicecall.continue" and self.hold_continue:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.continue_cancelled.set()
                raise
        answer = self.answers.get(method, {"success": True, "transcript": "Sure."})
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    async def call_events(self) -> AsyncIterator[list[str]]:
        self.following.set()
        while True:
            yield await self.events.get()

    async def aclose(self) -> None:
        return None


# ---------------------------------------------------------------------- the shared definition


@pytest.mark.parametrize(
    ("arguments", "method", "params"),
    [
        (
            {"action": "initiate_call", "message": "Hi", "to": "+15551234567", "mode": "notify"},
            "voicecall.initiate",
            {"message": "Hi", "to": "+15551234567", "mode": "notify"},
        ),
        (
            {"action": "continue_call", "callId": "c1", "message": "Lunch?"},
            "voicecall.continue",
            {"callId": "c1", "message": "Lunch?"},
        ),
        (
            {"action": "speak_to_user", "callId": "c1", "message": "Hold on."},
            "voicecall.speak",
            {"callId": "c1", "message": "Hold on."},
        ),
        ({"action": "end_call", "callId": "c1"}, "voicecall.end", {"callId": "c1"}),
        ({"action": "get_status", "callId": "c1"}, "voicecall.status", {"callId": "c1"}),
    ],
)
def test_each_action_is_one_rpc_method(
    arguments: dict[str, Any], method: str, params: dict[str, Any]
) -> None:
    assert voice_call_request(arguments) == (method, params)
    assert (
        arguments["action"] in VOICE_CALL_TOOL_SCHEMA["parameters"]["properties"]["action"]["enum"]
    )


@pytest.mark.parametrize(
    ("arguments", "detail"),
    [
        (None, "arguments must be an object"),
        ({"action": "dance"}, "unknown action 'dance'"),
        ({}, "unknown action None"),
        ({"action": "end_call", "callId": "c1", "to": "+1"}, "end_call does not take: to"),
    ],
)
def test_bad_arguments_are_the_callers_error(arguments: Any, detail: str) -> None:
    with pytest.raises(CallerError, match=detail) as raised:
        voice_call_request(arguments)
    assert raised.value.code == "invalid_request"


async def test_the_plugin_tool_answers_errors_as_data() -> None:
    class Rpc:
        def __init__(self) -> None:
            self.seen: list[tuple[str, Any]] = []

        async def dispatch(self, method: str, params: Any) -> dict[str, Any]:
            self.seen.append((method, params))
            if params.get("callId") == "gone":
                return error_envelope("call_not_found", "no call with id 'gone'")
            return ok_envelope({"success": True})

    rpc = Rpc()
    tool = VoiceCallTool(rpc)  # type: ignore[arg-type]
    assert await tool({"action": "end_call", "callId": "c1"}) == {"success": True}
    assert await tool({"action": "end_call", "callId": "gone"}) == {
        "error": "no call with id 'gone'",
        "code": "call_not_found",
    }
    assert await tool({"action": "fly"}) == {
        "error": "unknown action 'fly'; use one of initiate_call, continue_call, speak_to_user, "
        "end_call, get_status"
    }
    assert rpc.seen == [("voicecall.end", {"callId": "c1"}), ("voicecall.end", {"callId": "gone"})]


# ---------------------------------------------------------------------- the MCP server


async def test_tools_route_to_the_gateway_and_errors_keep_the_rpc_code() -> None:
    gateway = FakeGateway()
    gateway.answers["voicecall.end"] = GatewayError("call_not_found", "no call with id 'x'")
    async with Client(VoiceCallMcp(gateway).server) as client:
        tools = (await client.list_tools()).tools
        placed = await client.call_tool(
            "voice_call", {"action": "initiate_call", "message": "Hi", "mode": "conversation"}
        )
        ended = await client.call_tool("voice_call", {"action": "end_call", "callId": "x"})
        listed = await client.call_tool("list_calls", {"active": True})
        odd = await client.call_tool("list_calls", {"everything": True})
        unknown = await client.call_tool("pair_device", {})
    assert [tool.name for tool in tools] == ["voice_call", "list_calls"]
    assert tools[0].input_schema == VOICE_CALL_TOOL_SCHEMA["parameters"]
    assert placed.structured_content == {"callId": "c1", "initiated": True}
    assert ended.is_error
    assert ended.structured_content == {
        "error": {"code": "call_not_found", "message": "no call with id 'x'"}
    }
    assert listed.structured_content == {"calls": [CALL]}
    assert odd.is_error and odd.structured_content["error"]["code"] == "invalid_request"
    assert unknown.is_error
    assert gateway.calls == [
        ("voicecall.initiate", {"message": "Hi", "mode": "conversation"}),
        ("voicecall.end", {"callId": "x"}),
        ("voicecall.list", {"active": True}),
    ]


async def test_continue_reports_progress_and_cancelling_stops_only_the_wait() -> None:
    gateway = FakeGateway()
    gateway.hold_continue = True
    reports: list[tuple[float, float | None, str | None]] = []
    waiting = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))
        waiting.set()

    async with Client(VoiceCallMcp(gateway).server) as client:
        async with anyio.create_task_group() as group:

            async def turn() -> None:
                await client.call_tool(
                    "voice_call",
                    {"action": "continue_call", "callId": "c1", "message": "Lunch?"},
                    progress_callback=on_progress,
                )

            group.start_soon(turn)
            await waiting.wait()
            group.cancel_scope.cancel()
        await gateway.continue_cancelled.wait()
        # The server is still there, and nothing asked the gateway to end the call.
        status = await client.call_tool("voice_call", {"action": "get_status", "callId": "c1"})
    assert reports[0][1] == gateway.wait_budget_s
    assert reports[0][2] == "waiting for the callee to answer (0 s so far)"
    assert not status.is_error
    assert [method for method, _ in gateway.calls] == ["voicecall.continue", "voicecall.status"]


async def test_resources_read_and_a_legacy_subscription_follows_the_feed() -> None:
    gateway = FakeGateway()
    updated: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            await updated.put(message.params.uri)

    async with Client(
        VoiceCallMcp(gateway).server, mode="legacy", message_handler=on_message
    ) as client:
        listed = await client.read_resource("voicecall://calls")
        one = await client.read_resource("voicecall://calls/c1")
        with pytest.raises(MCPError, match="unknown resource"):
            await client.read_resource("voicecall://elsewhere")
        gateway.answers["voicecall.status"] = {"found": False, "call": None}
        with pytest.raises(MCPError, match="no call with id 'c2'"):
            await client.read_resource("voicecall://calls/c2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource("voicecall://calls/c1")
        await gateway.following.wait()
        await gateway.events.put(["c2"])  # another call: only the list changes
        await gateway.events.put(["c1"])
        # The feed is followed in order, so c2's batch was handled before c1's arrived.
        first = await updated.get()
        left_over = updated.qsize()
    assert isinstance(listed.contents[0], types.TextResourceContents)
    assert '"callId": "c1"' in listed.contents[0].text
    assert isinstance(one.contents[0], types.TextResourceContents)
    assert one.contents[0].mime_type == "application/json"
    # A legacy subscriber hears only what it subscribed to: not c2, not the list.
    assert first == "voicecall://calls/c1"
    assert left_over == 0


async def test_a_listen_stream_hears_the_calls_it_asked_for() -> None:
    gateway = FakeGateway()
    async with Client(VoiceCallMcp(gateway).server) as client:
        async with client.listen(resource_subscriptions=["voicecall://calls/c1"]) as events:
            await gateway.following.wait()
            await gateway.events.put(["c2"])
            await gateway.events.put(["c1"])
            event = await events.__anext__()
    assert event == ResourceUpdated(uri="voicecall://calls/c1")
