"""Every surface answers bad input with a 4xx, and logs no traceback for it (issue 13)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import Gateway

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # One gateway for the module; a generous start-up deadline on a loaded machine.
    gw = Gateway(Path(tmp_path_factory.mktemp("bad-input")))
    gw.start(timeout=90)
    yield gw
    gw.stop()


def _post_rpc(gateway: Gateway, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/rpc",
        content=body,
        headers={"Authorization": f"Bearer {gateway.token()}"},
        timeout=30,
    )


def test_deeply_nested_json_at_rpc_is_a_400(gateway: Gateway) -> None:
    response = _post_rpc(gateway, DEEP)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert "nested deeper" in response.json()["error"]["message"]
    nested = b'{"method": "voicecall.list", "params": ' + b'{"a": ' * 100 + b"1" + b"}" * 101
    assert _post_rpc(gateway, nested).status_code == 400
    assert gateway.rpc("voicecall.list", {})["ok"] is True  # still serving
    assert "Traceback" not in gateway.log_tail(20_000)


def test_deeply_nested_json_at_the_mock_webhook_is_a_400(gateway: Gateway) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{gateway.webhook_port}/voice/webhook", content=DEEP, timeout=30
    )
    assert response.status_code == 400
    assert "Traceback" not in gateway.log_tail(20_000)


def _events(gateway: Gateway, since: str) -> str:
    return f"ws://127.0.0.1:{gateway.port}/events?since={since}&token={gateway.token()}"


@pytest.mark.parametrize("since", [str(2**64), "-1", "1e3", "abc"])
def test_since_that_is_not_a_sequence_number_closes_with_4400(gateway: Gateway, since: str) -> None:
    with connect(_events(gateway, since), open_timeout=10) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert "Traceback" not in gateway.log_tail(20_000)


def test_since_beyond_the_newest_event_waits_for_new_events(gateway: Gateway) -> None:
    with connect(_events(gateway, str(2**62)), open_timeout=10) as socket:
        answer = gateway.rpc(
            "voicecall.initiate", {"to": "+15557654321", "message": "hi", "mode": "notify"}
        )
        call_id = answer["payload"]["callId"]
        event = json.loads(socket.recv(timeout=10))
    assert event["callId"] == call_id and event["type"] == "call.created"


def test_websockets_are_not_compressed(gateway: Gateway) -> None:
    # The client offers permessage-deflate (RFC 7692); the server declines it: base64 audio
    # and one-line events barely compress, and zlib cost the soak a twelfth of its CPU.
    with connect(_events(gateway, "0"), open_timeout=10) as socket:
        assert socket.request is not None and socket.response is not None
        assert "permessage-deflate" in socket.request.headers.get("Sec-WebSocket-Extensions", "")
        assert "Sec-WebSocket-Extensions" not in socket.response.headers
