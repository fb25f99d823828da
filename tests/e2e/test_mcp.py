"""End to end: ``voicecall mcp`` on stdio, driven by the MCP SDK's own client, against
``voicecall serve`` on the mock carrier; and the same server at ``/mcp`` on the gateway."""

from __future__ import annotations

import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated

from voicecall.entrypoints.tool import VOICE_CALL_TOOL_SCHEMA

from .conftest import CALLEE, Gateway

pytestmark = pytest.mark.e2e

REPLIES = ("Hello, who is this?", "Noon works for me.", "Bye!")
# Speech plays in simulated real time; fast enough that a call takes well under a second.
FAST_MOCK = {"answerDelayMs": 50, "replies": list(REPLIES), "speechCharsPerSec": 300}
# Slow enough that a long prompt keeps continue_call waiting for a minute.
SLOW_MOCK = {"answerDelayMs": 50, "replies": list(REPLIES), "speechCharsPerSec": 5}
LIVE_STATES = {"initiated", "ringing", "answered", "active", "speaking", "listening"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path, mock=FAST_MOCK)
    gw.start()
    yield gw
    if gw.process is not None:
        gw.stop()


@asynccontextmanager
async def stdio(gw: Gateway, **options: Any) -> AsyncIterator[Client]:
    """``voicecall mcp --config …`` as a host would start it, with the SDK's client."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "voicecall", "mcp", "--config", str(gw.config_path)],
        env=gw.env,
    )
    async with Client(server, **options) as client:
        yield client


async def act(client: Client, **arguments: Any) -> types.CallToolResult:
    return await client.call_tool("voice_call", arguments)


async def ok(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await act(client, **arguments)
    assert not result.is_error, result.content
    payload: dict[str, Any] = result.structured_content
    return payload


async def status(client: Client, call_id: str) -> dict[str, Any]:
    answer = await ok(client, action="get_status", callId=call_id)
    assert answer["found"] is True
    call: dict[str, Any] = answer["call"]
    return call


async def until(client: Client, call_id: str, done: Any) -> dict[str, Any]:
    """Poll ``get_status`` until ``done(call)``; the test's own timeout bounds it."""
    while True:
        call = await status(client, call_id)
        if done(call):
            return call
        await anyio.sleep(0.05)


def heard_from_user(call: dict[str, Any]) -> bool:
    return any(line["speaker"] == "user" for line in call["transcript"])


def text_of(result: types.ReadResourceResult) -> str:
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents)
    return content.text


def error_of(result: types.CallToolResult) -> dict[str, str]:
    assert result.is_error
    body: dict[str, dict[str, str]] = result.structured_content
    return body["error"]


async def test_tools_are_voice_call_with_the_gateway_schema_and_list_calls(
    gateway: Gateway,
) -> None:
    async with stdio(gateway) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"voice_call", "list_calls"}
    voice_call = tools["voice_call"]
    assert voice_call.input_schema == VOICE_CALL_TOOL_SCHEMA["parameters"]
    assert voice_call.description == VOICE_CALL_TOOL_SCHEMA["description"]
    for words in ("E.164", "notify", "conversation", "transcriptTimeoutMs", "blocks"):
        assert words in (voice_call.description or "")
    assert tools["list_calls"].annotations is not None
    assert tools["list_calls"].annotations.read_only_hint is True


async def test_notify_call_runs_to_completion(gateway: Gateway) -> None:
    async with stdio(gateway) as client:
        placed = await ok(
            client, action="initiate_call", to=CALLEE, message="Your order shipped.", mode="notify"
        )
        assert placed["initiated"] is True
        call = await until(client, placed["callId"], lambda c: c["state"] == "completed")
        listed = await client.call_tool("list_calls", {})
    assert call["mode"] == "notify"
    assert [(t["speaker"], t["text"]) for t in call["transcript"]] == [
        ("bot", "Your order shipped.")
    ]
    assert not listed.is_error
    assert [c["callId"] for c in listed.structured_content["calls"]] == [placed["callId"]]


