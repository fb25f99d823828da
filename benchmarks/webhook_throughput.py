"""Benchmark: signed Twilio status callbacks through the real server vs a bare Litestar POST.

Both servers are uvicorn + Litestar in their own process on loopback, started the same way:

* ``signed``: ``voicecall serve`` itself (provider twilio), with a live call in its store, so
  every callback is verified (HMAC-SHA1 over the URL and sorted form fields), checked against
  the replay cache, parsed by the Twilio adapter, de-duplicated in SQLite and applied;
* ``bare``: a Litestar app with one POST handler that returns the same empty TwiML.

The load comes from this process (httpx, keep-alive). Each request is a distinct, correctly
signed status callback, so nothing is answered from the replay cache. Two figures:

1. throughput: requests per second with 16 concurrent clients for a few seconds each, and
   the ratio signed/bare (target >= 0.6);
2. latency at a fixed 500 requests/s (open loop), p50 and p99 (target p99 < 10 ms).

Run: ``make bench`` (or ``.venv/bin/python benchmarks/webhook_throughput.py``). It prints
figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from litestar import Litestar, Response, post
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "bench-auth-token"
CALL_SID = "CAbenchmark000000000000000000000000"
CALL_ID = "bench-call"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- servers


def bare_app() -> object:
    @post("/voice/webhook", status_code=200)
    async def webhook() -> Response[str]:
        return Response(EMPTY_TWIML, media_type="text/xml")

    return Litestar([webhook], logging_config=None, openapi_config=None)


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(
        bare_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


def write_signed_config(directory: Path, port: int) -> Path:
    config = {
        "plugins": {
            "entries": {
                "voice-call": {
                    "config": {
                        "enabled": True,
                        "provider": "twilio",
                        "fromNumber": "+15550100000",
                        "publicUrl": f"http://127.0.0.1:{port}/voice/webhook",
                        "serve": {"bind": "127.0.0.1", "port": port},
                        "twilio": {
                            "accountSid": ACCOUNT_SID,
                            "authToken": AUTH_TOKEN,
                            # Nothing listens here: the status lookup at start fails fast,
                            # so the seeded call is kept as 'status unknown'.
                            "apiBaseUrl": "http://127.0.0.1:9",
                        },
                        "maxConcurrentCalls": 10,
                        "store": str(directory / "store"),
                    }
                }
            }
        },
        "gateway": {"bind": "127.0.0.1", "port": free_port()},
    }
    path = directory / "openclaw.json"
    path.write_text(json.dumps(config))
    return path


async def seed_live_call(store_dir: Path) -> None:
    from voicecall.adapters.store.sqlite import SqliteCallStore
    from voicecall.domain.call import Call, CallDirection, CallMode, CallState

    store = SqliteCallStore(store_dir)
    await store.open()
    now = time.time()
    await store.save(
        Call(
            call_id=CALL_ID,
            provider="twilio",
            direction=CallDirection.OUTBOUND,
            from_number="+15550100000",
            to_number="+15551230001",
            mode=CallMode.CONVERSATION,
            started_at=now,
            provider_call_id=CALL_SID,
            state=CallState.LISTENING,
            answered_at=now,
            last_activity_at=now,
        )
    )
    await store.close()


def start(args: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=sink)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


# ----------------------------------------------------------------------------- load


class Callbacks:
    """Distinct, correctly signed status callbacks, made before the clock starts."""

    def __init__(self, port: int, count: int, offset: int) -> None:
        validator = RequestValidator(AUTH_TOKEN)
        self.requests: list[bytes] = []
        path = f"/voice/webhook?callId={CALL_ID}&hook=status"
        signed_url = f"http://127.0.0.1:{port}{path}"
        for n in range(offset, offset + count):
            params = {
                "AccountSid": ACCOUNT_SID,
                "CallSid": CALL_SID,
                "CallStatus": "in-progress",
                "SequenceNumber": str(n),
                "Timestamp": f"bench-{n}",
            }
            signature = validator.compute_signature(signed_url, params)
            body = urlencode(params).encode()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            self.requests.append(head.encode() + body)
        self.next = 0

    def take(self) -> bytes:
        item = self.requests[self.next % len(self.requests)]
        self.next += 1
        return item


class Connection:
    """A bare HTTP/1.1 keep-alive connection: the load generator must cost far less than the
    servers it measures (an httpx client tops out near the bare server's rate on 2 cores)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, raw: bytes) -> int:
        self.writer.write(raw)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        self.writer.close()


async def throughput(port: int, callbacks: Callbacks, seconds: float, workers: int = 16) -> float:
    connections = [await Connection.open(port) for _ in range(workers)]
    done = 0
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(connection: Connection) -> None:
        nonlocal done, errors
        while time.perf_counter() < stop_at:
            if await connection.post(callbacks.take()) == 200:
                done += 1
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    if errors:
        print(f"    ({errors} non-200 answers)")
    return done / elapsed


async def latency(port: int, callbacks: Callbacks, rate: float, seconds: float) -> list[float]:
    """Open loop: a request every 1/rate s whether or not earlier ones have been answered."""
    idle: list[Connection] = [await Connection.open(port) for _ in range(32)]
    samples: list[float] = []

    async def one(scheduled: float) -> None:
        connection = idle.pop() if idle else await Connection.open(port)
        status = await connection.post(callbacks.take())
        if status == 200:
            # Measured from when the request was due, so queueing in the client counts too.
            samples.append((time.perf_counter() - scheduled) * 1000)
        idle.append(connection)

    tasks = []
    interval = 1 / rate
    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        due = started + n * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(name: str, port: int, callbacks: Callbacks, seconds: float) -> dict[str, float]:
    await throughput(port, callbacks, 1.0)  # warm up connections and code paths
    rps = await throughput(port, callbacks, seconds)
    await asyncio.sleep(1.0)  # let the server drain before the latency phase
    samples = await latency(port, callbacks, 500, seconds)
    figures = {
        "rps": rps,
        "p50": statistics.median(samples),
        "p99": percentile(samples, 0.99),
        "n": len(samples),
    }
    print(
        f"  {name:<7} {rps:8.0f} req/s   at 500 req/s: p50 {figures['p50']:.2f} ms,"
        f" p99 {figures['p99']:.2f} ms ({len(samples)} answered)"
    )
    return figures


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="voicecall-bench-") as tmp:
        directory = Path(tmp)
        signed_port, bare_port = free_port(), free_port()
        config = write_signed_config(directory, signed_port)
        await seed_live_call(directory / "store")
        env_python = sys.executable
        signed = start(
            [env_python, "-m", "voicecall", "serve", "--config", str(config)],
            signed_port,
            directory / "signed.log",
        )
        bare = start(
            [env_python, __file__, "--serve-bare", str(bare_port)],
            bare_port,
            directory / "bare.log",
        )
        try:
            total = int(seconds * 6000) + 20000
            print(f"voicecall webhook benchmark ({os.cpu_count()} cores, {seconds:g} s per phase)")
            bare_figs = await measure("bare", bare_port, Callbacks(bare_port, total, 0), seconds)
            signed_figs = await measure(
                "signed", signed_port, Callbacks(signed_port, total, 0), seconds
            )
            ratio = signed_figs["rps"] / bare_figs["rps"]
            print(f"  throughput ratio signed/bare: {ratio:.2f} (target >= 0.60)")
            print(f"  signed p99 at 500 req/s: {signed_figs['p99']:.2f} ms (target < 10 ms)")
        finally:
            for process in (signed, bare):
                process.terminate()
                process.wait(10)
            log_lines = (directory / "signed.log").read_text().splitlines()
            print(f"  (signed server wrote {len(log_lines)} log lines; last: {log_lines[-1:]})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_bare:
        serve_bare(options.serve_bare)
    else:
        asyncio.run(main(options.seconds))
