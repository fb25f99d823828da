"""Benchmark: N simultaneous media streams through the real server, measured at the receiver.

The server is ``voicecall serve`` (provider twilio, streaming on) in its own process. The
carrier is the shipped Twilio simulator, run in this process on loopback as the load
generator: it answers each call, follows the ``<Connect><Stream>``, opens the WebSocket, and
puts a simulated handset on it that plays what it receives at 8 kHz (one 20 ms frame per
tick), sends 20 ms caller frames, and echoes each mark when the audio before it has played.
Every call is a conversation whose opening line is ``--seconds`` of audio (the offline tone
voice); the callee says nothing and hangs up once the bot is quiet.

Measured at the receiver, per N:

* underruns: ticks in the middle of a line with nothing to play (target 0);
* mark lateness: how long after the audio before a mark ran out the mark arrived (target
  p99 < 20 ms);
* server CPU (per cent of one core, averaged over the streaming window) and peak RSS;
* the load generator's own CPU, since it shares the two cores.

Run: ``.venv/bin/python benchmarks/media_streams.py [--streams 50 100 200] [--seconds 20]``.
It prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn

from voicecall.testing.simtime import ScaledClock
from voicecall.testing.twilio_sim import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioSimulator

CALLEE = "+15557654321"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_config(directory: Path, n: int, sim_port: int, webhook_port: int, gw_port: int) -> Path:
    public_url = f"http://127.0.0.1:{webhook_port}/voice/webhook"
    plugin = {
        "enabled": True,
        "provider": "twilio",
        "fromNumber": "+15550100000",
        "toNumber": CALLEE,
        "publicUrl": public_url,
        "twilio": {
            "accountSid": DEFAULT_ACCOUNT_SID,
            "authToken": DEFAULT_AUTH_TOKEN,
            "apiBaseUrl": f"http://127.0.0.1:{sim_port}",
        },
        "serve": {"bind": "127.0.0.1", "port": webhook_port},
        "streaming": {"enabled": True},
        "maxConcurrentCalls": n + 5,
        "ringTimeoutMs": 60000,
        "maxDurationSeconds": 600,
        "store": str(directory / "store"),
    }
    config = {
        "plugins": {"entries": {"voice-call": {"config": plugin}}},
        "gateway": {"bind": "127.0.0.1", "port": gw_port, "auth": {"token": "bench-token"}},
    }
    path = directory / "openclaw.json"
    path.write_text(json.dumps(config))
    return path


async def rpc(client: httpx.AsyncClient, gw: str, method: str, params: dict) -> dict:
    response = await client.post(
        f"{gw}/rpc",
        json={"method": method, "params": params},
        headers={"Authorization": "Bearer bench-token"},
        timeout=60,
    )
    answer = response.json()
    if not answer.get("ok"):
        raise RuntimeError(f"{method}: {answer}")
    return dict(answer["payload"])


async def run(n: int, seconds: float) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="voicecall-bench-media-"))
    sim_port, webhook_port, gw_port = free_port(), free_port(), free_port()
    config = write_config(directory, n, sim_port, webhook_port, gw_port)
    log = (directory / "serve.log").open("wb")
    server = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "voicecall", "serve", "--config", str(config)],
        stdout=log,
        stderr=log,
    )
    gw = f"http://127.0.0.1:{gw_port}"
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
    sim = TwilioSimulator(
        http,
        clock=ScaledClock(1.0),
        voice_url=f"http://127.0.0.1:{webhook_port}/voice/webhook",
        replies=(),
        # The callee stays on the line a while after the bot's line, so the line's mark is
        # back before the hang-up races it.
        reply_delay_s=2.0,
        answer_delay_s=0.2,
        callback_delay_s=0.05,
    )
    sim_server = uvicorn.Server(
        uvicorn.Config(sim, host="127.0.0.1", port=sim_port, log_level="error", lifespan="off")
    )
    sim_task = asyncio.ensure_future(sim_server.serve())
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{gw}/health", timeout=1)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            message = ("The quick brown fox jumps over the lazy dog. " * 20)[: int(seconds * 15)]
            cpu0, wall0 = proc_cpu_seconds(server.pid), time.monotonic()
            gen0 = resource.getrusage(resource.RUSAGE_SELF)
            # All N calls are placed at once, so all N streams overlap.
            await asyncio.gather(
                *(
                    rpc(
                        client,
                        gw,
                        "voicecall.initiate",
                        {"to": CALLEE, "message": message, "mode": "conversation"},
                    )
                    for _ in range(n)
                )
            )
            rss_peak = 0.0
            peak_streams = 0
            deadline = time.monotonic() + seconds * 3 + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                rss_peak = max(rss_peak, proc_rss_mb(server.pid))
                peak_streams = max(
                    peak_streams,
                    sum(
                        1
                        for sid in list(sim.calls)
                        if (stream := sim.stream(sid)) is not None and stream.socket is not None
                    ),
                )
                live = (await rpc(client, gw, "voicecall.list", {"active": True, "limit": n}))[
                    "calls"
                ]
                if not live:
                    break
            cpu1, wall1 = proc_cpu_seconds(server.pid), time.monotonic()
            gen1 = resource.getrusage(resource.RUSAGE_SELF)
            calls = (await rpc(client, gw, "voicecall.list", {"limit": n}))["calls"]
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 30)
        sim_server.should_exit = True
        await asyncio.wait_for(sim_task, 30)
        await sim.aclose()
        await http.aclose()
        log.close()
    underruns = 0
    with_underruns = 0
    lateness: list[float] = []
    whole = 0
    for sid in list(sim.calls):
        stream = sim.stream(sid)
        if stream is None:
            continue
        handset = stream.handset
        underruns += handset.underruns
        with_underruns += handset.underruns > 0
        lateness.extend(handset.mark_lateness)
        whole += sum(1 for line in handset.heard if line.whole)
    lateness.sort()

    def pct(q: float) -> float:
        return lateness[min(len(lateness) - 1, int(q * len(lateness)))] * 1000 if lateness else 0

    played = sum(1 for call in calls if call["speech"] and call["speech"][0]["state"] == "played")
    gen_cpu = (gen1.ru_utime + gen1.ru_stime) - (gen0.ru_utime + gen0.ru_stime)
    return {
        "streams": n,
        "peak open streams": peak_streams,
        "lines heard whole": whole,
        "lines played (server)": played,
        "underruns": underruns,
        "calls with underruns": with_underruns,
        "marks": len(lateness),
        "mark lateness p50 ms": pct(0.5),
        "mark lateness p99 ms": pct(0.99),
        "mark lateness max ms": lateness[-1] * 1000 if lateness else 0.0,
        "server CPU % of a core": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "server RSS peak MB": rss_peak,
        "generator CPU % of a core": 100 * gen_cpu / (wall1 - wall0),
        "mean call seconds": statistics.mean(
            [c["endedAt"] - c["answeredAt"] for c in calls if c["endedAt"] and c["answeredAt"]]
            or [0.0]
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="*", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    results = [asyncio.run(run(n, args.seconds)) for n in args.streams]
    keys = list(results[0])
    print(f"media streams, {args.seconds:g} s of bot audio per call, 2 cores shared")
    for key in keys:
        row = "  ".join(f"{r[key]:>10.1f}" for r in results)
        print(f"{key:<28}{row}")


if __name__ == "__main__":
    main()
