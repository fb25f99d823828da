"""The agent on the line against the loopback fake OpenAI-compatible server (issue 10).

The agent's timers (holding line, hard limit) and the mock carrier run on a FakeClock; the fake
model's delays run on the same clock. Real loopback I/O needs the event loop to turn, so
``pump`` advances the clock in small steps and yields to the loop between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

import pytest

from voicecall.adapters.agent.chat_openai import OpenAIChatModel
from voicecall.adapters.telephony.mock import MockSettings
from voicecall.domain.call import Call, CallState, Speaker
from voicecall.domain.conversation import ChatMessage, Role, estimate_tokens
from voicecall.domain.events import SpeechCut
from voicecall.domain.ports import clock_sleep
from voicecall.services.agent import APOLOGY, HOLD_LINE, AgentService, AgentSettings
from voicecall.testing.clock import FakeClock
from voicecall.testing.fake_llm import FakeChatServer, FakeReply, serve_fake_chat

from .conftest import ALLOWED, Rig, make_rig

SCRIPT_REPLIES = tuple(f"Caller line {n}." for n in range(30))


async def pump(clock: FakeClock, seconds: float, step: float = 0.05) -> None:
    """Advance the fake clock by ``seconds``, letting loopback I/O run between steps."""
    steps = max(round(seconds / step), 1)
    for _ in range(steps):
        await asyncio.sleep(0.002)
        await clock.advance(step)


async def until(clock: FakeClock, done: Callable[[], bool], limit_s: float = 30.0) -> None:
    waited = 0.0
    while not done():
        assert waited < limit_s, "the condition never held"
        await pump(clock, 0.05)
        waited += 0.05


@contextlib.asynccontextmanager
async def agent_rig(
    replies: list[FakeReply],
    *,
    mock: MockSettings | None = None,
    **settings: object,
) -> AsyncIterator[tuple[Rig, FakeChatServer, AgentService]]:
    clock = FakeClock()
    server = FakeChatServer(replies, sleep=lambda s: clock_sleep(clock, s))
    async with serve_fake_chat(server) as base_url:
        rig = await make_rig(
            clock=clock,
            mock=mock or MockSettings(answer_delay_ms=0, replies=SCRIPT_REPLIES),
        )
        base: dict[str, object] = {"system_prompt": "You answer the phone.", "utc_offset_s": 0}
        base.update(settings)
        agent = AgentService(
            OpenAIChatModel("fake-model", "test-key", base_url),
            rig.service,
            clock,
            rig.feed,
            AgentSettings(**base),  # type: ignore[arg-type]
        )
        rig.service.agent = agent
        try:
            yield rig, server, agent
        finally:
            await rig.service.stop()


@pytest.fixture
def fast() -> list[FakeReply]:
    return [FakeReply("Sure. I can help with that.")]


async def inbound(rig: Rig) -> Call:
    [call] = await rig.service.apply_events([rig.carrier.simulate_inbound(ALLOWED, None)])
    return call


async def current(rig: Rig, call_id: str) -> Call:
    call = await rig.service.get(call_id)
    assert call is not None
    return call


async def test_first_chunk_is_queued_before_the_completion_ends() -> None:
    text = "First sentence here. " + " ".join(["more"] * 40) + "."
    async with agent_rig([FakeReply(text, tokens_per_s=10)]) as (rig, server, _):
        call = await inbound(rig)
        await until(rig.clock, lambda: len(server.requests) == 1)
        queued: list[str] = []

        async def first_queued() -> bool:
            live = await current(rig, call.call_id)
            queued[:] = [u.text for u in live.speech]
            return "First sentence here." in queued

        while not await first_queued():
            await pump(rig.clock, 0.05)
        assert not server.requests[0].finished  # the model is still writing
        assert queued[-1] == "First sentence here."
        assert all("more" not in text for text in queued)


async def test_barge_in_cancels_the_rest_of_the_completion() -> None:
    text = "One. Two. Three. " + " ".join(["word"] * 60) + "."
    async with agent_rig([FakeReply(text, tokens_per_s=5)]) as (rig, server, _):
        call = await inbound(rig)
        # The greeting plays, the caller speaks, the model starts answering.
        await until(rig.clock, lambda: len(server.requests) == 1)
        ids: list[str] = []

        async def one_queued() -> bool:
            live = await current(rig, call.call_id)
            ids[:] = [u.utterance_id for u in live.speech if u.text == "One."]
            return bool(ids)

        while not await one_queued():
            await pump(rig.clock, 0.05)
        await rig.service.apply_events(
            [SpeechCut(call_id=call.call_id, utterance_id=ids[0], rest=True, dedupe_key="cut-1")]
        )
        await until(rig.clock, lambda: server.requests[0].disconnected)
        assert not server.requests[0].finished
        live = await current(rig, call.call_id)
        said = [line.text for line in live.transcript if line.speaker is Speaker.BOT]
        assert "Three." not in said and not any("word" in s for s in said)


async def test_slow_first_token_says_the_holding_line_then_the_answer() -> None:
    replies = [FakeReply("Here you go.", first_token_s=3.0)]
    async with agent_rig(replies, hold_after_s=1.5, response_timeout_s=30.0) as (rig, server, _):
        call = await inbound(rig)
        await until(rig.clock, lambda: server.requests and server.requests[0].finished)
        await pump(rig.clock, 3.0)
        heard = rig.carrier.heard((await current(rig, call.call_id)).provider_call_id or "")
        assert heard[1:3] == [HOLD_LINE, "Here you go."]


async def test_hard_limit_says_the_apology_and_the_call_keeps_listening() -> None:
    replies = [FakeReply("Never.", first_token_s=100.0)]
    async with agent_rig(replies, hold_after_s=1.0, response_timeout_s=5.0) as (rig, server, _):
        call = await inbound(rig)
        await until(rig.clock, lambda: len(server.requests) == 1)
        await pump(rig.clock, 12.0, step=0.25)
        live = await current(rig, call.call_id)
        heard = rig.carrier.heard(live.provider_call_id or "")
        assert HOLD_LINE in heard and APOLOGY in heard
        assert heard.index(APOLOGY) > heard.index(HOLD_LINE)
        assert live.is_live
        assert any(
            line.speaker is Speaker.SYSTEM and "in time" in line.text for line in live.transcript
        )


async def test_end_call_hangs_up_after_the_goodbye_is_played() -> None:
    replies = [FakeReply("Goodbye, have a nice day.", (("end_call", '{"reason": "caller done"}'),))]
    async with agent_rig(replies) as (rig, server, _):
        call = await inbound(rig)
        await until(rig.clock, lambda: len(server.requests) == 1)
        ended: list[Call] = []

        async def over() -> bool:
            ended[:] = [await current(rig, call.call_id)]
            return not ended[0].is_live

        while not await over():
            await pump(rig.clock, 0.1)
        final = ended[0]
        assert final.state is CallState.HANGUP_BOT
        assert final.agent_outcome == "caller done"
        goodbye = next(u for u in final.speech if u.text == "Goodbye, have a nice day.")
        assert goodbye.state.value == "played"
        assert final.ended_at is not None and goodbye.ended_at is not None
        assert final.ended_at >= goodbye.ended_at
        notes = [line.text for line in final.transcript if line.speaker is Speaker.SYSTEM]
        assert notes == ['tool end_call({"reason": "caller done"}) -> ok']
        log = await rig.store.log_since(0)
        tools = [r.data for r in log if r.type == "agent.tool"]
        assert tools and tools[0]["tool"] == "end_call"


async def test_bad_tool_calls_are_refused_and_reported_to_the_model() -> None:
    replies = [
        FakeReply("", (("launch_rockets", "{}"), ("transfer", '{"to": "+15550009999"}'))),
        FakeReply("Sorry, I cannot do that."),
    ]
    async with agent_rig(replies, transfer_allowlist=("+15550001111",)) as (rig, server, _):
        call = await inbound(rig)
        await until(rig.clock, lambda: len(server.requests) >= 2)
        second = server.messages(1)
        tool_results = [m for m in second if m["role"] == "tool"]
        assert [json.loads(m["content"]) for m in tool_results] == [
            {"error": "there is no tool named 'launch_rockets'"},
            {"error": "refused: +15550009999 is not on the transfer allowlist"},
        ]
        await pump(rig.clock, 3.0)
        live = await current(rig, call.call_id)
        assert live.is_live and live.transferred_to is None
        notes = [line.text for line in live.transcript if line.speaker is Speaker.SYSTEM]
        assert any("launch_rockets" in n and "refused" in n for n in notes)


async def test_transfer_to_an_allowed_number_ends_our_side_as_transferred() -> None:
    replies = [FakeReply("Connecting you now.", (("transfer", '{"to": "+15550001111"}'),))]
    async with agent_rig(replies, transfer_allowlist=("+15550001111",)) as (rig, server, _):
        call = await inbound(rig)
        await until(rig.clock, lambda: len(server.requests) == 1)
        for _ in range(200):
            live = await current(rig, call.call_id)
            if not live.is_live:
                break
            await pump(rig.clock, 0.1)
        assert live.state is CallState.COMPLETED
        assert live.end_reason == "transferred" and live.transferred_to == "+15550001111"
        assert rig.carrier.transferred_to(live.provider_call_id or "") == "+15550001111"


def test_the_transcript_budget_holds_on_a_200_turn_call() -> None:
    from voicecall.domain.conversation import fit_budget

    system = ChatMessage(Role.SYSTEM, "You answer the phone. " * 10)
    turns = []
    for n in range(200):
        turns.append(ChatMessage(Role.USER, f"Caller line number {n} with some words in it."))
        turns.append(ChatMessage(Role.ASSISTANT, f"Bot answer number {n}, also a few words."))
    for budget in (300, 1000, 3000):
        fitted = fit_budget(system, turns, budget)
        assert sum(estimate_tokens(m) for m in fitted) <= budget
        assert fitted[0] == system
        assert fitted[-1] == turns[-1]  # the latest turn is always kept
        assert fitted[1].role is Role.SYSTEM and "left out" in fitted[1].content
    assert fit_budget(system, turns[:4], 3000) == [system, *turns[:4]]


async def test_outbound_goal_call_is_driven_by_the_agent_and_records_its_outcome() -> None:
    from voicecall.entrypoints.rpc import RpcMethods
    from voicecall.entrypoints.tool import VoiceCallTool

    replies = [
        FakeReply("Hello, I would like to book a table for two at seven tonight."),
        FakeReply(
            "Thank you, that is all. Goodbye.",
            (("end_call", '{"reason": "Booked a table for two at 7pm under Nguyen."}'),),
        ),
    ]
    async with agent_rig(replies) as (rig, server, _):
        tool = VoiceCallTool(RpcMethods(rig.service))
        placed = await tool(
            {"action": "initiate_call", "to": "+15557654321", "agentGoal": "Book a table for two"}
        )
        call_id = placed["callId"]
        status: dict[str, object] = {}
        for _ in range(400):
            status = await tool({"action": "get_status", "callId": call_id})
            if status["call"]["state"] not in (
                "initiated",
                "ringing",
                "answered",
                "active",
                "speaking",
                "listening",
            ):  # type: ignore[index]
                break
            await pump(rig.clock, 0.1)
        call = status["call"]
        assert call["state"] == "hangup-bot"  # type: ignore[index]
        assert call["agentGoal"] == "Book a table for two"  # type: ignore[index]
        assert call["agentOutcome"] == "Booked a table for two at 7pm under Nguyen."  # type: ignore[index]
        system_prompt = server.messages(0)[0]["content"]
        assert "Your goal on this call: Book a table for two." in system_prompt
        spoken = [(line["speaker"], line["text"]) for line in call["transcript"]]  # type: ignore[index]
        assert spoken[0] == ("bot", "Hello, I would like to book a table for two at seven tonight.")
        assert ("user", "Caller line 0.") in spoken
        assert spoken[-1][0] == "system"


async def test_agent_goal_without_an_agent_is_refused_as_data() -> None:
    from voicecall.entrypoints.rpc import RpcMethods

    rig = await make_rig()
    try:
        answer = await RpcMethods(rig.service).dispatch(
            "voicecall.initiate", {"to": "+15557654321", "agentGoal": "Book a table"}
        )
        assert answer == {
            "ok": False,
            "error": {
                "code": answer["error"]["code"],
                "message": "no agent is configured to drive the call",
            },
        }
    finally:
        await rig.service.stop()
