"""``voicecall serve``: one process hosting the webhook listener and the gateway listener."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from voicecall.adapters.store.files import private_directory
from voicecall.adapters.store.owner import StoreInUse
from voicecall.config import AppConfig, ConfigError
from voicecall.container import model_route, telephony_names
from voicecall.domain.exposure import NO_PUBLIC_URL
from voicecall.entrypoints.gateway_app import EventStreams, create_gateway_app
from voicecall.entrypoints.http_protocol import header_deadline_protocol
from voicecall.entrypoints.plugin import VoiceCallPlugin
from voicecall.entrypoints.token import ensure_gateway_token
from voicecall.entrypoints.webhook_app import create_webhook_app
from voicecall.services.exposure import TunnelStartError, TunnelSupervisor

__all__ = ["StartupError", "run_gateway", "serve"]

log = logging.getLogger("voicecall")


class StartupError(Exception):
    """Start-up refused; ``exit_code`` 2 for configuration, 1 for the environment."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Server(uvicorn.Server):
    # Two servers share one loop; the gateway owns the signal handlers, not each server.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this on Linux. Without it a response written in two parts
    # waits for the peer's delayed ACK: ~40 ms on every keep-alive request.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise StartupError(
            f"cannot listen for {what} on {host}:{port}: {err.strerror}", 1
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _check(config: AppConfig) -> None:
    voice = config.voice
    if not voice.enabled and config.source != "<memory>" and not Path(config.source).exists():
        # A newcomer following README "Using it" before writing a config file.
        raise StartupError(
            f"no config file at {config.source}: write one with "
            'plugins.entries.voice-call.config.enabled: true (README "Configuration" has a '
            "minimal one for the mock carrier), or pass --config PATH",
            2,
        )
    if not voice.enabled:
        raise StartupError(
            "the voice-call plugin is disabled; set plugins.entries.voice-call.config.enabled: "
            f"true in {config.source}",
            2,
        )
    if voice.provider not in telephony_names():
        raise StartupError(
            f"plugins.entries.voice-call.config.provider: {voice.provider!r} is not available "
            f"in this build (available: {', '.join(sorted(telephony_names()))})",
            2,
        )
    try:
        route = model_route(config)
    except ConfigError as err:
        raise StartupError(str(err), 2) from None
    if route.notice:
        log.info("%s", route.notice)


def _prepare_store(config: AppConfig) -> str:
    """Make the store directory (0700) and the gateway token in it; exit 2 naming ``store``
    if the directory cannot be made or written (a typo'd path, a file, no permission)."""
    store = config.voice.store_path
    try:
        private_directory(store)
        return ensure_gateway_token(config)
    except OSError as err:
        why = "it is not a directory" if err.errno == errno.EEXIST else err.strerror or str(err)
        raise StartupError(
            f"plugins.entries.voice-call.config.store: cannot use {str(store)!r} as the store: "
            f"{why}",
            2,
        ) from None


async def _start_tunnel(plugin: VoiceCallPlugin) -> TunnelSupervisor | None:
    """Bring the configured tunnel up (exit 2 with its error if it cannot), or say how
    carriers reach us without one."""
    container = plugin.container
    address = container.address()
    tunnel = container.tunnel()
    if tunnel is None:
        if address.required and address.url is None:
            log.warning(
                "no publicUrl and no tunnel: inbound webhooks are served and verified from the "
                "forwarding headers or the Host header; outbound calls are refused (%s)",
                NO_PUBLIC_URL,
            )
        return None
    supervisor = TunnelSupervisor(tunnel, address, container.clock())
    try:
        await supervisor.start()
    except TunnelStartError as err:
        raise StartupError(str(err), 2) from None
    return supervisor


async def run_gateway(config: AppConfig, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT; shuts down cleanly and flushes state."""
    _check(config)
    token = _prepare_store(config)
    voice = config.voice
    webhook_sock = _listen(voice.serve.bind, voice.serve.port, "webhooks")
    try:
        gateway_sock = _listen(config.gateway.bind, config.gateway.port, "the gateway")
    except StartupError:
        webhook_sock.close()
        raise
    plugin = VoiceCallPlugin(config)
    try:
        await plugin.start()
    except BaseException as err:
        webhook_sock.close()
        gateway_sock.close()
        if isinstance(err, StoreInUse):
            raise StartupError(str(err), 1) from None
        raise
    try:
        supervisor = await _start_tunnel(plugin)
    except BaseException:
        await plugin.stop()
        webhook_sock.close()
        gateway_sock.close()
        raise
    streams = EventStreams()
    apps = (create_webhook_app(plugin.service, config), create_gateway_app(plugin, token, streams))
    # uvicorn has no header-read deadline: without this protocol a connection that never
    # finishes its headers is held for ever (benchmarks/door_slow_headers.py).
    http = header_deadline_protocol()
    # proxy_headers=False: uvicorn would otherwise replace a 127.0.0.1 peer with its
    # X-Forwarded-For, so a reverse proxy on this host could never be a trusted proxy, and the
    # client would be whoever the header names. Forwarding headers are ours to judge, by the
    # webhookSecurity rules (SPEC §4; domain/signed_url.py, domain/client_address.py).
    # ws_per_message_deflate=False: permessage-deflate (RFC 7692) is optional and offered by
    # the client; media frames are base64 μ-law, which barely compresses, and zlib took about
    # a twelfth of the server's CPU in a soak with streams. /events runs over loopback or a LAN.
    servers = [
        _Server(
            uvicorn.Config(
                app,
                http=http,
                log_level="warning",
                lifespan="off",
                access_log=False,
                proxy_headers=False,
                ws_per_message_deflate=False,
            )
        )
        for app in apps
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = [
        asyncio.create_task(servers[0].serve(sockets=[webhook_sock])),
        asyncio.create_task(servers[1].serve(sockets=[gateway_sock])),
    ]
    log.info(
        "voicecall gateway up: provider %s, webhooks http://%s:%d%s, gateway http://%s:%d",
        voice.provider,
        voice.serve.bind,
        voice.serve.port,
        voice.serve.path,
        config.gateway.bind,
        config.gateway.port,
    )
    for notice in config.notices:
        log.info("%s", notice)
    if ready is not None:
        ready.set()
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("voicecall gateway shutting down")
        for server in servers:
            server.should_exit = True
        # uvicorn waits for every open WebSocket handler; a `tail` parked on an idle feed would
        # otherwise hold shutdown up until it is SIGKILLed.
        streams.close()
        stopper.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if supervisor is not None:
            await supervisor.stop()
        await plugin.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        log.info("voicecall gateway stopped; state flushed")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop (installed with uvicorn[standard] where it builds) roughly doubles what one
    # process serves; the standard loop works the same, only slower.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def serve(config: AppConfig) -> int:
    """Entry for ``voicecall serve``: returns the process exit code."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(run_gateway(config))
    except StartupError as err:
        print(f"voicecall: {err}", file=sys.stderr)
        return err.exit_code
    return 0
