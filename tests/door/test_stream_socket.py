"""The media stream's socket (``create_webhook_app``'s ``streaming.streamPath``): Litestar's real
WebSocket over a scripted ASGI peer, seen through the adapter the media service uses.

Text frames arrive as text; a binary frame is no text; a peer that went away is read as the
end of the stream; closing sends one close frame with the code and reason given (a normal
closure, 1000, by default) and never raises.
"""

from __future__ import annotations

from typing import Any

from litestar import WebSocket

from voicecall.entrypoints.webhook_app import _StreamSocket

CONNECT = {"type": "websocket.connect"}


class Peer:
    """The carrier's end: what it will send, and what it got."""

    def __init__(self, *frames: dict[str, Any]) -> None:
        self.frames = [CONNECT, *frames]
        self.got: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return self.frames.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        self.got.append(message)

    def closes(self) -> list[tuple[int, str]]:
        return [(m["code"], m["reason"]) for m in self.got if m["type"] == "websocket.close"]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.got if m["type"] == "websocket.send" and m.get("text")]


async def open_socket(peer: Peer) -> _StreamSocket:
    scope = {
        "type": "websocket",
        "path": "/voice/stream",
        "raw_path": b"/voice/stream",
        "headers": [],
        "query_string": b"",
        "root_path": "",
        "scheme": "ws",
        "server": ("127.0.0.1", 3334),
        "client": ("203.0.113.9", 40123),
        "subprotocols": [],
    }
    socket: WebSocket[Any, Any, Any] = WebSocket(scope, peer.receive, peer.send)  # type: ignore[arg-type]
    await socket.accept()
    return _StreamSocket(socket)


async def test_text_frames_are_read_as_text_and_a_binary_frame_is_none() -> None:
    peer = Peer(
        {"type": "websocket.receive", "text": '{"event": "start"}'},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
        {"type": "websocket.receive", "text": "second"},
    )
    stream = await open_socket(peer)
    assert await stream.receive_text() == '{"event": "start"}'
    assert not await stream.receive_text()
    assert await stream.receive_text() == "second"


async def test_text_is_sent_as_given() -> None:
    peer = Peer()
    stream = await open_socket(peer)
    await stream.send_text('{"event": "media"}')
    assert peer.texts() == ['{"event": "media"}']


async def test_a_peer_that_went_away_ends_the_stream_and_close_is_quiet() -> None:
    peer = Peer({"type": "websocket.disconnect", "code": 1006})
    stream = await open_socket(peer)
    assert await stream.receive_text() is None
    assert await stream.receive_text() is None  # no second read of a gone peer
    await stream.close(1011, "late")  # no frame to a gone peer, and no error
    assert peer.closes() == []


async def test_close_sends_one_normal_closure_by_default() -> None:
    peer = Peer({"type": "websocket.receive", "text": "never read"})
    stream = await open_socket(peer)
    await stream.close()
    await stream.close()
    assert peer.closes() == [(1000, "")]
    assert await stream.receive_text() is None  # closed: nothing more is read
    assert peer.frames == [{"type": "websocket.receive", "text": "never read"}]


async def test_close_sends_the_code_and_reason_given() -> None:
    peer = Peer()
    stream = await open_socket(peer)
    await stream.close(1008, "bad stream token")
    assert peer.closes() == [(1008, "bad stream token")]
