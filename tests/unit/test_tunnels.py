"""Tunnel lifecycle: start, URL adoption, drop and recovery, a changed URL, clean stop.

ngrok is faked at the SDK boundary (a fake module with the builder, session and listener
surface NgrokTunnel uses); Tailscale at the CLI boundary (a stub ``tailscale`` on PATH).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import stat
from typing import Any

import pytest

from voicecall.adapters.tunnel.ngrok import NgrokTunnel
from voicecall.adapters.tunnel.tailscale import TailscaleError, TailscaleTunnel
from voicecall.config import parse_config
from voicecall.container import public_address, tunnel_provider
from voicecall.domain.errors import CallerError
from voicecall.domain.exposure import NO_PUBLIC_URL, PublicAddress, Reachability
from voicecall.services.exposure import TunnelStartError, TunnelSupervisor
from voicecall.testing.clock import FakeClock


class FakeListener:
    def __init__(self, url: str) -> None:
        self._url = url
        self.closed = False

    def url(self) -> str:
        return self._url

    async def close(self) -> None:
        self.closed = True


class FakeEndpoint:
    def __init__(self, sdk: FakeNgrok) -> None:
        self.sdk = sdk
        self.domain_name: str | None = None

    def domain(self, name: str) -> FakeEndpoint:
        self.domain_name = name
        return self

    async def listen_and_forward(self, to_url: str) -> FakeListener:
        self.sdk.forwarded.append(to_url)
        host = self.domain_name or f"random-{len(self.sdk.forwarded)}.ngrok-free.app"
        listener = FakeListener(f"https://{host}")
        self.sdk.listeners.append(listener)
        return listener


class FakeSession:
    def __init__(self, sdk: FakeNgrok) -> None:
        self.sdk = sdk
        self.closed = False

    def http_endpoint(self) -> FakeEndpoint:
        return FakeEndpoint(self.sdk)

    async def close(self) -> None:
        self.closed = True


class FakeNgrok:
    """The part of the ``ngrok`` module NgrokTunnel touches."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        self.listeners: list[FakeListener] = []
        self.sessions: list[FakeSession] = []
        self.tokens: list[str] = []
        self.on_disconnect: Any = None
        self.fail_next: list[str] = []

    def SessionBuilder(self) -> Any:
        sdk = self

        class Builder:
            def authtoken(self, token: str) -> Builder:
                sdk.tokens.append(token)
                return self

            def handle_disconnection(self, handler: Any) -> Builder:
                sdk.on_disconnect = handler
                return self

            async def connect(self) -> FakeSession:
                if sdk.fail_next:
                    raise RuntimeError(sdk.fail_next.pop(0))
                session = FakeSession(sdk)
                sdk.sessions.append(session)
                return session

        return Builder()


class Adapter:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def adopt_public_url(self, url: str) -> None:
        self.urls.append(url)


def address() -> PublicAddress:
    return PublicAddress(webhook_path="/voice/webhook", stream_path="/voice/stream")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_ngrok_start_adopts_the_url_and_stop_undoes_it() -> None:
    sdk, addr, adapter = FakeNgrok(), address(), Adapter()
    addr.subscribe(adapter.adopt_public_url)
    tunnel = NgrokTunnel("http://127.0.0.1:3334", "tok", "calls.ngrok.app", sdk=sdk)
    supervisor = TunnelSupervisor(tunnel, addr, FakeClock())
    assert await supervisor.start() == "https://calls.ngrok.app/voice/webhook"
    assert sdk.tokens == ["tok"] and sdk.forwarded == ["http://127.0.0.1:3334"]
    assert adapter.urls == ["https://calls.ngrok.app/voice/webhook"]
    assert addr.stream_url == "wss://calls.ngrok.app/voice/stream"
    addr.check_outbound()
    await supervisor.stop()
    assert sdk.listeners[0].closed and sdk.sessions[0].closed


async def test_ngrok_failure_at_start_carries_its_own_error() -> None:
    sdk = FakeNgrok()
    sdk.fail_next = ["ERR_NGROK_105: authentication failed"]
    supervisor = TunnelSupervisor(
        NgrokTunnel("http://127.0.0.1:1", None, None, sdk), address(), FakeClock()
    )
    with pytest.raises(TunnelStartError, match="ERR_NGROK_105: authentication failed"):
        await supervisor.start()


async def test_a_drop_refuses_outbound_then_recovers_with_backoff() -> None:
    sdk, addr, clock = FakeNgrok(), address(), FakeClock()
    tunnel = NgrokTunnel("http://127.0.0.1:3334", None, "calls.ngrok.app", sdk=sdk)
    supervisor = TunnelSupervisor(tunnel, addr, clock, backoff_s=(1.0, 5.0))
    await supervisor.start()
    sdk.fail_next = ["still offline"]
    sdk.on_disconnect("connect.ngrok-agent.com:443", "connection reset")
    await settle()
    assert addr.state is Reachability.DOWN
    with pytest.raises(CallerError, match=r"tunnel is down \(disconnected from .*connection reset"):
        addr.check_outbound()
    await clock.advance(1.0)  # first attempt fails
    await settle()
    assert addr.state is Reachability.DOWN
    await clock.advance(5.0)  # second attempt succeeds, same reserved domain
    await settle()
    assert addr.state is Reachability.UP and supervisor.reconnects == 1
    assert addr.url == "https://calls.ngrok.app/voice/webhook"
    addr.check_outbound()
    await supervisor.stop()


