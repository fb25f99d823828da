"""The agent's side of a call as values: chat messages, tool calls, the prompt and the memory.

Pure: the service builds these from the call and hands them to the ``ChatModel`` port; the
adapters turn them into each API's wire format (OpenAI chat completions, Anthropic messages).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from voicecall.domain.call import Call, Speaker

__all__ = [
    "ChatMessage",
    "ModelEvent",
    "Role",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "conversation_messages",
    "estimate_tokens",
    "fit_budget",
    "parse_arguments",
    "phone_system_prompt",
    "time_of_day",
]


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@attrs.frozen
class ToolCall:
    """The model asks for a tool: ``arguments`` is the raw JSON text it wrote."""

    call_id: str
    name: str
    arguments: str


@attrs.frozen
class TextDelta:
    """A piece of the reply's text as it streams."""

    text: str


ModelEvent = TextDelta | ToolCall


@attrs.frozen
class ChatMessage:
    """One message of the conversation sent to the model."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    """On an assistant message: the tools it called."""
    tool_call_id: str | None = None
    """On a tool message: the call it answers."""


@attrs.frozen
class ToolSpec:
    """A tool the model may call: name, what it does, and a JSON Schema for its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


def parse_arguments(call: ToolCall, spec: ToolSpec) -> dict[str, Any]:
    """The tool call's arguments, checked against the spec's required string properties.

    Raises:
        ValueError: not a JSON object, a required argument missing, or one not a string.
    """
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        raise ValueError("the arguments are not valid JSON") from None
    if not isinstance(arguments, dict):
        raise ValueError("the arguments must be a JSON object")
    properties = spec.parameters.get("properties", {})
    for name in spec.parameters.get("required", ()):
        if name not in arguments:
            raise ValueError(f"missing argument {name!r}")
    for name, value in arguments.items():
        if name not in properties:
            raise ValueError(f"unknown argument {name!r}")
        if properties[name].get("type") == "string" and (
            not isinstance(value, str) or not value.strip()
        ):
            raise ValueError(f"argument {name!r} must be a non-empty string")
    return arguments


# A rough count that needs no tokenizer: English runs near four characters a token.
_CHARS_PER_TOKEN: Final = 4
_MESSAGE_OVERHEAD: Final = 4


def estimate_tokens(message: ChatMessage) -> int:
    """An upper-side estimate of the tokens a message costs."""
    text = message.content + "".join(c.name + c.arguments for c in message.tool_calls)
    return len(text) // _CHARS_PER_TOKEN + _MESSAGE_OVERHEAD


def conversation_messages(call: Call) -> list[ChatMessage]:
    """The call's transcript as turns: the caller is the user, the bot the assistant, and
    system lines (tool calls and results) are notes the model sees in order."""
    messages: list[ChatMessage] = []
    for line in call.transcript:
        if line.speaker is Speaker.USER:
            messages.append(ChatMessage(Role.USER, line.text))
        elif line.speaker is Speaker.BOT:
            text = line.text + (" [the caller interrupted here]" if line.cut else "")
            messages.append(ChatMessage(Role.ASSISTANT, text))
        else:
            messages.append(ChatMessage(Role.SYSTEM, line.text))
    return messages


def fit_budget(
    system: ChatMessage, turns: Sequence[ChatMessage], budget_tokens: int
) -> list[ChatMessage]:
    """The system prompt, then as many of the latest turns as fit ``budget_tokens``.

    Turns that do not fit are dropped from the oldest end and replaced by one short note that
    summarises what the caller said in them, so the model knows the call has a past.
    """
    remaining = budget_tokens - estimate_tokens(system)
    kept: list[ChatMessage] = []
    for message in reversed(turns):
        cost = estimate_tokens(message)
        if cost > remaining and kept:
            break
        kept.append(message)
        remaining -= cost
    kept.reverse()
    if len(kept) == len(turns):
        return [system, *kept]
    # The note itself must fit: it takes at most an eighth of the budget. Making room for it
    # may drop more turns, and the note must then speak for those too.
    limit = max(budget_tokens * _CHARS_PER_TOKEN // 8, 40)
    while True:
        note = _dropped_note(turns[: len(turns) - len(kept)], limit)
        if not kept or sum(map(estimate_tokens, [system, note, *kept])) <= budget_tokens:
            return [system, note, *kept]
        kept.pop(0)


def _dropped_note(dropped: Sequence[ChatMessage], limit: int) -> ChatMessage:
    """One short note for the turns left out: how many, and what the caller said in them."""
    summary = "; ".join(m.content for m in dropped if m.role is Role.USER)
    if len(summary) > limit:
        summary = "…" + summary[-limit:]
    return ChatMessage(
        Role.SYSTEM,
        f"Earlier in this call ({len(dropped)} older messages left out), the caller said: "
        f"{summary or 'nothing of note'}",
    )


def time_of_day(hour: int) -> str:
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 18:
        return "afternoon"
    if 18 <= hour < 22:
        return "evening"
    return "night"


def phone_system_prompt(
    base: str,
    call: Call,
    *,
    local_time: str,
    hour: int,
    allowlisted: bool | None,
    language: str | None,
    goal: str | None,
) -> str:
    """``responseSystemPrompt`` plus what the model should know about this call."""
    facts = [base.strip(), ""]
    inbound = call.direction.value == "inbound"
    other = call.from_number if inbound else call.to_number
    if inbound:
        facts.append(f"The caller's number is {other or 'withheld'}.")
        if allowlisted is not None:
            facts.append(
                "The caller is on the allowlist of known numbers."
                if allowlisted
                else "The caller is not on the allowlist of known numbers."
            )
    else:
        facts.append(f"You placed this call to {other or 'an unknown number'}.")
    facts.append(f"It is {time_of_day(hour)} ({local_time}) where you are.")
    if language:
        facts.append(f"Speak in the language of {language}.")
    if goal:
        facts.append(
            f"Your goal on this call: {goal}. Work towards it yourself. When it is done, or "
            "cannot be done, say goodbye and call end_call with a one-sentence summary of the "
            "outcome as the reason."
        )
    facts.append(
        "Use end_call when the conversation is over, transfer only when the caller asks for a "
        "person, and send_digits only to navigate a phone menu."
    )
    return "\n".join(facts)
