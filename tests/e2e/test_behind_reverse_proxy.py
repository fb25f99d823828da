"""End to end behind a reverse proxy: ``voicecall serve`` with no ``publicUrl`` and no tunnel,
reached only through a small HTTP proxy on loopback, over every trust combination of SPEC §4.

The picture is the usual one. The carrier dials ``https://<public host>/voice/webhook``; a
reverse proxy on the same machine terminates it and forwards to the webhook listener, adding
``X-Forwarded-Proto`` / ``X-Forwarded-Host`` / ``X-Forwarded-For``. Each carrier is its real
simulator (``voicecall.testing.*_sim``), run in this process, signing every webhook over the
public URL it dialled (Twilio HMAC-SHA1, Plivo V3, Telnyx Ed25519 over timestamp and body). A
small transport stands in for DNS and TLS: it delivers what the simulator sends to the public
host to the proxy's loopback port, Host header untouched.

Addresses on loopback: the carrier connects from 127.0.0.3; the proxy forwards from 127.0.0.1
(the address the configs name in ``trustedProxyIPs``) or from 127.0.0.2 (a proxy nobody
named). The proxy either rewrites Host to the listener's own address (nginx's default
``proxy_pass``) or passes the public Host through (``proxy_set_header Host $host``).

The rule under test (SPEC §4, "The URL that was signed"): with no ``publicUrl``, forwarding
headers shape the rebuilt URL only when forwarding is switched on (``trustForwardingHeaders``
or a non-empty ``allowedHosts``) and the peer is in ``trustedProxyIPs`` (IPv4-mapped IPv6
matching its IPv4 form); a forwarded host outside a non-empty ``allowedHosts`` is ignored;
otherwise the URL is ``https://`` + the Host header. Twilio and Plivo sign the URL, so a request
is accepted exactly when that rebuild gives back the URL the carrier signed. Telnyx signs
timestamp and body only, so the host rules cannot refuse a genuine Telnyx webhook: every
combination is accepted, and a webhook signed with another key is refused through the same
proxy (Telnyx skips the flag-plus-allowedHosts config, which only changes the URL rebuilt).

Per carrier, one gateway per ``webhookSecurity`` below (``SECURITY``); within it, each case
picks the proxy (named or not), the public host (allowed or not) and the Host handling.

Accepted means a 2xx answer, the call visible over RPC, and (after the caller hangs up) the
call ended by the carrier's signed hang-up callback, which travels back through the proxy to
the URL our documents gave. Refused means 401 and no call at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from nacl.signing import SigningKey

from voicecall.testing.plivo_sim import PlivoSimulator
from voicecall.testing.simtime import ScaledClock
from voicecall.testing.telnyx_sim import TelnyxSimulator
from voicecall.testing.twilio_sim import TwilioSimulator

from .conftest import ALLOWED, Gateway, free_port

pytestmark = pytest.mark.e2e

T = TypeVar("T")

OUR_NUMBER = "+15550100000"
PATH = "/voice/webhook"
PUBLIC_HOST = "voice.example.com"
OTHER_HOST = "other.example.net"  # also routed to our proxy, but never in allowedHosts
CARRIER_ADDRESS = "127.0.0.3"
NAMED_PROXY = "127.0.0.1"
UNNAMED_PROXY = "127.0.0.2"
TWILIO_SID = "AC" + "7" * 32
TWILIO_TOKEN = "proxy-e2e-twilio-token"
PLIVO_ID = "MAPROXYE2E0000000000"
PLIVO_TOKEN = "proxy-e2e-plivo-token"
TELNYX_API_KEY = "KEYproxye2e"

# The gateway's webhookSecurity under test. Each names the proxy at 127.0.0.1 in some form.
SECURITY: dict[str, dict[str, Any]] = {
    # A trusted proxy is named, but forwarding is not switched on: headers are never read.
    "forwarding-off": {"trustedProxyIPs": [NAMED_PROXY]},
    # Switched on by the flag; the proxy named in its IPv4-mapped IPv6 form.
    "trust-flag": {"trustForwardingHeaders": True, "trustedProxyIPs": ["::ffff:127.0.0.1"]},
    # Switched on by allowedHosts, which also limits which forwarded hosts count.
    "allowed-hosts": {"allowedHosts": [PUBLIC_HOST], "trustedProxyIPs": [NAMED_PROXY]},
    # Both: the flag does not lift the allowedHosts limit.
    "trust-flag+allowed-hosts": {
        "trustForwardingHeaders": True,
        "allowedHosts": [PUBLIC_HOST],
        "trustedProxyIPs": [NAMED_PROXY],
    },
}
LIMITED = ("allowed-hosts", "trust-flag+allowed-hosts")


def accepted_by_spec(carrier: str, security: str, proxy: str, host: str, keep_host: bool) -> bool:
    """SPEC §4 spelled out for this rig (see the module docstring)."""
    if carrier == "telnyx":
        return True  # Ed25519 over timestamp|body: the URL is not signed
    switched_on = security != "forwarding-off"
    host_allowed = security not in LIMITED or host == PUBLIC_HOST
    if switched_on and proxy == NAMED_PROXY and host_allowed:
        return True  # rebuilt from X-Forwarded-Proto/Host: the public URL
    # Rebuilt from Host with https: the public URL only when the proxy kept the public Host.
    return keep_host


def combinations() -> Iterator[Any]:
    # Grouped by (carrier, security) so consecutive cases share one gateway.
    for carrier in ("twilio", "telnyx", "plivo"):
        for security in SECURITY:
            if carrier == "telnyx" and security == "trust-flag+allowed-hosts":
                continue  # nothing new where the URL is not signed
            hosts = (PUBLIC_HOST, OTHER_HOST) if security in LIMITED else (PUBLIC_HOST,)
            for proxy in (NAMED_PROXY, UNNAMED_PROXY):
                for host in hosts:
                    for keep_host in (False, True):
                        expected = accepted_by_spec(carrier, security, proxy, host, keep_host)
                        yield pytest.param(
                            carrier,
                            security,
                            proxy,
                            host,
                            keep_host,
                            expected,
                            id=(
                                f"{carrier}-{security}-proxy@{proxy}-{host.split('.')[0]}-"
                                f"{'keep-host' if keep_host else 'rewrite-host'}-"
                                f"{'accepted' if expected else 'refused'}"
                            ),
                        )


# ---------------------------------------------------------------------------- the rig


class LoopThread:
    """An asyncio loop in a thread: the simulators and the proxy live there, while the test
    drives the gateway with blocking calls from the main thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Awaitable[T], timeout: float = 30.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(_wrap(work), self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _wrap(work: Awaitable[T]) -> T:
    return await work


server_tasks: dict[uvicorn.Server, asyncio.Task[None]] = {}
"""Each server started by ``serve`` and the task running it, until ``shut``."""


async def serve(app: Any, port: int) -> uvicorn.Server:
    """Serve an ASGI app on 127.0.0.1:port in the running loop; returns once it listens."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    # Served from the loop thread: uvicorn installs signal handlers only in the main thread.
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise AssertionError(f"nothing listens on {port}")
        await asyncio.sleep(0.01)
    server_tasks[server] = task
    return server


async def shut(server: uvicorn.Server) -> None:
    server.should_exit = True
    await server_tasks.pop(server)


class ReverseProxy:
    """The operator's reverse proxy: forwards to the webhook listener from ``source``,
    adding X-Forwarded-* and either rewriting Host to the listener's address or keeping it."""

    def __init__(self, source: str, keep_host: bool) -> None:
        self.keep_host = keep_host
        self.target_port = 0
        self.port = free_port()
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address=source), timeout=15
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        incoming = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        public_host = next(v for k, v in incoming if k.lower() == "host")
        upstream = f"127.0.0.1:{self.target_port}"
        headers = [
            (k, v)
            for k, v in incoming
            if k.lower() not in ("host", "connection", "content-length", "transfer-encoding")
        ]
        headers += [
            ("host", public_host if self.keep_host else upstream),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", public_host),
            ("x-forwarded-for", scope["client"][0]),
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"http://{upstream}{scope['path']}" + (f"?{query}" if query else "")
        answer = await self.client.request(
            scope["method"], url, headers=headers, content=bytes(body)
        )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})


