"""What ``create_webhook_app`` serves: the carrier path, the media stream path only for a
streaming carrier with a media service, no OpenAPI pages, no debug answers, and the warning
an operator gets for an unsigned mock carrier on a public address.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from voicecall.config import AppConfig, parse_config
from voicecall.entrypoints.webhook_app import create_webhook_app

from .test_door import open_door

STREAM_PATH = "/voice/stream"


def config_with(**settings: Any) -> AppConfig:
    return parse_config({"plugins": {"entries": {"voice-call": {"config": settings}}}}, {})


# ------------------------------------------------------------------------------ the mock warning


def test_mock_on_a_public_bind_warning_names_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    create_webhook_app(object(), config_with(serve={"bind": "0.0.0.0"}), door=object())  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [
        "the mock carrier's webhook takes UNSIGNED events and is served on 0.0.0.0; "
        "anyone who can reach it can drive calls. Bind to 127.0.0.1 unless you mean it."
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {"serve": {"bind": "127.0.0.1"}},
        {
            "provider": "twilio",
            "serve": {"bind": "0.0.0.0"},
            "twilio": {"accountSid": "AC1", "authToken": "t"},
            "fromNumber": "+15550100000",
        },
    ],
    ids=["mock-on-loopback", "signed-carrier-public"],
)
def test_no_warning_for_mock_on_loopback_or_a_signed_carrier(
    caplog: pytest.LogCaptureFixture, settings: dict[str, Any]
) -> None:
    caplog.set_level(logging.WARNING)
    create_webhook_app(object(), config_with(**settings), door=object())  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records if "UNSIGNED" in r.getMessage()] == []


# ------------------------------------------------------------------------------ the app itself


async def test_the_default_door_serves_and_nothing_else_is_exposed(tmp_path: Path) -> None:
    door = await open_door(tmp_path, "mock", None)
    assert door.service is not None
    app = create_webhook_app(door.service, door.config)  # its own door
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:3334"
    ) as client:
        ok = await client.post("/voice/webhook", content=b'{"events": []}')
        assert ok.status_code == 200
        for path in ("/schema", "/schema/openapi.json", "/schema/swagger"):
            assert (await client.get(path)).status_code == 404, path
        missing = await client.post("/nowhere", content=b"{}")
        assert missing.status_code == 404
        assert "Traceback" not in missing.text and "litestar" not in missing.text.lower()
    await door.stop()


# ------------------------------------------------------------------------------ the stream path


class Dialect:
    pass


class StreamingCarrier:
    """Just enough of a MediaStreaming carrier for the app to mount the stream path."""

    def __init__(self) -> None:
        self.dialects: list[Dialect] = []

    def stream_dialect(self) -> Dialect:
        dialect = Dialect()
        self.dialects.append(dialect)
        return dialect

    async def connect_stream(self, *args: Any, **kwargs: Any) -> None:
        return None


class PlainCarrier:
    pass


class Media:
    """Records each stream it is given and answers on it."""

    def __init__(self) -> None:
        self.runs: list[tuple[Any, Any]] = []

    async def run(self, socket: Any, dialect: Any) -> None:
        self.runs.append((socket, dialect))
        await socket.send_text("hello carrier")
        await socket.close(1000, "done")


class Service:
    def __init__(self, provider: Any, media: Any) -> None:
        self.provider = provider
        if media is not None:
            self.media = media


async def open_stream(app: Any, path: str) -> list[dict[str, Any]]:
    """A carrier connecting to ``path``: what the app sent back."""
    inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": path,
        "raw_path": path.encode(),
        "headers": [(b"host", b"127.0.0.1:3334")],
        "query_string": b"",
        "root_path": "",
        "scheme": "ws",
        "server": ("127.0.0.1", 3334),
        "client": ("203.0.113.9", 40123),
        "subprotocols": [],
    }
    await app(scope, receive, send)
    return sent


async def test_a_streaming_carrier_with_media_gets_the_stream_path() -> None:
    carrier, media = StreamingCarrier(), Media()
    app = create_webhook_app(Service(carrier, media), config_with(), door=object())  # type: ignore[arg-type]
    sent = await open_stream(app, STREAM_PATH)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "hello carrier"
    assert (sent[2]["code"], sent[2]["reason"]) == (1000, "done")
    [(_, dialect)] = media.runs
    assert carrier.dialects == [dialect]


@pytest.mark.parametrize(
    ("carrier", "media"),
    [(StreamingCarrier(), None), (PlainCarrier(), Media())],
    ids=["no-media-service", "carrier-cannot-stream"],
)
async def test_no_stream_path_without_both(carrier: Any, media: Any) -> None:
    app = create_webhook_app(Service(carrier, media), config_with(), door=object())  # type: ignore[arg-type]
    sent = await open_stream(app, STREAM_PATH)
    assert "websocket.accept" not in [m["type"] for m in sent]
    assert media is None or media.runs == []
