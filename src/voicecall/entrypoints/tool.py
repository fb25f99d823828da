"""The ``voice_call`` agent tool: one definition (name, description, JSON schema, the action
table) shared by every host that offers it, the gateway plugin and the MCP server alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicecall.domain.errors import CallerError
from voicecall.entrypoints.rpc import RpcMethods

__all__ = ["VOICE_CALL_TOOL_SCHEMA", "VoiceCallTool", "voice_call_request"]

VOICE_CALL_TOOL_SCHEMA: dict[str, Any] = {
    "name": "voice_call",
    "description": (
        "Make and control real phone calls. Phone numbers are E.164 (+ then country code and "
        "number, no spaces, e.g. +15551234567). "
        "initiate_call places a call and returns its callId at once: mode 'notify' speaks "
        "the message and hangs up (use it for a one-way announcement or reminder); mode "
        "'conversation' speaks the message and keeps the line open for continue_call. "
        "continue_call speaks the message, then blocks until the callee answers and returns "
        "what they said (as 'transcript'); it can take minutes and fails if nobody speaks "
        "within the configured transcriptTimeoutMs. "
        "speak_to_user speaks on a live call without waiting for an answer. "
        "With agentGoal, initiate_call starts a conversation that the phone agent drives "
        "on its own towards the goal (the message is then optional); get_status shows its "
        "agentOutcome once it ends. "
        "end_call hangs up. get_status returns a call's state and full transcript. "
        "Failures come back as an error with a code and a message, not as a crash."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "action": {
                "type": "string",
                "enum": [
                    "initiate_call",
                    "continue_call",
                    "speak_to_user",
                    "end_call",
                    "get_status",
                ],
                "description": "What to do.",
            },
            "message": {
                "type": "string",
                "description": (
                    "What to say aloud (initiate_call, continue_call, speak_to_user). Plain "
                    "spoken sentences: no markdown, lists or links."
                ),
            },
            "to": {
                "type": "string",
                "description": (
                    "initiate_call only: the E.164 number to call; defaults to the configured "
                    "toNumber."
                ),
            },
            "mode": {
                "type": "string",
                "enum": ["notify", "conversation"],
                "description": (
                    "initiate_call only: 'notify' speaks and hangs up, 'conversation' keeps "
                    "the line open; defaults to the configured outbound mode."
                ),
            },
            "callId": {
                "type": "string",
                "description": "The callId from initiate_call (all actions but initiate_call).",
            },
            "agentGoal": {
                "type": "string",
                "description": (
                    "initiate_call only: let the phone agent hold the conversation itself "
                    "towards this goal, e.g. 'Book a table for two at 7pm; confirm the name'."
                ),
            },
        },
        "required": ["action"],
        "additionalProperties": False,
    },
}

_ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "initiate_call": ("voicecall.initiate", ("message", "to", "mode", "agentGoal")),
    "continue_call": ("voicecall.continue", ("callId", "message")),
    "speak_to_user": ("voicecall.speak", ("callId", "message")),
    "end_call": ("voicecall.end", ("callId",)),
    "get_status": ("voicecall.status", ("callId",)),
}


def voice_call_request(arguments: Any) -> tuple[str, dict[str, Any]]:
    """The gateway RPC method and params one ``voice_call`` invocation stands for.

    Raises:
        CallerError: the arguments are not an object, the action is unknown, or the action
            was given parameters it does not take.
    """
    if not isinstance(arguments, Mapping):
        raise CallerError("arguments must be an object")
    action = arguments.get("action")
    if action not in _ACTIONS:
        raise CallerError(f"unknown action {action!r}; use one of {', '.join(_ACTIONS)}")
    method, allowed = _ACTIONS[action]
    extra = sorted(set(arguments) - {"action", *allowed})
    if extra:
        raise CallerError(f"{action} does not take: {', '.join(extra)}")
    return method, {key: arguments[key] for key in allowed if key in arguments}


class VoiceCallTool:
    """Runs a ``voice_call`` action; errors come back as ``{"error": …}``, never raised."""

    schema = VOICE_CALL_TOOL_SCHEMA

    def __init__(self, rpc: RpcMethods) -> None:
        self._rpc = rpc

    async def __call__(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        try:
            method, params = voice_call_request(arguments)
        except CallerError as err:
            return {"error": err.detail}
        answer = await self._rpc.dispatch(method, params)
        if answer["ok"]:
            payload: dict[str, Any] = answer["payload"]
            return payload
        return {"error": answer["error"]["message"], "code": answer["error"]["code"]}
