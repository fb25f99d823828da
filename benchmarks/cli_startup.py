"""Start-up time of ``voicecall status`` against a gateway stand-in (prints; asserts nothing).

Issue 12 asks for ``voicecall status`` in under 100 ms wall. A tiny loopback HTTP server
answers ``/rpc`` like the gateway, so the figure is the CLI's own cost: interpreter start,
imports, config load and one request. Also prints the import time of the CLI module alone.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Rpc(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"ok": True, "payload": {"found": False, "call": None}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _wall(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=False)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main(runs: int = 15) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rpc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "openclaw.json"
        config.write_text(
            json.dumps(
                {
                    "plugins": {"entries": {"voice-call": {"config": {"store": tmp}}}},
                    "gateway": {"port": server.server_address[1], "auth": {"token": "t"}},
                }
            )
        )
        status = [
            sys.executable,
            "-m",
            "voicecall",
            "status",
            "--call-id",
            "x",
            "--config",
            str(config),
        ]
        baseline = _wall([sys.executable, "-c", "pass"], runs)
        imports = _wall([sys.executable, "-c", "import voicecall.entrypoints.cli"], runs)
        cli = _wall(status, runs)
    server.shutdown()
    for name, figures in (
        ("python -c pass", baseline),
        ("import cli", imports),
        ("voicecall status", cli),
    ):
        print(
            f"{name:>18}: median {statistics.median(figures):6.1f} ms   "
            f"min {min(figures):6.1f} ms   max {max(figures):6.1f} ms   ({runs} runs)"
        )
    print("target: voicecall status under 100 ms wall")


if __name__ == "__main__":
    main()
