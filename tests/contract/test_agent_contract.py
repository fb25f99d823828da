"""The agent on the line through every carrier: an inbound caller has a three-turn
conversation (the greeting and two model turns, each answered by the caller) with the fake
model (the loopback OpenAI-compatible server), and the model ends the call (issue 10). Runs
on the mock and each carrier simulator. The simulated caller hangs up after its third line, so
the model says goodbye in answer to the second."""

from __future__ import annotations

from voicecall.adapters.agent.chat_openai import OpenAIChatModel
from voicecall.domain.call import CallState, Speaker
from voicecall.services.agent import AgentService, AgentSettings
from voicecall.testing.fake_llm import FakeChatServer, FakeReply, serve_fake_chat

from .conftest import ALLOWED, REPLIES, Line

# One sentence each: the simulated callee answers every line it hears, so a reply of several
# sentences would be answered sentence by sentence.
MODEL_LINES = (
    "Glad to hear it, what time suits you?",
    "Noon it is, thank you for calling and goodbye!",
)


async def test_inbound_three_turns_with_the_model_which_ends_the_call(line: Line) -> None:
    server = FakeChatServer(
        [
            FakeReply(MODEL_LINES[0], tokens_per_s=200),
            FakeReply(
                MODEL_LINES[1],
                (("end_call", '{"reason": "Agreed on noon; the caller said goodbye."}'),),
                tokens_per_s=200,
            ),
        ]
    )
    async with serve_fake_chat(server) as base_url:
        line.service.agent = AgentService(
            OpenAIChatModel("fake-model", "test-key", base_url),
            line.service,
            line.clock,
            line.service.feed,
            AgentSettings(
                system_prompt="You answer the phone.",
                allow_from=(ALLOWED,),
                utc_offset_s=0,
                # The holding line has its own test; here the model is never slow enough.
                hold_after_s=60.0,
            ),
        )
        await line.harness.ring_inbound(ALLOWED)
        call = await line.only_call()
        final = await line.wait_state(call.call_id, CallState.HANGUP_BOT, within=20.0)
    transcript = [(t.speaker.value, t.text) for t in final.transcript]
    print("\n".join(f"{who:>6}: {text}" for who, text in transcript))
    if transcript[-1] == ("user", REPLIES[2]):
        # The caller's own goodbye, said over our hang-up (it is heard after ours was played).
        transcript.pop()
    assert transcript == [
        ("bot", "Hello! How can I help you today?"),
        ("user", REPLIES[0]),
        ("bot", MODEL_LINES[0]),
        ("user", REPLIES[1]),
        ("bot", MODEL_LINES[1]),
        (
            "system",
            'tool end_call({"reason": "Agreed on noon; the caller said goodbye."}) -> ok',
        ),
    ]
    assert final.agent_outcome == "Agreed on noon; the caller said goodbye."
    assert [t.speaker for t in final.transcript].count(Speaker.USER) in (2, 3)
    assert len(server.requests) == 2
    # The model saw the caller's number and allowlist status, and each turn the whole call.
    system = server.messages(0)[0]["content"]
    assert f"The caller's number is {ALLOWED}." in system
    assert "The caller is on the allowlist of known numbers." in system
    assert [m["content"] for m in server.messages(1) if m["role"] == "user"] == list(REPLIES[:2])
    # The goodbye was heard whole before the line went dead, and only then recorded as said.
    assert line.harness.heard(final)[-1] == MODEL_LINES[1]
