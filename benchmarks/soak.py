"""Soak: a steady mix through the real ``voicecall serve`` (mock carrier), for minutes.

Runs ``voicecall serve`` as a subprocess on loopback ports and drives, for ``--minutes``:

* calls over ``/rpc``: ``--calls-per-s`` initiates, alternating a notify call and a
  conversation call that is spoken to, sent DTMF through the mock webhook, and ended;
* webhooks: ``--webhooks-per-s`` mock-carrier events (DTMF on live calls, and events for
  calls nobody knows, which are ignored);
* ``--subscribers`` ``/events`` streams from ``since=0`` for the whole run;
* media streams (on unless ``--no-streaming``): with ``streaming.enabled`` every call speaks and
  listens over a media stream; the mock carrier opens it to the server's stream listener over
  loopback and puts a simulated handset on it (20 ms frames both ways, marks echoed), with the
  offline tone voice and recogniser, so no speech keys are needed.

It prints the server's RSS at the start and each minute, with the CPU the server and this
client used in that minute and the client's worst event-loop lag: a client that falls behind
would read its streams late and get them dropped for slowness it caused itself, so the
figures say which side was slow. Then: the error responses (HTTP 5xx, RPC answers with
``internal`` or ``transient`` codes, connection failures), and the events each subscriber
missed: the log is read back in full at the end (``since=0``) and every subscriber that stayed
connected must have seen every event in its window.

    .venv/bin/python benchmarks/soak.py --minutes 10     # the issue's soak
    .venv/bin/python benchmarks/soak.py --minutes 1      # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

CALLEE = "+15557654321"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Soak:
    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.args = args
        self.gateway_port = _free_port()
        self.webhook_port = _free_port()
        self.store = tmp / "store"
        self.config = tmp / "openclaw.json"
        plugin = {
            "enabled": True,
            "provider": "mock",
            "store": str(self.store),
            "maxConcurrentCalls": 1000,
            "serve": {"bind": "127.0.0.1", "port": self.webhook_port, "path": "/voice/webhook"},
            "mock": {"answerDelayMs": 100, "speechCharsPerSec": 40},
            "streaming": {"enabled": args.streaming},
        }
        self.config.write_text(
            json.dumps(
                {
                    "gateway": {"port": self.gateway_port, "bind": "127.0.0.1"},
                    "plugins": {"entries": {"voice-call": {"enabled": True, "config": plugin}}},
                }
            )
        )
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.live: list[str] = []
        self.received: list[set[int]] = []
        self.closed_codes: Counter[int] = Counter()
        self.lag = 0.0
        self.process: subprocess.Popen[bytes] | None = None
        self.t0 = time.monotonic()

    def launch(self) -> None:
        voicecall = [str(Path(sys.executable).with_name("voicecall"))]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}
        if self.args.probe:
            # The same server under a memory probe (benchmarks/serve_probe.py).
            voicecall = [sys.executable, str(Path(__file__).with_name("serve_probe.py"))]
            env |= {"VOICECALL_PROBE_OUT": str(Path(self.args.probe).resolve())}
            env |= {"VOICECALL_PROBE_INTERVAL": str(self.args.probe_interval)}
            if self.args.profile:
                env |= {"VOICECALL_PROBE_PROFILE": str(Path(self.args.profile).resolve())}
        with open(self.config.parent / "serve.log", "wb") as log:
            self.process = subprocess.Popen(
                [*voicecall, "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def start(self) -> None:
        self.launch()
        async with httpx.AsyncClient() as client:
            for _ in range(1200):
                with contextlib.suppress(httpx.HTTPError):
                    health = await client.get(f"http://127.0.0.1:{self.gateway_port}/health")
                    if health.status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("voicecall serve did not come up")
        self.token = (self.store / "gateway-token").read_text().strip()

    async def rpc(self, client: httpx.AsyncClient, method: str, params: dict[str, Any]) -> Any:
        self.requests += 1
        try:
            response = await client.post(
                f"http://127.0.0.1:{self.gateway_port}/rpc",
                json={"method": method, "params": params},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=60,
            )
        except httpx.HTTPError as err:
            self.errors[f"rpc {type(err).__name__}"] += 1
            return None
        if response.status_code >= 500:
            self.errors[f"rpc HTTP {response.status_code}"] += 1
            return None
        answer = response.json()
        if not answer.get("ok"):
            code = answer["error"]["code"]
            if code in ("internal", "transient"):
                self.errors[f"rpc {code}"] += 1
            return None
        return answer["payload"]

    async def webhook(self, client: httpx.AsyncClient, event: dict[str, Any]) -> None:
        self.requests += 1
        try:
            response = await client.post(
                f"http://127.0.0.1:{self.webhook_port}/voice/webhook",
                json={"event": event},
                timeout=30,
            )
        except httpx.HTTPError as err:
            self.errors[f"webhook {type(err).__name__}"] += 1
            return
        if response.status_code >= 500:
            self.errors[f"webhook HTTP {response.status_code}"] += 1

    async def subscriber(self, index: int, stop: asyncio.Event) -> None:
        seen: set[int] = set()
        self.received.append(seen)
        url = f"ws://127.0.0.1:{self.gateway_port}/events?since=0&token={self.token}"
        try:
            async with connect(url, max_size=None) as socket_:
                stopper = asyncio.create_task(stop.wait())
                stopper.add_done_callback(lambda _: asyncio.ensure_future(socket_.close()))
                # One read per frame, no timer per frame: the client must not be the slow one.
                async for message in socket_:
                    event = json.loads(message)
                    if "seq" in event:
                        seen.add(event["seq"])
                stopper.cancel()
                if not stop.is_set():  # the server ended it normally, but before the end
                    self.closed_early(index, seen, socket_.close_code, socket_.close_reason)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else 1006
            reason = closed.rcvd.reason if closed.rcvd else f"we sent {closed.sent}"
            self.closed_early(index, seen, code, reason)

    def closed_early(
        self, index: int, seen: set[int], code: int | None, reason: str | None
    ) -> None:
        self.closed_codes[code or 1006] += 1
        at = time.monotonic() - self.t0
        print(f"  subscriber {index} closed with {code} ({reason}) at {at:.0f} s, {len(seen)} in")
        seen.add(-1)  # not a survivor: its window ended early

    async def watch_own_loop(self) -> None:
        """The worst lag of this client's event loop since the last report (seconds)."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(0.1)
            self.lag = max(self.lag, time.monotonic() - asked - 0.1)

    async def conversation(self, client: httpx.AsyncClient) -> None:
        started = await self.rpc(
            client, "voicecall.initiate", {"to": CALLEE, "message": "Hi.", "mode": "conversation"}
        )
        if started is None:
            return
        call_id = started["callId"]
        self.live.append(call_id)
        await asyncio.sleep(1.0)
        await self.rpc(client, "voicecall.speak", {"callId": call_id, "message": "One moment."})
        await asyncio.sleep(random.uniform(1.0, 4.0))
        self.live.remove(call_id)
        await self.rpc(client, "voicecall.end", {"callId": call_id})

    async def drive(self) -> None:
        args = self.args
        stop = asyncio.Event()
        subscribers = [
            asyncio.create_task(self.subscriber(i, stop)) for i in range(args.subscribers)
        ]
        tasks: set[asyncio.Task[Any]] = set()
        assert self.process is not None
        print(f"minute 0: RSS {_rss_mb(self.process.pid):.1f} MB", flush=True)
        started = self.t0 = time.monotonic()
        next_report = 60.0
        tick = 0
        watcher = asyncio.create_task(self.watch_own_loop())
        server_cpu, own_cpu = _cpu_s(self.process.pid), _cpu_s(os.getpid())
        # uvicorn closes a connection idle for 5 s (--timeout-keep-alive, default 5,
        # https://www.uvicorn.org/settings/) and httpx reuses one idle for up to 5 s
        # (keepalive_expiry, https://www.python-httpx.org/advanced/resource-limits): a request
        # sent on a connection the server is closing at that moment fails with ReadError, a
        # client-side race, not a server error. Idle connections are retired at 2 s instead.
        limits = httpx.Limits(max_connections=200, keepalive_expiry=2.0)
        async with httpx.AsyncClient(limits=limits) as client:
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                tick += 1
                for n in range(args.calls_per_s):
                    if (tick + n) % 2:
                        work: Any = self.rpc(
                            client,
                            "voicecall.initiate",
                            {"to": CALLEE, "message": "The build is green.", "mode": "notify"},
                        )
                    else:
                        work = self.conversation(client)
                    task = asyncio.create_task(work)
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                for _ in range(args.webhooks_per_s):
                    if self.live and random.random() < 0.5:
                        event = {"type": "call.dtmf", "callId": random.choice(self.live)}
                        event |= {"digits": "5", "dedupeKey": uuid.uuid4().hex}
                    else:
                        event = {"type": "call.ringing", "providerCallId": uuid.uuid4().hex}
                    task = asyncio.create_task(self.webhook(client, event))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if elapsed >= next_report:
                    minute = int(next_report // 60)
                    now_server, now_own = _cpu_s(self.process.pid), _cpu_s(os.getpid())
                    print(
                        f"minute {minute}: RSS {_rss_mb(self.process.pid):.1f} MB;"
                        f" server CPU {(now_server - server_cpu) / 0.6:.0f}%,"
                        f" client CPU {(now_own - own_cpu) / 0.6:.0f}% of a core;"
                        f" client loop lag max {self.lag * 1000:.0f} ms",
                        flush=True,
                    )
                    server_cpu, own_cpu, self.lag = now_server, now_own, 0.0
                    next_report += 60.0
                await asyncio.sleep(1.0)
            await asyncio.gather(*tasks, return_exceptions=True)
            # Calls still running (a notify call holds the line a few seconds after its
            # message) log events after the load stops; a subscriber closed before they are
            # logged did not lose them. So the streams close once no call is live.
            for _ in range(120):
                live = await self.rpc(client, "voicecall.list", {"active": True, "limit": 10})
                if live is not None and not live["calls"]:
                    break
                await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # the last events reach the streams
        watcher.cancel()
        stop.set()
        await asyncio.gather(*subscribers)
        print(f"end: RSS {_rss_mb(self.process.pid):.1f} MB")

    async def all_events(self) -> dict[int, str]:
        """Every logged event's type by sequence number, read back from ``since=0``."""
        seqs: dict[int, str] = {}
        url = f"ws://127.0.0.1:{self.gateway_port}/events?since=0&token={self.token}"
        async with connect(url, max_size=None) as socket_:
            while True:
                try:
                    event = json.loads(await asyncio.wait_for(socket_.recv(), 3.0))
                except TimeoutError:
                    return seqs
                if "seq" in event:
                    seqs[event["seq"]] = event["type"]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--calls-per-s", type=int, default=4)
    parser.add_argument("--webhooks-per-s", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument(
        "--streaming",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="calls speak and listen over media streams (default on)",
    )
    parser.add_argument(
        "--probe", metavar="FILE", help="run the server under benchmarks/serve_probe.py into FILE"
    )
    parser.add_argument("--probe-interval", type=float, default=30.0)
    parser.add_argument("--profile", metavar="FILE", help="with --probe: cProfile the server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(Path(tmp), args)
        await soak.start()
        try:
            await soak.drive()
            truth = await soak.all_events()
        finally:
            soak.stop()
    survivors = [seen for seen in soak.received if -1 not in seen]
    missed = Counter(truth[seq] for seen in survivors for seq in truth.keys() - seen)
    lost = sum(missed.values())
    print(f"requests: {soak.requests}; events logged: {len(truth)}")
    print(f"error responses: {sum(soak.errors.values())} {dict(soak.errors)}")
    print(
        f"subscribers: {len(survivors)}/{args.subscribers} stayed connected; lost events: {lost}"
        f"; closed early: {dict(soak.closed_codes)}"
        + (f"; missed by type: {dict(missed)}" if missed else "")
    )


if __name__ == "__main__":
    asyncio.run(main())