async def test_conversation_continue_returns_the_reply_with_progress_then_end(
    gateway: Gateway,
) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with stdio(gateway) as client:
        placed = await ok(
            client, action="initiate_call", message="Hi, got a minute?", mode="conversation"
        )
        call_id = placed["callId"]
        await until(client, call_id, heard_from_user)
        turn = await client.call_tool(
            "voice_call",
            {"action": "continue_call", "callId": call_id, "message": "Lunch at noon?"},
            progress_callback=on_progress,
        )
        assert not turn.is_error, turn.content
        assert turn.structured_content == {"success": True, "transcript": REPLIES[1]}
        assert await ok(client, action="speak_to_user", callId=call_id, message="Great.") == {
            "success": True
        }
        assert await ok(client, action="end_call", callId=call_id) == {"success": True}
        call = await status(client, call_id)
        again = await act(client, action="end_call", callId=call_id)
    assert call["state"] == "hangup-bot"
    lines = [(t["speaker"], t["text"]) for t in call["transcript"]]
    assert ("bot", "Lunch at noon?") in lines and ("user", REPLIES[1]) in lines
    assert reports, "continue_call reported no progress while it waited"
    assert "waiting for the callee" in (reports[0][2] or "")
    assert error_of(again)["code"] == "invalid_call_state"


async def test_errors_are_tool_errors_with_the_rpc_code_and_message(gateway: Gateway) -> None:
    rpc = gateway.rpc("voicecall.end", {"callId": "no-such-call"})
    assert rpc["ok"] is False
    async with stdio(gateway) as client:
        ended = await act(client, action="end_call", callId="no-such-call")
        waited = await act(client, action="continue_call", callId="no-such-call", message="Hi")
        unknown = await act(client, action="dance")
        extra = await act(client, action="end_call", callId="x", message="no")
        missing = await client.call_tool("list_calls", {"limit": 0})
        looked = await ok(client, action="get_status", callId="no-such-call")
    assert error_of(ended) == rpc["error"]
    assert error_of(waited) == rpc["error"]
    assert error_of(unknown)["code"] == "invalid_request"
    assert "unknown action" in error_of(unknown)["message"]
    assert error_of(extra) == {
        "code": "invalid_request",
        "message": "end_call does not take: message",
    }
    assert error_of(missing)["code"] == "invalid_request"
    assert looked == {"found": False, "call": None}


async def test_without_a_gateway_tools_name_voicecall_serve_and_the_server_stays_up(
    gateway: Gateway,
) -> None:
    async with stdio(gateway) as client:
        gateway.stop()
        down = await act(client, action="get_status", callId="anything")
        listed = await client.call_tool("list_calls", {"active": True})
        # Still serving: the host's session survives, and works again once the gateway is back.
        assert {tool.name for tool in (await client.list_tools()).tools} == {
            "voice_call",
            "list_calls",
        }
        gateway.start()
        back = await client.call_tool("list_calls", {})
    assert error_of(down)["code"] == "gateway_unavailable"
    assert "voicecall serve" in error_of(down)["message"]
    assert error_of(listed)["code"] == "gateway_unavailable"
    assert not back.is_error and back.structured_content == {"calls": []}