class PublicInternet(httpx.AsyncBaseTransport):
    """DNS and TLS for the simulators: the public hosts resolve to the chosen proxy. The
    request keeps its ``Host`` (the public host), as TLS termination would leave it; every
    answer is recorded."""

    def __init__(self) -> None:
        self.proxy_port = 0
        self.inner = httpx.AsyncHTTPTransport(local_address=CARRIER_ADDRESS)
        self.answers: list[tuple[str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in (PUBLIC_HOST, OTHER_HOST):
            request.url = request.url.copy_with(
                scheme="http", host="127.0.0.1", port=self.proxy_port
            )
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.answers.append((str(request.url), response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Line:
    """One carrier: its simulator (webhooks out through ``PublicInternet``, REST served on
    loopback for the gateway) and how to ring, hang up and wait for it to settle."""

    def __init__(self, carrier: str, internet: PublicInternet) -> None:
        self.carrier = carrier
        self.internet = internet
        self.client = httpx.AsyncClient(transport=internet, timeout=15)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        public = f"https://{PUBLIC_HOST}{PATH}"
        clock = ScaledClock(1.0)
        self.telnyx_key = SigningKey.generate()
        self.sim: Any
        if carrier == "twilio":
            self.sim = TwilioSimulator(
                self.client,
                clock=clock,
                account_sid=TWILIO_SID,
                auth_token=TWILIO_TOKEN,
                voice_url=public,
                number_status_callback=public,
                answer_delay_s=0.01,
            )
        elif carrier == "plivo":
            self.sim = PlivoSimulator(
                auth_id=PLIVO_ID,
                auth_token=PLIVO_TOKEN,
                webhook=self.client,
                webhook_url=public,
                clock=clock,
                answer_delay_s=0.01,
            )
        else:
            self.sim = TelnyxSimulator(
                self.client,
                self.telnyx_key,
                public,
                api_key=TELNYX_API_KEY,
                clock=clock,
                answer_delay_s=0.01,
                delivery_jitter_s=0.0,
            )
        self.server: uvicorn.Server | None = None

    def gateway_settings(self) -> dict[str, Any]:
        if self.carrier == "twilio":
            return {
                "twilio": {
                    "accountSid": TWILIO_SID,
                    "authToken": TWILIO_TOKEN,
                    "apiBaseUrl": self.url,
                }
            }
        if self.carrier == "plivo":
            return {"plivo": {"authId": PLIVO_ID, "authToken": PLIVO_TOKEN, "apiBaseUrl": self.url}}
        return {
            "telnyx": {
                "apiKey": TELNYX_API_KEY,
                "connectionId": "proxy-e2e-connection",
                "publicKey": base64.b64encode(bytes(self.telnyx_key.verify_key)).decode(),
                "apiBaseUrl": f"{self.url}/v2",
            }
        }

    def dial_to(self, host: str) -> None:
        """The number's webhook URL at the carrier: what it dials and signs."""
        url = f"https://{host}{PATH}"
        if self.carrier == "twilio":
            self.sim.voice_url = self.sim.number_status_callback = url
        elif self.carrier == "plivo":
            self.sim.webhook_url = url
        else:
            self.sim.connection_webhook_url = url

    async def start(self) -> None:
        self.server = await serve(self.sim, self.port)

    async def ring(self) -> str:
        if self.carrier == "twilio":
            sid: str = await self.sim.ring_inbound(ALLOWED, OUR_NUMBER)
            return sid
        if self.carrier == "plivo":
            call = await self.sim.ring_inbound(ALLOWED, OUR_NUMBER)
            uuid_: str = call.call_uuid
            return uuid_
        control_id: str = await self.sim.ring_inbound(ALLOWED, OUR_NUMBER)
        return control_id

    async def hang_up(self, provider_call_id: str) -> None:
        if self.carrier == "twilio":
            self.sim.caller_hangs_up(provider_call_id)
        else:
            await self.sim.caller_hangs_up(provider_call_id)

    async def settle(self, within: float = 15.0) -> None:
        """Until the simulator has nothing in flight (every webhook delivered, scripts done)."""
        deadline = time.monotonic() + within
        background = self.sim._background  # the simulators' own task set

        def busy() -> bool:
            undelivered = int(getattr(self.sim, "_undelivered", 0))  # Telnyx's retry queue
            return undelivered > 0 or any(not task.done() for task in background.tasks)

        while busy():
            if time.monotonic() > deadline:
                raise AssertionError(f"the {self.carrier} simulator did not settle")
            await asyncio.sleep(0.02)

    async def forged_telnyx_ring(self) -> int:
        """A ``call.initiated`` for a call nobody made, signed with a key that is not Telnyx's,
        sent to the public URL through the same proxy."""
        body = json.dumps(
            {
                "data": {
                    "event_type": "call.initiated",
                    "id": str(uuid.uuid4()),
                    "occurred_at": "2026-01-01T00:00:00.000000Z",
                    "record_type": "event",
                    "payload": {
                        "call_control_id": "v3:forged-" + uuid.uuid4().hex,
                        "connection_id": "proxy-e2e-connection",
                        "direction": "incoming",
                        "from": ALLOWED,
                        "to": OUR_NUMBER,
                        "state": "parked",
                    },
                },
                "meta": {"attempt": 1, "delivered_to": f"https://{PUBLIC_HOST}{PATH}"},
            }
        ).encode()
        timestamp = str(int(time.time()))
        signature = SigningKey.generate().sign(timestamp.encode() + b"|" + body).signature
        answer = await self.client.post(
            f"https://{PUBLIC_HOST}{PATH}",
            content=body,
            headers={
                "content-type": "application/json",
                "telnyx-timestamp": timestamp,
                "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            },
        )
        return answer.status_code

    async def aclose(self) -> None:
        await self.sim.aclose()
        if self.server is not None:
            await shut(self.server)
        await self.client.aclose()


Key = tuple[str, str]  # (carrier, security): what one gateway serves


class Station:
    """One gateway and its carrier line, started in a thread of its own so that the next one
    can come up while the current one's cases run (start-up is mostly imports)."""

    def __init__(self, rig: Rig, key: Key) -> None:
        carrier, security = key
        self.rig = rig
        self.line = Line(carrier, rig.internet)
        rig.loop.run(self.line.start())
        home = rig.tmp / f"{carrier}-{security}"
        home.mkdir()
        self.gateway = Gateway(
            home,
            provider=carrier,
            webhookSecurity=SECURITY[security],
            maxConcurrentCalls=4,
            **self.line.gateway_settings(),
        )
        self.failure: BaseException | None = None
        self.starting = threading.Thread(target=self._start, daemon=True)
        self.starting.start()

    def _start(self) -> None:
        try:
            self.gateway.start(timeout=120)
        except BaseException as err:  # handed to the test that needs this gateway
            self.failure = err

    def ready(self) -> Gateway:
        self.starting.join(150)
        if self.failure is not None:
            raise self.failure
        assert not self.starting.is_alive(), "the gateway is still starting"
        return self.gateway

    def close(self) -> None:
        self.starting.join(150)
        try:
            if self.gateway.process is not None:
                self.gateway.stop()
        finally:
            self.rig.loop.run(self.line.aclose())


class Rig:
    """The loop thread, the four proxies, and the gateways: the one in use, kept while
    consecutive cases share its (carrier, security), and the next one, already starting."""

    def __init__(self, tmp: Path, order: list[Key]) -> None:
        self.tmp = tmp
        self.order = order
        self.loop = LoopThread()
        self.internet = PublicInternet()
        self.proxies = {
            (source, keep_host): ReverseProxy(source, keep_host)
            for source in (NAMED_PROXY, UNNAMED_PROXY)
            for keep_host in (False, True)
        }
        self.servers = [self.loop.run(serve(proxy, proxy.port)) for proxy in self.proxies.values()]
        self.stations: dict[Key, Station] = {}
        self.key: Key | None = None

    def use(self, carrier: str, security: str) -> tuple[Gateway, Line]:
        key = (carrier, security)
        if self.key != key:
            if self.key is not None:
                self.stations.pop(self.key).close()
            self.key = key
            if key not in self.stations:
                self.stations[key] = Station(self, key)
            upcoming = self.order[self.order.index(key) + 1 :] if key in self.order else []
            if upcoming and upcoming[0] not in self.stations:
                self.stations[upcoming[0]] = Station(self, upcoming[0])
        station = self.stations[key]
        gateway = station.ready()
        for proxy in self.proxies.values():
            proxy.target_port = gateway.webhook_port
        return gateway, station.line

    def close(self) -> None:
        try:
            for station in self.stations.values():
                station.close()
        finally:
            for server in self.servers:
                self.loop.run(shut(server))
            for proxy in self.proxies.values():
                self.loop.run(proxy.client.aclose())
            self.loop.run(self.internet.aclose())
            self.loop.close()


@pytest.fixture(scope="module")
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    # The gateways the selected cases need, in the order they run.
    order: list[Key] = []
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.module is request.module and "security" in params:  # type: ignore[attr-defined]
            key = (params["carrier"], params["security"])
            if key not in order:
                order.append(key)
    built = Rig(tmp_path_factory.mktemp("behind-proxy"), order)
    yield built
    built.close()


def calls(gateway: Gateway) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = gateway.rpc("voicecall.list", {})["payload"]["calls"]
    return listed


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------- the test


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("carrier", "security", "proxy", "host", "keep_host", "accepted"), list(combinations())
)
def test_a_webhook_through_the_proxy_is_accepted_exactly_when_the_url_rebuilds_to_the_signed_one(
    rig: Rig, carrier: str, security: str, proxy: str, host: str, keep_host: bool, accepted: bool
) -> None:
    gateway, line = rig.use(carrier, security)
    rig.internet.proxy_port = rig.proxies[(proxy, keep_host)].port
    line.dial_to(host)
    before = {call["callId"] for call in calls(gateway)}
    seen = len(rig.internet.answers)

    provider_call_id = rig.loop.run(line.ring())
    wait_for(lambda: len(rig.internet.answers) > seen, "the carrier's first webhook to be answered")
    url, status = rig.internet.answers[seen]
    assert url.startswith(f"http://127.0.0.1:{rig.internet.proxy_port}{PATH}")

    if not accepted:
        assert status == 401, (status, gateway.log_tail())
        rig.loop.run(line.settle())
        assert {call["callId"] for call in calls(gateway)} == before  # nothing changed
        statuses = {code for _, code in rig.internet.answers[seen:]}
        assert statuses == {401}, statuses  # every later callback of that call refused too
        return

    assert 200 <= status < 300, (status, gateway.log_tail())
    call = wait_for(
        lambda: next((c for c in calls(gateway) if c["providerCallId"] == provider_call_id), None),
        "the call to show over RPC",
    )
    assert call["callId"] not in before
    assert call["from"] == ALLOWED and call["direction"] == "inbound"

    # The caller hangs up: the carrier's signed hang-up callback comes back through the same
    # proxy, to the URL our answer gave it, and ends the call.
    rig.loop.run(line.hang_up(provider_call_id))
    ended = wait_for(
        lambda: gateway.rpc("voicecall.status", {"callId": call["callId"]})["payload"]["call"][
            "endedAt"
        ],
        "the hang-up callback to end the call",
    )
    assert ended is not None
    rig.loop.run(line.settle())
    later = rig.internet.answers[seen:]
    refused = [(u, code) for u, code in later if not 200 <= code < 300]
    assert refused == [], refused
    # Every callback went to the public host (so through the proxy), never to the listener's
    # own address: the URLs our answers gave were rebuilt to the public one.
    door = f"http://127.0.0.1:{rig.internet.proxy_port}{PATH}"
    assert all(u.startswith(door) for u, _ in later), later
    assert len(later) >= 2  # the first webhook and at least the hang-up callback

    if carrier == "telnyx":
        # Signed with a key that is not the connection's: refused through the same door.
        before = {c["callId"] for c in calls(gateway)}
        assert rig.loop.run(line.forged_telnyx_ring()) == 401
        assert {c["callId"] for c in calls(gateway)} == before