async def test_a_new_url_after_reconnect_is_loud_and_settles(caplog: Any) -> None:
    sdk, addr, clock, adapter = FakeNgrok(), address(), FakeClock(), Adapter()
    addr.subscribe(adapter.adopt_public_url)
    supervisor = TunnelSupervisor(
        NgrokTunnel("http://127.0.0.1:3334", None, None, sdk=sdk),
        addr,
        clock,
        settle_s=30.0,
        backoff_s=(1.0,),
    )
    await supervisor.start()
    sdk.on_disconnect("addr", "gone")
    await settle()
    await clock.advance(1.0)
    await settle()
    assert adapter.urls == [
        "https://random-1.ngrok-free.app/voice/webhook",
        "https://random-2.ngrok-free.app/voice/webhook",
    ]
    assert addr.state is Reachability.SETTLING
    assert "DIFFERENT public URL" in caplog.text
    with pytest.raises(CallerError, match="changed to https://random-2"):
        addr.check_outbound()
    await clock.advance(30.0)
    assert addr.state is Reachability.UP
    await supervisor.stop()


def test_without_url_or_tunnel_outbound_is_refused_but_the_mock_is_not() -> None:
    with pytest.raises(CallerError) as caught:
        address().check_outbound()
    assert caught.value.detail == NO_PUBLIC_URL
    PublicAddress(webhook_path="/w", required=False).check_outbound()


def plugin(voice: dict[str, Any]) -> dict[str, Any]:
    return {"plugins": {"entries": {"voice-call": {"config": voice}}}}


@pytest.mark.parametrize(
    ("voice", "expected"),
    [
        ({}, "none"),
        ({"tunnel": {"provider": "ngrok"}}, "ngrok"),
        ({"tailscale": {"mode": "funnel"}}, "tailscale-funnel"),
        ({"tailscale": {"mode": "serve"}}, "tailscale-serve"),
        (
            {"tunnel": {"provider": "tailscale-serve"}, "tailscale": {"mode": "funnel"}},
            "tailscale-serve",
        ),
        ({"publicUrl": "https://x.example/voice/webhook", "tunnel": {"provider": "ngrok"}}, "none"),
    ],
)
def test_which_tunnel_runs(voice: dict[str, Any], expected: str) -> None:
    config = parse_config(plugin(voice), {})
    assert tunnel_provider(config) == expected
    state = public_address(config).state
    if "publicUrl" in voice:
        assert state is Reachability.STATIC
    else:
        assert state is (Reachability.NONE if expected == "none" else Reachability.PENDING)


STUB = """#!/bin/sh
echo "$@" >> "{log}"
case "$1" in
  status) [ -f "{down}" ] && {{
            echo '{{"BackendState":"Stopped","Self":{{"DNSName":""}}}}'; exit 0; }}
          echo '{{"BackendState":"Running","Self":{{"DNSName":"node.tail1234.ts.net."}}}}' ;;
  funnel|serve) [ -f "{fail}" ] && {{ echo "funnel not enabled for this tailnet" >&2; exit 1; }} ;;
esac
exit 0
"""


@pytest.fixture
def stub_tailscale(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "tailscale"
    script.write_text(
        STUB.format(log=tmp_path / "log", down=tmp_path / "down", fail=tmp_path / "fail")
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path


async def test_tailscale_funnel_publishes_both_paths_and_undoes_them(
    stub_tailscale: pathlib.Path,
) -> None:
    clock, addr = FakeClock(), address()
    tunnel = TailscaleTunnel(
        "funnel",
        [
            ("/voice/webhook", "http://127.0.0.1:3334/voice/webhook"),
            ("/voice/stream", "http://127.0.0.1:3334/voice/stream"),
        ],
        clock,
    )
    supervisor = TunnelSupervisor(tunnel, addr, clock)
    assert await supervisor.start() == "https://node.tail1234.ts.net/voice/webhook"
    (stub_tailscale / "down").write_text("")
    await clock.advance(30.0)
    for _ in range(50):
        if addr.state is Reachability.DOWN:
            break
        await asyncio.sleep(0.02)
    assert addr.state is Reachability.DOWN and "BackendState Stopped" in addr.detail
    await supervisor.stop()
    lines = (stub_tailscale / "log").read_text().splitlines()
    assert lines[:2] == [
        "funnel --bg --yes --set-path=/voice/webhook http://127.0.0.1:3334/voice/webhook",
        "funnel --bg --yes --set-path=/voice/stream http://127.0.0.1:3334/voice/stream",
    ]
    assert lines[-2:] == [
        "funnel --set-path=/voice/webhook off",
        "funnel --set-path=/voice/stream off",
    ]


async def test_tailscale_refusal_is_the_start_error(stub_tailscale: pathlib.Path) -> None:
    (stub_tailscale / "fail").write_text("")
    tunnel = TailscaleTunnel("funnel", [("/w", "http://127.0.0.1:1/w")], FakeClock())
    with pytest.raises(TunnelStartError, match="funnel not enabled for this tailnet"):
        await TunnelSupervisor(tunnel, address(), FakeClock()).start()
    with pytest.raises(TailscaleError):
        await TailscaleTunnel("serve", [], FakeClock(), binary="no-such-tailscale").open()
