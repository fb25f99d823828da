"""Start-up time of ``voicecall status`` against a gateway stand-in (prints; asserts nothing).

Issue 12 asks for ``voicecall status`` in under 100 ms wall. A tiny loopback HTTP server
answers ``/rpc`` like the gateway, so the figure is the CLI's own cost: interpreter start,
imports, config load and one request. Also prints the import time of the CLI module alone.

On a shared, loaded machine the wall figures swing with the neighbours' work, so each line also
shows the child's CPU time (user + system), which moves much less, and the runs are repeated
(``python benchmarks/cli_startup.py [RUNS]``): read the min as "what it costs", the median as
"what it costs today".
"""

from __future__ import annotations

import json
import os
import resource
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


def _cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def _wall(args: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each run."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu = _cpu_ms()
        start = time.perf_counter()
        subprocess.run(args, capture_output=True, check=False, env=env)
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append(_cpu_ms() - cpu)
    return walls, cpus


def main(runs: int = 15) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rpc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "openclaw.json"
        config.write_text(
            json.dumps(
                {
                    "plugins": {"entries": {"voice-call": {"config": {"store": tmp}}}},
                    "gateway": {"port": port, "auth": {"token": "t"}},
                }
            )
        )
        # The shape the docs show and operators write: JSON5 with comments and unquoted keys.
        config5 = Path(tmp) / "openclaw.json5"
        config5.write_text(
            "// voicecall\n{\n  plugins: { entries: { 'voice-call': { config: {\n"
            f"    store: '{tmp}', provider: 'mock',  // where calls live\n"
            "  } } } },\n"
            f"  gateway: {{ port: {port}, auth: {{ token: 't' }} }},\n}}\n"
        )
        status = [sys.executable, "-m", "voicecall", "status", "--call-id", "x", "--config"]
        # An installed package runs from compiled bytecode. A dev shell may set
        # PYTHONDONTWRITEBYTECODE, and then every run compiles our sources again; both are shown.
        # The cache goes to a temporary prefix, never into the source tree.
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        uncached = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        _wall([*status, str(config)], 1, cached)  # warm-up: writes the bytecode cache
        _wall([*status, str(config5)], 1, cached)
        rows = [
            ("python -c pass", _wall([sys.executable, "-c", "pass"], runs, cached)),
            (
                "import cli",
                _wall([sys.executable, "-c", "import voicecall.entrypoints.cli"], runs, cached),
            ),
            ("voicecall status", _wall([*status, str(config)], runs, cached)),
            ("status, JSON5", _wall([*status, str(config5)], runs, cached)),
            ("status, no .pyc", _wall([*status, str(config)], runs, uncached)),
        ]
    server.shutdown()
    for name, (walls, cpus) in rows:
        print(
            f"{name:>18}: wall median {statistics.median(walls):6.1f} ms   "
            f"min {min(walls):6.1f} ms   max {max(walls):6.1f} ms   "
            f"cpu median {statistics.median(cpus):6.1f} ms   ({runs} runs)"
        )
    print("target: voicecall status under 100 ms wall")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
