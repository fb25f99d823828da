"""RPC requests a client gets wrong are answered with a clear ``invalid_request``.

Found probing a running gateway: ``{"params": {}}`` was answered "unknown method None" and
``voicecall.simulateInbound`` rang a ``to`` of ``"bad"``, a call no carrier could place.
"""

from __future__ import annotations

from typing import Any

import pytest

from voicecall.entrypoints.rpc import RpcMethods

from .conftest import ALLOWED, Rig


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (None, 'missing "method"'),
        (5, '"method" must be a string'),
        ([], '"method" must be a string'),
    ],
)
async def test_a_missing_or_non_string_method_is_an_invalid_request(
    rig: Rig, method: Any, message: str
) -> None:
    answer = await RpcMethods(rig.service).dispatch(method, {})
    assert answer == {"ok": False, "error": {"code": "invalid_request", "message": message}}


async def test_an_unknown_method_is_method_not_found(rig: Rig) -> None:
    answer = await RpcMethods(rig.service).dispatch("voicecall.nope", {})
    assert answer["error"] == {
        "code": "method_not_found",
        "message": "unknown method 'voicecall.nope'",
    }


@pytest.mark.parametrize("to", ["bad", "15551234567", "+0123"])
async def test_simulate_inbound_to_a_number_that_is_not_e164_changes_nothing(
    rig: Rig, to: str
) -> None:
    answer = await RpcMethods(rig.service).dispatch(
        "voicecall.simulateInbound", {"from": ALLOWED, "to": to}
    )
    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid_request"
    assert repr(to) in answer["error"]["message"]
    assert await rig.store.list_calls() == []


async def test_simulate_inbound_from_a_garbled_caller_id_is_still_a_rejected_call(rig: Rig) -> None:
    answer = await RpcMethods(rig.service).dispatch(
        "voicecall.simulateInbound", {"from": "garbage"}
    )
    assert answer["ok"] is True
    assert answer["payload"]["accepted"] is False
