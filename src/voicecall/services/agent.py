"""The agent on the line: a streamed model turn spoken sentence by sentence, with tools.

Each final caller transcript starts a turn: the call's transcript becomes the model's memory
(under a token budget), the reply streams in, and every speakable chunk goes into the call's
speech queue as soon as it is complete, so the first sentence plays while the model is still
writing. A holding line covers a slow first token; ``responseTimeoutMs`` is the hard limit on
the whole turn, after which the caller hears an apology and the call keeps listening. A
barge-in (a cut of one of the turn's lines) or the caller speaking again cancels the rest of
the completion; lines never played are never recorded as said (the call service records only
what was played).

Works on ports only: the ``ChatModel``, the clock, the event feed, and the call service's
narrow ``AgentCallControl`` surface.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol

import attrs

from voicecall.domain.call import Call, CallDirection
from voicecall.domain.chunker import SpeechChunker
from voicecall.domain.conversation import (
    ChatMessage,
    Role,
    TextDelta,
    ToolCall,
    ToolSpec,
    conversation_messages,
    fit_budget,
    parse_arguments,
    phone_system_prompt,
)
from voicecall.domain.errors import VoiceCallError
from voicecall.domain.ports import ChatModel, Clock, EventRecord
from voicecall.services.events import EventFeed

__all__ = ["TOOLS", "AgentCallControl", "AgentService", "AgentSettings"]

log = logging.getLogger(__name__)

HOLD_LINE: Final = "One moment."
APOLOGY: Final = "Sorry, I need a moment and could not answer that in time. Could you say it again?"
GOODBYE: Final = "Thank you for calling. Goodbye!"
_DIGITS_ALLOWED: Final = frozenset("0123456789*#wW")

TOOLS: Final = (
    ToolSpec(
        "end_call",
        "Say goodbye first, then call this to hang up. The reason is a one-sentence summary "
        "of how the call went.",
        {
            "type": "object",
            "properties": {"reason": {"type": "string"}},
            "required": ["reason"],
        },
    ),
    ToolSpec(
        "send_digits",
        "Press phone keys (DTMF) to navigate a phone menu: digits 0-9, * and #.",
        {
            "type": "object",
            "properties": {"digits": {"type": "string"}},
            "required": ["digits"],
        },
    ),
    ToolSpec(
        "transfer",
        "Hand the caller over to a person at an E.164 number; only allowed numbers work.",
        {
            "type": "object",
            "properties": {"to": {"type": "string"}},
            "required": ["to"],
        },
    ),
)
_SPECS: Final = {tool.name: tool for tool in TOOLS}


class AgentCallControl(Protocol):
    """What the agent may do to a call; the call service implements it."""

    async def get(self, call_id: str) -> Call | None: ...

    async def agent_say(self, call_id: str, text: str) -> str | None:
        """Queue a line behind what is queued; its utterance id, or None if the call ended."""

    async def agent_note(self, call_id: str, text: str, data: dict[str, Any]) -> None:
        """A system line in the transcript and an ``agent.*`` event on the feed."""

    async def agent_end(self, call_id: str, outcome: str) -> None:
        """Hang up, recording ``outcome``."""

    async def agent_transfer(self, call_id: str, to: str) -> None: ...

    async def agent_send_digits(self, call_id: str, digits: str) -> None: ...


@attrs.frozen
class AgentSettings:
    """``responseSystemPrompt``, ``agent.*`` and ``responseTimeoutMs`` as the agent uses them."""

    system_prompt: str
    hold_after_s: float = 1.5
    response_timeout_s: float = 30.0
    transfer_allowlist: tuple[str, ...] = ()
    allow_from: tuple[str, ...] = ()
    language: str | None = None
    budget_tokens: int = 3000
    max_tool_rounds: int = 4
    chunk_chars: int = 120
    goodbye_wait_s: float = 60.0
    utc_offset_s: float | None = None
    """None takes the gateway's local time zone."""


@attrs.define
class _Turn:
    call_id: str
    task: asyncio.Task[None] | None = None
    said: list[str] = attrs.Factory(list)
    settled: set[str] = attrs.Factory(set)
    settled_changed: asyncio.Event = attrs.Factory(asyncio.Event)
    cancelled_by: str | None = None
    pending: bool = False
    """The caller said more while the model was busy: another turn follows this one."""


class _Stop(Exception):
    """The model ended or handed off the call: no further rounds."""


