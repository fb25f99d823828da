"""Tool calls that a chat API streams in pieces, put back together.

Both APIs we speak send a tool call's name and id first and its JSON arguments as text
fragments after, each call keyed by an index in the stream (OpenAI's ``delta.tool_calls[]
.index``, Anthropic's content block ``index``); the agent wants each call whole.
"""

from __future__ import annotations

import attrs

from voicecall.domain.conversation import ToolCall

__all__ = ["ToolCallAssembler"]


@attrs.define
class _Partial:
    call_id: str = ""
    name: str = ""
    arguments: str = ""


class ToolCallAssembler:
    """Collects streamed tool-call pieces by index; ``calls()`` gives them whole, in order.

    Args:
        empty_arguments: the arguments of a call that streamed none (Anthropic's tool input
            is an object, so ``"{}"``; OpenAI's are passed on as they came).
    """

    def __init__(self, *, empty_arguments: str = "") -> None:
        self.empty_arguments = empty_arguments
        self._partials: dict[int, _Partial] = {}

    def __contains__(self, index: int) -> bool:
        return index in self._partials

    def add(
        self,
        index: int,
        *,
        call_id: str | None = None,
        name: str | None = None,
        arguments: str | None = None,
    ) -> None:
        """One piece of call ``index``: its id (when the piece carries one), more of its
        name, more of its arguments' JSON text."""
        partial = self._partials.setdefault(index, _Partial())
        if call_id:
            partial.call_id = call_id
        partial.name += name or ""
        partial.arguments += arguments or ""

    def calls(self) -> list[ToolCall]:
        """Every call seen, by index; one that came without an id is named ``call_<index>``."""
        return [
            ToolCall(
                partial.call_id or f"call_{index}",
                partial.name,
                partial.arguments or self.empty_arguments,
            )
            for index, partial in sorted(self._partials.items())
        ]
