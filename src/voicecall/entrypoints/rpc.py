"""Gateway RPC methods (``voicecall.*``) and their ``{"ok": …}`` envelopes (SPEC §7)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from voicecall.adapters.telephony.mock import MockTelephony
from voicecall.domain.errors import CallerError, VoiceCallError
from voicecall.domain.policy import is_e164
from voicecall.services.calls import CallService, call_to_dict
from voicecall.services.pairing import PairingService, request_to_dict

__all__ = ["RpcMethods", "error_envelope", "ok_envelope"]

log = logging.getLogger(__name__)

RpcHandler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def ok_envelope(payload: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "payload": payload}


def error_envelope(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def _string(params: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = params.get(name)
    if isinstance(value, str) and not value.strip() and required:
        raise CallerError(f"parameter {name!r} must not be empty")
    if value is None or value == "":
        if required:
            raise CallerError(f"missing parameter {name!r}")
        return None
    if not isinstance(value, str):
        raise CallerError(f"parameter {name!r} must be a string")
    return value


def _only(params: Mapping[str, Any], *names: str) -> None:
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise CallerError(f"unknown parameter(s): {', '.join(unknown)}")


class RpcMethods:
    """The ``voicecall.*`` methods, bound to one call service."""

    def __init__(self, service: CallService) -> None:
        self.service = service
        self.methods: dict[str, RpcHandler] = {
            "voicecall.initiate": self.initiate,
            "voicecall.continue": self.continue_call,
            "voicecall.speak": self.speak,
            "voicecall.end": self.end,
            "voicecall.status": self.status,
            "voicecall.list": self.list_calls,
            "voicecall.simulateInbound": self.simulate_inbound,
            # The operator's say on who may call. Not voice_call tool actions or MCP tools:
            # the model answering the calls never decides who may reach it.
            "voicecall.pairing.list": self.pairing_list,
            "voicecall.pairing.approve": self.pairing_approve,
            "voicecall.pairing.deny": self.pairing_deny,
            "voicecall.pairing.revoke": self.pairing_revoke,
        }

    async def dispatch(self, method: Any, params: Any) -> dict[str, Any]:
        """Run one method; always returns an envelope, never raises."""
        if method is None:
            return error_envelope("invalid_request", 'missing "method"')
        if not isinstance(method, str):
            return error_envelope("invalid_request", '"method" must be a string')
        if method not in self.methods:
            return error_envelope("method_not_found", f"unknown method {method!r}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return error_envelope("invalid_request", "params must be an object")
        try:
            return ok_envelope(await self.methods[method](params))
        except VoiceCallError as err:
            return error_envelope(err.code, err.detail)
        except Exception:
            log.exception("RPC %s failed", method)
            return error_envelope("internal", "internal error; see the gateway log")

    async def initiate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "to", "message", "mode", "agentGoal")
        goal = _string(params, "agentGoal", required=False)
        call = await self.service.initiate(
            to=_string(params, "to", required=False),
            # With agentGoal the agent may open the call itself: the message is optional.
            message=_string(params, "message", required=goal is None) or "",
            mode=_string(params, "mode", required=False),
            agent_goal=goal,
        )
        return {"callId": call.call_id, "initiated": True}

    async def continue_call(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "callId", "message")
        transcript = await self.service.continue_call(
            _string(params, "callId", required=True) or "",
            _string(params, "message", required=True) or "",
        )
        return {"success": True, "transcript": transcript}

    async def speak(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "callId", "message")
        await self.service.speak(
            _string(params, "callId", required=True) or "",
            _string(params, "message", required=True) or "",
        )
        return {"success": True}

    async def end(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "callId")
        await self.service.end(_string(params, "callId", required=True) or "")
        return {"success": True}

    async def status(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "callId")
        call = await self.service.get(_string(params, "callId", required=True) or "")
        return {"found": call is not None, "call": call_to_dict(call) if call else None}

    async def list_calls(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "active", "limit")
        active = params.get("active", False)
        limit = params.get("limit", 100)
        if not isinstance(active, bool):
            raise CallerError("parameter 'active' must be true or false")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
            raise CallerError("parameter 'limit' must be an integer from 1 to 10000")
        calls = await self.service.list_calls(live_only=active, limit=limit)
        return {"calls": [call_to_dict(call) for call in calls]}

    def _pairing(self) -> PairingService:
        pairing = getattr(self.service, "pairing", None)
        if pairing is None:
            raise CallerError("pairing is not available in this gateway")
        assert isinstance(pairing, PairingService)
        return pairing

    async def pairing_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params)
        listing = await self._pairing().listing()
        return listing | {"inboundPolicy": self.service.settings.inbound.mode.value}

    async def pairing_approve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "code")
        request = await self._pairing().approve(_string(params, "code", required=True))
        return {"approved": True, "request": request_to_dict(request)}

    async def pairing_deny(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "code")
        request = await self._pairing().deny(_string(params, "code", required=True))
        return {"denied": True, "request": request_to_dict(request)}

    async def pairing_revoke(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "number")
        number = _string(params, "number", required=True)
        revoked = await self._pairing().revoke(number)
        if not revoked:
            raise CallerError(f"{number} is not an approved number")
        return {"revoked": True, "number": number}

    async def simulate_inbound(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _only(params, "from", "to")
        carrier = self.service.provider
        if not isinstance(carrier, MockTelephony):
            raise CallerError("simulate works only with the mock carrier (provider: mock)")
        to_number = _string(params, "to", required=False) or self.service.settings.from_number
        if not is_e164(to_number):
            # The caller ID may be anything (a withheld or garbled one is what the policy must
            # reject), but the number rung is ours and must be one.
            raise CallerError(f"'to' must be an E.164 number like +15551234567, not {to_number!r}")
        event = carrier.simulate_inbound(_string(params, "from", required=False), to_number)
        calls = await self.service.apply_events([event])
        if not calls:
            raise CallerError("the simulated call was not created")
        call = calls[0]
        return {
            "callId": call.call_id,
            "providerCallId": call.provider_call_id,
            "accepted": call.is_live,
            "call": call_to_dict(call),
        }
