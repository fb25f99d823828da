"""Benchmark: from the caller's final transcript to the bot's first audio (issue 10).

The fake model (``voicecall.testing.fake_llm``, over loopback HTTP) writes its first token
after 300 ms and then 30 tokens a second; its reply is three sentences. Two ways of answering:

* streamed: the agent (``services.agent``) cuts the completion into sentences and queues each
  one as soon as it is complete, so the first sentence plays while the model is still writing;
* whole: the completion is read to its end and then spoken, as the responder did before.

The clock starts when the call service applies the caller's final transcript and stops when
the first bot line starts playing on the mock carrier (``speech.started``: the carrier begins
that line's audio at once). Real time throughout (SystemClock); the median of several calls.

Run: ``.venv/bin/python benchmarks/agent_first_audio.py [--calls 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from voicecall.adapters.agent.chat_openai import OpenAIChatModel
from voicecall.adapters.clock import SystemClock
from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.domain.conversation import ChatMessage, Role, TextDelta
from voicecall.domain.policy import InboundPolicy, InboundPolicyMode, OutboundPolicy
from voicecall.services.agent import AgentService, AgentSettings
from voicecall.services.calls import CallService, CallSettings
from voicecall.services.events import EventFeed
from voicecall.testing.fake_llm import FakeChatServer, FakeReply, serve_fake_chat

REPLY = (
    "Sure, I can help you with that booking today. "
    "I have a table for two at seven in the evening under the name Nguyen. "
    "Is there anything else you would like me to note for the restaurant?"
)
CALLER = "+15551230001"


async def one_call(base_url: str, streamed: bool) -> float:
    clock = SystemClock()
    store = MemoryCallStore()
    feed = EventFeed(store)
    # The simulated caller says one line after the greeting: the final transcript we time.
    carrier = MockTelephony(
        MockSettings(answer_delay_ms=0, replies=("I would like to book a table.",)), clock
    )
    model = OpenAIChatModel("fake", "key", base_url)
    service = CallService(
        provider=carrier,
        store=store,
        clock=clock,
        responder=_WholeCompletion(model),
        feed=feed,
        settings=CallSettings(
            from_number="+15550100000",
            outbound=OutboundPolicy(max_concurrent_calls=5),
            inbound=InboundPolicy(InboundPolicyMode.OPEN, frozenset()),
            inbound_greeting="Hi.",
        ),
    )
    if streamed:
        service.agent = AgentService(
            model, service, clock, feed, AgentSettings("You answer the phone.", hold_after_s=60)
        )
    await service.start()
    queue = feed.subscribe()
    await service.apply_events([carrier.simulate_inbound(CALLER, None)])
    heard_at: float | None = None
    while True:
        record = await queue.get()
        assert record is not None
        if record.type == "call.transcript" and record.data.get("speaker") == "user":
            heard_at = time.perf_counter()
        elif record.type == "speech.started" and heard_at is not None:
            elapsed = time.perf_counter() - heard_at
            break
    feed.unsubscribe(queue)
    await service.stop()
    return elapsed


class _WholeCompletion:
    """The answer as before: the whole completion first, then it is spoken."""

    def __init__(self, model: OpenAIChatModel) -> None:
        self.model = model

    async def respond(self, call: object, utterance: str) -> str:
        text = ""
        async for event in self.model.stream([ChatMessage(Role.USER, utterance)], ()):
            if isinstance(event, TextDelta):
                text += event.text
        return text.strip()


async def main(calls: int) -> None:
    server = FakeChatServer([FakeReply(REPLY, first_token_s=0.3, tokens_per_s=30)])
    async with serve_fake_chat(server) as base_url:
        results: dict[str, list[float]] = {"streamed": [], "whole": []}
        for _ in range(calls):
            for mode in ("streamed", "whole"):
                results[mode].append(await one_call(base_url, mode == "streamed"))
    streamed = statistics.median(results["streamed"])
    whole = statistics.median(results["whole"])
    tokens = len(REPLY.split())
    print(f"fake model: first token after 300 ms, then 30 tokens/s; reply of {tokens} tokens")
    print(f"calls per mode: {calls}")
    print(f"final transcript -> first bot audio, streamed by sentence: {streamed * 1000:7.0f} ms")
    print(f"final transcript -> first bot audio, whole completion:     {whole * 1000:7.0f} ms")
    print(f"difference: {(whole - streamed) * 1000:.0f} ms sooner ({whole / streamed:.1f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    asyncio.run(main(parser.parse_args().calls))
