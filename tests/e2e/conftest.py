"""End-to-end rig: ``voicecall serve`` as a real subprocess on free loopback ports, driven by
the real CLI, each in its own process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ALLOWED = "+15551230001"
CALLEE = "+15557654321"
REPLIES = ("Yes, I have a minute.", "Noon works for me.", "Bye!")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, store: Path, **overrides: Any) -> dict[str, Any]:
    plugin: dict[str, Any] = {
        "enabled": True,
        "provider": "mock",
        "fromNumber": "+15550100000",
        "toNumber": CALLEE,
        "serve": {"port": free_port(), "bind": "127.0.0.1", "path": "/voice/webhook"},
        "inboundPolicy": "allowlist",
        "allowFrom": [ALLOWED],
        "outbound": {"notifyHangupDelaySec": 0.2},
        "maxConcurrentCalls": 1,
        "store": str(store),
        "mock": {"answerDelayMs": 50, "replies": list(REPLIES)},
    }
    plugin.update(overrides)
    document = {
        "plugins": {"entries": {"voice-call": {"config": plugin}}},
        "gateway": {"bind": "127.0.0.1", "port": free_port()},
    }
    # JSON5 niceties on purpose: the loader must take a commented file.
    path.write_text("// voicecall e2e config\n" + json.dumps(document, indent=2) + "\n")
    return document


class _PortTaken(AssertionError):
    """serve could not bind: someone took the free port between our check and its bind."""


class Gateway:
    """One ``voicecall serve`` process and a CLI bound to its config."""

    def __init__(self, tmp: Path, **overrides: Any) -> None:
        self.tmp = tmp
        self.config_path = tmp / "openclaw.json"
        self.store = tmp / "store"
        self.document = write_config(self.config_path, self.store, **overrides)
        self.port = self.document["gateway"]["port"]
        self.webhook_port = self.document["plugins"]["entries"]["voice-call"]["config"]["serve"][
            "port"
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = tmp / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECALL_")}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Generous: on a loaded two-core machine importing the gateway alone can take 20 s.
    def start(self, timeout: float = 60.0) -> None:
        for attempt in range(3):
            try:
                self._start(timeout)
                self._started = True
                return
            except _PortTaken:
                # free_port() only finds a port that was free a moment ago; another process
                # may take it first. Before the first start nothing depends on the ports yet.
                if getattr(self, "_started", False) or attempt == 2:
                    raise
                self._new_ports()

    def _new_ports(self) -> None:
        plugin = self.document["plugins"]["entries"]["voice-call"]["config"]
        plugin["serve"]["port"] = self.webhook_port = free_port()
        self.document["gateway"]["port"] = self.port = free_port()
        self.config_path.write_text(
            "// voicecall e2e config\n" + json.dumps(self.document, indent=2) + "\n"
        )

    def _start(self, timeout: float) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "voicecall", "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=log,
            env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = self.log_path.read_text()
                last = text.strip().splitlines()[-1] if text.strip() else ""
                if "Address already in use" in last:
                    raise _PortTaken(text)
                raise AssertionError(f"serve exited early:\n{text}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve did not come up:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> int:
        """Signal the server and reap it; returns its exit code.

        A polite signal (SIGTERM, SIGINT) must end the process by itself with exit code 0:
        having to escalate to SIGKILL, or any other code, fails the test that stopped it. The
        grace period only bounds a hang; a healthy shutdown takes well under a second.
        """
        assert self.process is not None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
                raise AssertionError(
                    f"voicecall serve ignored signal {signal.Signals(sig).name} for {grace} s "
                    f"and had to be SIGKILLed:\n{self.log_tail()}"
                ) from None
        code = process.returncode
        if sig in (signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(sig).name
            assert code == 0, f"voicecall serve exited {code} on {name}:\n{self.log_tail()}"
        return code

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voicecall", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )

    def cli_json(self, *args: str) -> dict[str, Any]:
        result = self.cli(*args)
        assert result.returncode == 0, result.stderr
        payload: dict[str, Any] = json.loads(result.stdout)
        return payload

    def token(self) -> str:
        return (self.store / "gateway-token").read_text().strip()

    def wait_state(self, call_id: str, *states: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.rpc("voicecall.status", {"callId": call_id})
            call: dict[str, Any] = status["payload"]["call"]
            if call["state"] in states:
                return call
            if time.monotonic() > deadline:
                raise AssertionError(f"call stuck in {call['state']}, wanted {states}")
            time.sleep(0.05)

    def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            f"{self.url}/rpc",
            json={"method": method, "params": params},
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def mock_dials(self) -> int:
        state = json.loads((self.store / "mock-carrier.json").read_text())
        return len(state["dials"])


# Every end-to-end test gets a deadline of its own, so a hang fails fast and names the test
# (a test may set a longer one with its own ``pytest.mark.timeout``).
E2E_TIMEOUT_S = 120


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gw = Gateway(tmp_path)
    gw.start()
    yield gw
    if gw.process is not None:
        gw.stop()
