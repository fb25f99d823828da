"""The ``voice_call`` agent tool: a JSON schema and a dispatcher that answers with data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicecall.entrypoints.rpc import RpcMethods

__all__ = ["VOICE_CALL_TOOL_SCHEMA", "VoiceCallTool"]

VOICE_CALL_TOOL_SCHEMA: dict[str, Any] = {
    "name": "voice_call",
    "description": (
        "Make and control phone calls. initiate_call places a call (mode 'notify' speaks the "
        "message and hangs up; 'conversation' keeps the line open), continue_call speaks and "
        "returns what the callee said next, speak_to_user speaks without waiting, end_call "
        "hangs up, get_status reports a call's state and transcript."
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
            },
            "message": {"type": "string", "description": "What to say."},
            "to": {"type": "string", "description": "E.164 number; defaults to toNumber."},
            "mode": {"type": "string", "enum": ["notify", "conversation"]},
            "callId": {"type": "string", "description": "The call to act on."},
        },
        "required": ["action"],
        "additionalProperties": False,
    },
}

_ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "initiate_call": ("voicecall.initiate", ("message", "to", "mode")),
    "continue_call": ("voicecall.continue", ("callId", "message")),
    "speak_to_user": ("voicecall.speak", ("callId", "message")),
    "end_call": ("voicecall.end", ("callId",)),
    "get_status": ("voicecall.status", ("callId",)),
}


class VoiceCallTool:
    """Runs a ``voice_call`` action; errors come back as ``{"error": …}``, never raised."""

    schema = VOICE_CALL_TOOL_SCHEMA

    def __init__(self, rpc: RpcMethods) -> None:
        self._rpc = rpc

    async def __call__(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        if not isinstance(arguments, Mapping):
            return {"error": "arguments must be an object"}
        action = arguments.get("action")
        if action not in _ACTIONS:
            return {"error": f"unknown action {action!r}; use one of {', '.join(_ACTIONS)}"}
        method, allowed = _ACTIONS[action]
        extra = sorted(set(arguments) - {"action", *allowed})
        if extra:
            return {"error": f"{action} does not take: {', '.join(extra)}"}
        params = {key: arguments[key] for key in allowed if key in arguments}
        answer = await self._rpc.dispatch(method, params)
        if answer["ok"]:
            payload: dict[str, Any] = answer["payload"]
            return payload
        return {"error": answer["error"]["message"], "code": answer["error"]["code"]}