async def test_resources_read_and_a_subscription_hears_the_call_change(gateway: Gateway) -> None:
    updated: list[str] = []
    heard = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(message.params.uri)
            heard.set()

    # A handshake-era host (as Claude Desktop is today) subscribes with resources/subscribe.
    async with stdio(gateway, mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is True
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["voicecall://calls/{callId}"]
        placed = await ok(client, action="initiate_call", message="Hi there.", mode="conversation")
        call_id = placed["callId"]
        uri = f"voicecall://calls/{call_id}"
        await until(client, call_id, heard_from_user)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(uri)
        read = await client.read_resource(uri)
        assert '"state"' in text_of(read)
        assert call_id in text_of(await client.read_resource("voicecall://calls"))
        await ok(client, action="end_call", callId=call_id)
        while uri not in updated:
            heard = anyio.Event()
            await heard.wait()
        after = await client.read_resource(uri)
        with pytest.raises(MCPError, match="no call with id"):
            await client.read_resource("voicecall://calls/no-such-call")
    assert '"state": "hangup-bot"' in text_of(after)


async def test_a_2026_host_listens_for_the_call_changing(gateway: Gateway) -> None:
    async with stdio(gateway) as client:
        assert client.protocol_version == "2026-07-28"
        placed = await ok(client, action="initiate_call", message="Hi there.", mode="conversation")
        call_id = placed["callId"]
        uri = f"voicecall://calls/{call_id}"
        await until(client, call_id, heard_from_user)
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            await ok(client, action="end_call", callId=call_id)
            async for event in subscription:
                if event == ResourceUpdated(uri=uri):
                    break
        call = await status(client, call_id)
    assert call["state"] == "hangup-bot"


async def test_cancelling_a_waiting_continue_stops_the_wait_not_the_call(tmp_path: Path) -> None:
    gw = Gateway(tmp_path, mock=SLOW_MOCK)
    gw.start()
    try:
        waiting = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            waiting.set()

        async with stdio(gw) as client:
            placed = await ok(client, action="initiate_call", message="Hi.", mode="conversation")
            call_id = placed["callId"]
            await until(client, call_id, heard_from_user)
            # About a minute of speech at 5 characters a second: the reply is far away.
            long_prompt = "Let me read you the whole menu before you choose. " * 6
            outcome: list[types.CallToolResult] = []
            async with anyio.create_task_group() as group:

                async def wait_for_reply() -> None:
                    outcome.append(
                        await client.call_tool(
                            "voice_call",
                            {"action": "continue_call", "callId": call_id, "message": long_prompt},
                            progress_callback=on_progress,
                        )
                    )

                group.start_soon(wait_for_reply)
                await waiting.wait()
                group.cancel_scope.cancel()
            assert outcome == []
            call = await status(client, call_id)
            assert call["state"] in LIVE_STATES
            assert await ok(client, action="end_call", callId=call_id) == {"success": True}
    finally:
        gw.stop()


# ---------------------------------------------------------------------- streamable HTTP


def test_http_mcp_needs_the_gateway_token_and_is_not_on_the_webhook_listener(
    gateway: Gateway,
) -> None:
    url = f"{gateway.url}/mcp"
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    assert httpx.post(url, json=initialize, headers=accept).status_code == 401
    wrong = {**accept, "Authorization": "Bearer not-the-token"}
    assert httpx.post(url, json=initialize, headers=wrong).status_code == 401
    webhook = f"http://127.0.0.1:{gateway.webhook_port}/mcp"
    right = {**accept, "Authorization": f"Bearer {gateway.token()}"}
    assert httpx.post(webhook, json=initialize, headers=right).status_code == 404
    answer = httpx.post(url, json=initialize, headers=right)
    assert answer.status_code == 200
    assert "voicecall" in answer.text


async def test_http_mcp_offers_the_same_tools_as_stdio(gateway: Gateway) -> None:
    url = f"{gateway.url}/mcp"
    async with stdio(gateway) as local:
        over_stdio = (await local.list_tools()).tools
    auth = {"Authorization": f"Bearer {gateway.token()}"}
    for mode in ("legacy", "auto"):
        async with (
            httpx2.AsyncClient(headers=auth) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as remote,
        ):
            over_http = (await remote.list_tools()).tools
            placed = await ok(remote, action="initiate_call", message="Hello.", mode="notify")
            call = await until(remote, placed["callId"], lambda c: c["state"] == "completed")
        assert [t.model_dump() for t in over_http] == [t.model_dump() for t in over_stdio]
        assert call["transcript"][0]["text"] == "Hello."


async def test_serve_stops_promptly_with_an_mcp_host_connected_over_http(
    gateway: Gateway,
) -> None:
    auth = {"Authorization": f"Bearer {gateway.token()}"}
    http = httpx2.AsyncClient(headers=auth)
    stack = AsyncExitStack()
    try:
        # A handshake-era session keeps its server-to-client event stream open while idle.
        remote = await stack.enter_async_context(
            Client(streamable_http_client(f"{gateway.url}/mcp", http_client=http), mode="legacy")
        )
        assert {tool.name for tool in (await remote.list_tools()).tools} == {
            "voice_call",
            "list_calls",
        }
        # SIGTERM must end serve by itself, exit 0 (Gateway.stop asserts both).
        await anyio.to_thread.run_sync(gateway.stop)
    finally:
        with suppress(Exception):
            await stack.aclose()
        await http.aclose()
