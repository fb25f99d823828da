"""An offline, rule-based responder: deterministic, and plainly not a language model.

Used when no ``responseModel`` is configured, so inbound calls work with no account at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from voicecall.domain.call import Call
from voicecall.domain.conversation import ChatMessage, ModelEvent, Role, TextDelta, ToolSpec

__all__ = ["RuleBasedResponder", "RuleChatModel"]

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(bye|goodbye|that's all|hang up)\b", re.I), "Thanks for calling. Goodbye!"),
    (re.compile(r"\b(hello|hi|hey)\b", re.I), "Hello! What can I do for you?"),
    (re.compile(r"\b(thanks|thank you)\b", re.I), "You're welcome. Anything else?"),
    (re.compile(r"\b(time|when)\b", re.I), "I can't check calendars offline, but I noted it."),
    (re.compile(r"\?\s*$"), "Good question. I'm the offline assistant, so I've noted it."),
)


class RuleBasedResponder:
    """Answers by keyword; echoes anything else back so the caller knows they were heard."""

    async def respond(self, call: Call, utterance: str) -> str:
        return _reply_to(utterance)


class RuleChatModel:
    """The rule responder behind the ``ChatModel`` port: ``responseModel: "offline/rules"``.

    It answers the last thing the caller said, in one piece; it never calls a tool.
    """

    def __init__(self) -> None:
        self._rules = RuleBasedResponder()

    async def stream(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        said = next((m.content for m in reversed(messages) if m.role is Role.USER), "")
        reply = _reply_to(said)
        for word in reply.split(" "):
            yield TextDelta(word + " ")

    async def aclose(self) -> None:
        return None


def _reply_to(utterance: str) -> str:
    for pattern, reply in _RULES:
        if pattern.search(utterance):
            return reply
    return f"I heard: {utterance.strip().rstrip('.!?')}. I'm the offline assistant."