class AgentService:
    """Runs model turns on calls.

    Args:
        model: the ``ChatModel`` (``responseModel`` resolved).
        control: the call service, as ``AgentCallControl``.
        clock: timers for the holding line and the hard limit.
        feed: the event feed, watched for the turn's lines being played or cut.
        settings: prompt, limits and the transfer allowlist.
    """

    def __init__(
        self,
        model: ChatModel,
        control: AgentCallControl,
        clock: Clock,
        feed: EventFeed,
        settings: AgentSettings,
    ) -> None:
        self.model = model
        self.control = control
        self.clock = clock
        self.feed = feed
        self.settings = settings
        self._turns: dict[str, _Turn] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[EventRecord | None] | None = None

    # ------------------------------------------------------------------ entry points

    def hear(self, call_id: str, utterance: str) -> None:
        """The caller finished saying something: answer it (cancelling a turn in progress)."""
        self._start(call_id, opening=False)

    def open(self, call_id: str) -> None:
        """An outbound goal call was answered: the agent speaks first."""
        self._start(call_id, opening=True)

    async def aclose(self) -> None:
        for turn in list(self._turns.values()):
            if turn.task is not None:
                turn.task.cancel()
        tasks = [t.task for t in self._turns.values() if t.task is not None]
        if self._watcher is not None:
            self._watcher.cancel()
            tasks.append(self._watcher)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._queue is not None:
            self.feed.unsubscribe(self._queue)
        await self.model.aclose()

    def busy(self, call_id: str) -> bool:
        turn = self._turns.get(call_id)
        return turn is not None and turn.task is not None and not turn.task.done()

    # ------------------------------------------------------------------ turns

    def _start(self, call_id: str, *, opening: bool) -> None:
        self._watch()
        previous = self._turns.get(call_id)
        if previous is not None and previous.task is not None and not previous.task.done():
            # One turn at a time: the next one starts when this ends and sees everything said.
            previous.pending = True
            return
        turn = _Turn(call_id)
        self._turns[call_id] = turn
        turn.task = asyncio.ensure_future(self._run(turn, opening))

    async def _run(self, turn: _Turn, opening: bool) -> None:
        hold = self.clock.schedule(self.settings.hold_after_s, lambda: self._hold(turn))
        work = asyncio.ensure_future(self._converse(turn, opening))
        hard = self.clock.schedule(self.settings.response_timeout_s, lambda: _cancel(work))
        try:
            await work
        except asyncio.CancelledError:
            if work.cancelled() and not _cancelling():
                log.warning("call %s: the model did not finish in time", turn.call_id)
                await self.control.agent_note(
                    turn.call_id,
                    "The model did not answer in time; the caller heard an apology.",
                    {"type": "agent.timeout"},
                )
                await self.control.agent_say(turn.call_id, APOLOGY)
                return
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            if turn.cancelled_by:
                log.info("call %s: turn cancelled (%s)", turn.call_id, turn.cancelled_by)
            raise
        except Exception as err:
            log.warning("call %s: the model failed: %s", turn.call_id, err)
            await self.control.agent_note(
                turn.call_id, f"The model failed: {err}", {"type": "agent.error"}
            )
            await self.control.agent_say(turn.call_id, APOLOGY)
        finally:
            hold.cancel()
            hard.cancel()
            if self._turns.get(turn.call_id) is turn and turn.task is asyncio.current_task():
                self._turns.pop(turn.call_id, None)
                if turn.pending and turn.cancelled_by is None:
                    self._start(turn.call_id, opening=False)

    async def _hold(self, turn: _Turn) -> None:
        if not turn.said and turn.task is not None and not turn.task.done():
            await self.control.agent_say(turn.call_id, HOLD_LINE)

    async def _converse(self, turn: _Turn, opening: bool) -> None:
        call = await self.control.get(turn.call_id)
        if call is None or not call.is_live:
            return
        system = ChatMessage(Role.SYSTEM, self._system_prompt(call))
        history = conversation_messages(call)
        if opening and not history:
            history.append(ChatMessage(Role.USER, "(The call has just been answered.)"))
        messages = fit_budget(system, history, self.settings.budget_tokens)
        try:
            for _ in range(self.settings.max_tool_rounds):
                written, calls = await self._stream_round(turn, messages)
                if not calls:
                    return
                # The words said before the tool calls belong with them in the model's memory.
                messages.append(ChatMessage(Role.ASSISTANT, written, tool_calls=tuple(calls)))
                for tool_call in calls:
                    result = await self._run_tool(turn, tool_call)
                    messages.append(
                        ChatMessage(Role.TOOL, json.dumps(result), tool_call_id=tool_call.call_id)
                    )
        except _Stop:
            return

    async def _stream_round(
        self, turn: _Turn, messages: Sequence[ChatMessage]
    ) -> tuple[str, list[ToolCall]]:
        chunker = SpeechChunker(self.settings.chunk_chars)
        calls: list[ToolCall] = []
        written = ""
        stream = self.model.stream(messages, TOOLS)
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    written += event.text
                    for chunk in chunker.feed(event.text):
                        await self._say(turn, chunk)
                else:
                    calls.append(event)
        finally:
            await _close(stream)
        for chunk in chunker.flush():
            await self._say(turn, chunk)
        return written.strip(), calls

    async def _say(self, turn: _Turn, chunk: str) -> None:
        text = chunk.strip()
        if not text:
            return
        utterance_id = await self.control.agent_say(turn.call_id, text)
        if utterance_id is None:
            raise asyncio.CancelledError
        turn.said.append(utterance_id)

    # ------------------------------------------------------------------ tools

    async def _run_tool(self, turn: _Turn, tool_call: ToolCall) -> dict[str, Any]:
        call_id = turn.call_id
        spec = _SPECS.get(tool_call.name)
        data = {"type": "agent.tool", "tool": tool_call.name, "arguments": tool_call.arguments}
        if spec is None:
            result: dict[str, Any] = {"error": f"there is no tool named {tool_call.name!r}"}
        else:
            try:
                arguments = parse_arguments(tool_call, spec)
                result = await self._tool(turn, tool_call, arguments)
            except ValueError as err:
                result = {"error": f"refused: {err}"}
            except VoiceCallError as err:
                result = {"error": f"failed: {err.detail}"}
            except _Stop:
                raise
        verdict = "refused" if "error" in result else "ok"
        await self.control.agent_note(
            call_id,
            f"tool {tool_call.name}({tool_call.arguments}) -> {verdict}"
            + (f": {result['error']}" if "error" in result else ""),
            data | {"result": result},
        )
        return result

    async def _tool(
        self, turn: _Turn, tool_call: ToolCall, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        call_id = turn.call_id
        name = tool_call.name
        done = f"tool {name}({tool_call.arguments}) -> ok"
        data = {"type": "agent.tool", "tool": name, "arguments": tool_call.arguments}
        if name == "end_call":
            if not turn.said:
                await self._say(turn, GOODBYE)
            await self._wait_played(turn)
            # Noted before the hang-up: the call's record closes with it.
            await self.control.agent_note(call_id, done, data | {"result": {"ok": True}})
            await self.control.agent_end(call_id, str(arguments["reason"]).strip())
            raise _Stop
        if name == "send_digits":
            digits = str(arguments["digits"]).replace(" ", "")
            if not digits or not set(digits) <= _DIGITS_ALLOWED:
                raise ValueError("digits may be only 0-9, * and #")
            await self.control.agent_send_digits(call_id, digits)
            return {"ok": True, "sent": digits}
        to = str(arguments["to"]).strip()
        if to not in self.settings.transfer_allowlist:
            raise ValueError(f"{to} is not on the transfer allowlist")
        await self._wait_played(turn)
        await self.control.agent_note(call_id, done, data | {"result": {"ok": True}})
        await self.control.agent_transfer(call_id, to)
        raise _Stop

    async def _wait_played(self, turn: _Turn) -> None:
        """Until every line of the turn was played or cut (bounded by ``goodbyeWait``)."""
        deadline = self.clock.now() + self.settings.goodbye_wait_s
        while not set(turn.said) <= turn.settled and self.clock.now() < deadline:
            turn.settled_changed.clear()
            waiter = asyncio.ensure_future(turn.settled_changed.wait())
            timer = self.clock.schedule(
                max(deadline - self.clock.now(), 0.0), functools.partial(_cancel, waiter)
            )
            try:
                await waiter
            except asyncio.CancelledError:
                if _cancelling():
                    raise
                return
            finally:
                timer.cancel()

    # ------------------------------------------------------------------ the feed

    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._queue = self.feed.subscribe()
            self._watcher = asyncio.ensure_future(self._follow(self._queue))

    async def _follow(self, queue: asyncio.Queue[EventRecord | None]) -> None:
        while True:
            record = await queue.get()
            if record is None:
                return
            turn = self._turns.get(record.call_id)
            if turn is None:
                continue
            utterance = record.data.get("utteranceId")
            if record.type in ("speech.played", "speech.cut") and utterance in turn.said:
                turn.settled.add(utterance)
                turn.settled_changed.set()
                if record.type == "speech.cut" and turn.task is not None:
                    # A barge-in: the caller talks over the answer; the rest is not said.
                    if not turn.task.done() and turn.cancelled_by is None:
                        turn.cancelled_by = "barge-in"
                        turn.task.cancel()
            elif record.type == "call.state" and record.data.get("endReason"):
                if turn.task is not None and not turn.task.done():
                    turn.cancelled_by = "the call ended"
                    turn.task.cancel()

    # ------------------------------------------------------------------ prompt

    def _system_prompt(self, call: Call) -> str:
        now = self.clock.now()
        if self.settings.utc_offset_s is None:
            moment = datetime.datetime.fromtimestamp(now).astimezone()
        else:
            zone = datetime.timezone(datetime.timedelta(seconds=self.settings.utc_offset_s))
            moment = datetime.datetime.fromtimestamp(now, zone)
        allowlisted = (
            call.from_number in self.settings.allow_from
            if call.direction is CallDirection.INBOUND
            else None
        )
        return phone_system_prompt(
            self.settings.system_prompt,
            call,
            local_time=moment.strftime("%H:%M"),
            hour=moment.hour,
            allowlisted=allowlisted,
            language=self.settings.language,
            goal=call.agent_goal,
        )


async def _close(stream: Any) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _cancel(future: asyncio.Future[Any]) -> None:
    future.cancel()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
