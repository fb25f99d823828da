"""``voicecall doctor`` against each carrier simulator, with a real gateway on free ports.

The gateway (``run_gateway``) and the simulator (uvicorn) run in this test's event loop on
loopback ports; the doctor runs in a worker thread, as the CLI would in its own process, and
talks to both over real HTTP. A wrong ``publicUrl`` must fail the signed self-test, naming the
URL it checked; nothing the doctor does may create a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from voicecall.config import load_config
from voicecall.entrypoints import cli
from voicecall.entrypoints.doctor import DoctorReport, run_doctor
from voicecall.entrypoints.server import run_gateway
from voicecall.testing.plivo_sim import PlivoSimulator
from voicecall.testing.telnyx_sim import TelnyxSimulator
from voicecall.testing.twilio_sim import TwilioSimulator

from .conftest import free_port

pytestmark = pytest.mark.e2e

TWILIO_SID = "AC" + "d" * 32
PLIVO_ID = "MADOCTOR0000000000AB"
TOKEN = "doctor-token"
TELNYX_KEY = "KEYdoctor"
CONNECTION = "1293384261075731499"


class Rig:
    """A config file, a simulator and (once started) a gateway."""

    def __init__(self, tmp: Path, provider: str) -> None:
        self.tmp = tmp
        self.provider = provider
        self.sim_port = free_port()
        self.serve_port = free_port()
        self.public_url = f"http://127.0.0.1:{self.serve_port}/voice/webhook"
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.http = httpx.AsyncClient(timeout=10)
        self.sim: Any = self._simulator()
        self.config_path = tmp / "openclaw.json"
        self.store = tmp / "store"
        self.write()
        self._tasks: list[asyncio.Task[Any]] = []
        self._sim_server: uvicorn.Server | None = None

    def _simulator(self) -> Any:
        if self.provider == "twilio":
            return TwilioSimulator(
                self.http, account_sid=TWILIO_SID, auth_token=TOKEN, voice_url=self.public_url
            )
        if self.provider == "plivo":
            return PlivoSimulator(
                auth_id=PLIVO_ID, auth_token=TOKEN, webhook=self.http, webhook_url=self.public_url
            )
        return TelnyxSimulator(
            self.http,
            os.urandom(32),
            self.public_url,
            api_key=TELNYX_KEY,
            connection_id=CONNECTION,
        )

    def carrier(self) -> dict[str, Any]:
        if self.provider == "twilio":
            return {
                "twilio": {"accountSid": TWILIO_SID, "authToken": TOKEN, "apiBaseUrl": self.sim_url}
            }
        if self.provider == "plivo":
            return {"plivo": {"authId": PLIVO_ID, "authToken": TOKEN, "apiBaseUrl": self.sim_url}}
        return {
            "telnyx": {
                "apiKey": TELNYX_KEY,
                "connectionId": CONNECTION,
                "publicKey": self.sim.public_key_b64,
                "apiBaseUrl": f"{self.sim_url}/v2",
            }
        }

    def write(self, **overrides: Any) -> None:
        plugin: dict[str, Any] = {
            "enabled": True,
            "provider": self.provider,
            "fromNumber": "+15550100000",
            "toNumber": "+15557654321",
            "serve": {"port": self.serve_port, "bind": "127.0.0.1", "path": "/voice/webhook"},
            "publicUrl": self.public_url,
            "store": str(self.store),
            **self.carrier(),
        }
        plugin.update(overrides)
        self.document = {
            "plugins": {"entries": {"voice-call": {"config": plugin}}},
            "gateway": {"bind": "127.0.0.1", "port": getattr(self, "gateway_port", free_port())},
        }
        self.gateway_port = self.document["gateway"]["port"]
        self.config_path.write_text(json.dumps(self.document))

    async def start_simulator(self) -> None:
        server = uvicorn.Server(
            uvicorn.Config(
                self.sim, host="127.0.0.1", port=self.sim_port, log_level="warning", lifespan="off"
            )
        )
        self._sim_server = server
        self._tasks.append(asyncio.create_task(server.serve()))
        for _ in range(1000):
            if server.started:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the simulator did not come up")

    async def start_gateway(self) -> None:
        ready = asyncio.Event()
        config = load_config(str(self.config_path), {})
        task = asyncio.create_task(run_gateway(config, ready))
        self._tasks.append(task)
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait([waiter, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert ready.is_set(), "the gateway did not come up"

    async def doctor(self) -> DoctorReport:
        return await asyncio.to_thread(run_doctor, str(self.config_path), {})

    async def stop(self) -> None:
        if self._sim_server is not None:
            self._sim_server.should_exit = True
        for task in reversed(self._tasks):
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)
        with contextlib.suppress(Exception):
            await self.sim.aclose()
        await self.http.aclose()


def _check(report: DoctorReport, name: str) -> Any:
    return next(check for check in report.checks if check.name == name)


@pytest.fixture
def rig_factory(tmp_path: Path) -> AsyncIterator[Callable[[str], Rig]]:
    rigs: list[Rig] = []

    def make(provider: str) -> Rig:
        rig = Rig(tmp_path / provider, provider)
        rigs.append(rig)
        return rig

    (tmp_path / "twilio").mkdir()
    (tmp_path / "plivo").mkdir()
    (tmp_path / "telnyx").mkdir()
    yield make  # type: ignore[misc]


@pytest.fixture
async def rigs(rig_factory: Callable[[str], Rig]) -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.stop()


@pytest.mark.parametrize("provider", ["twilio", "plivo"])
async def test_signed_self_test_passes_through_the_door_and_changes_nothing(
    provider: str, rig_factory: Callable[[str], Rig], rigs: list[Rig]
) -> None:
    rig = rig_factory(provider)
    rigs.append(rig)
    await rig.start_simulator()
    await rig.start_gateway()

    report = await rig.doctor()

    assert report.ok, report.as_text()
    self_test = _check(report, "signed self-test")
    assert f"{rig.public_url}?voicecallSelfTest=1" in self_test.detail
    assert "verified" in self_test.detail
    assert "running voicecall gateway" in _check(report, "ports").detail
    assert _check(report, "carrier credentials").ok
    # Read-only: the doctor created no call at the carrier and none in the gateway.
    assert not rig.sim.calls
    answer = await rig.http.post(
        f"http://127.0.0.1:{rig.gateway_port}/rpc",
        json={"method": "voicecall.list", "params": {}},
        headers={"Authorization": f"Bearer {(rig.store / 'gateway-token').read_text().strip()}"},
    )
    listed = answer.json()
    assert listed == {"ok": True, "payload": {"calls": []}}


@pytest.mark.parametrize("provider", ["twilio", "plivo"])
async def test_a_wrong_public_url_fails_the_signed_self_test_naming_the_url(
    provider: str, rig_factory: Callable[[str], Rig], rigs: list[Rig]
) -> None:
    rig = rig_factory(provider)
    rigs.append(rig)
    await rig.start_simulator()
    await rig.start_gateway()
    # The gateway runs with the right URL; the operator's file now says something else
    # (a host the carrier would reach, but not the one our door rebuilds).
    wrong = f"http://localhost:{rig.serve_port}/voice/webhook"
    rig.write(publicUrl=wrong)

    report = await rig.doctor()

    assert not report.ok
    self_test = _check(report, "signed self-test")
    assert not self_test.ok
    assert f"{wrong}?voicecallSelfTest=1" in self_test.detail
    assert self_test.fix and "publicUrl" in self_test.fix


async def test_a_public_url_that_reaches_nothing_fails_with_the_url(
    rig_factory: Callable[[str], Rig], rigs: list[Rig]
) -> None:
    rig = rig_factory("twilio")
    rigs.append(rig)
    await rig.start_simulator()
    await rig.start_gateway()
    nowhere = f"http://127.0.0.1:{free_port()}/voice/webhook"
    rig.write(publicUrl=nowhere)

    self_test = _check(await rig.doctor(), "signed self-test")

    assert not self_test.ok
    assert self_test.detail.startswith(f"nothing answered at {nowhere}?voicecallSelfTest=1")


async def test_telnyx_door_key_and_clock(
    rig_factory: Callable[[str], Rig], rigs: list[Rig]
) -> None:
    rig = rig_factory("telnyx")
    rigs.append(rig)
    await rig.start_simulator()
    await rig.start_gateway()

    report = await rig.doctor()

    assert report.ok, report.as_text()
    assert "refused 401 by our door" in _check(report, "public URL").detail
    assert _check(report, "telnyx.publicKey").ok
    assert "s from Telnyx's clock" in _check(report, "clock").detail

    # A clock ten minutes fast is outside Telnyx's window.
    skewed = await asyncio.to_thread(
        run_doctor, str(rig.config_path), {}, now=lambda: __import__("time").time() + 600
    )
    assert not _check(skewed, "clock").ok

    # A key that is not a key, and a connection the carrier does not know.
    rig.write(telnyx={**rig.carrier()["telnyx"], "publicKey": "bm90IGEga2V5"})
    assert not _check(await rig.doctor(), "telnyx.publicKey").ok
    rig.write(telnyx={**rig.carrier()["telnyx"], "connectionId": "999"})
    credentials = _check(await rig.doctor(), "carrier credentials")
    assert not credentials.ok and "not found" in credentials.detail


async def test_refused_credentials_and_no_gateway(
    rig_factory: Callable[[str], Rig], rigs: list[Rig]
) -> None:
    rig = rig_factory("twilio")
    rigs.append(rig)
    await rig.start_simulator()
    rig.write(twilio={**rig.carrier()["twilio"], "authToken": "wrong"})

    report = await rig.doctor()

    credentials = _check(report, "carrier credentials")
    assert not credentials.ok and "refused" in credentials.detail
    assert _check(report, "ports").ok  # nothing runs: both ports are free
    self_test = _check(report, "signed self-test")
    assert not self_test.ok and "no voicecall gateway is running" in self_test.detail


def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Mock carrier, no gateway: every check that can pass does, and the exit code is 0.
    store = tmp_path / "store"
    path = tmp_path / "openclaw.json"
    ports = {"port": free_port(), "bind": "127.0.0.1", "path": "/voice/webhook"}
    document = {
        "plugins": {"entries": {"voice-call": {"config": {"store": str(store), "serve": ports}}}},
        "gateway": {"port": free_port()},
    }
    path.write_text(json.dumps(document))
    assert cli.main(["doctor", "--json", "--config", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["provider"] == "mock"
    assert [c["check"] for c in data["checks"]] == [
        "config",
        "store",
        "ports",
        "carrier credentials",
        "public URL",
    ]

    # A store others can read fails, with the fix (piped, so the output is JSON).
    store.mkdir(mode=0o755)
    store.chmod(0o755)
    assert cli.main(["--config", str(path), "doctor"]) == 1
    failed = _failed(capsys.readouterr().out)
    assert list(failed) == ["store"] and "chmod 700" in failed["store"]["fix"]

    # A port held by something that is not our gateway.
    store.chmod(0o700)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["port"]))
        squatter.listen()
        assert cli.main(["doctor", "--config", str(path)]) == 1
    failed = _failed(capsys.readouterr().out)
    assert list(failed) == ["ports"] and "in use by another program" in failed["ports"]["detail"]

    # An invalid config is one failed check, exit 1.
    bad = {"plugins": {"entries": {"voice-call": {"config": {"serve": {"port": "x"}}}}}}
    path.write_text(json.dumps(bad))
    assert cli.main(["doctor", "--config", str(path)]) == 1
    failed = _failed(capsys.readouterr().out)
    assert "serve.port" in failed["config"]["detail"]


def _failed(out: str) -> dict[str, Any]:
    return {c["check"]: c for c in json.loads(out)["checks"] if not c["ok"]}


def test_text_output_marks_each_check() -> None:
    from voicecall.entrypoints.doctor import Check

    report = DoctorReport(
        "/cfg.json",
        "twilio",
        (Check("config", True, "valid"), Check("ports", False, "in use", "stop it")),
    )
    assert report.as_text() == (
        "voicecall doctor: /cfg.json (provider twilio)\n"
        "✓ config: valid\n"
        "✗ ports: in use\n"
        "    fix: stop it\n"
        "1 of 2 checks failed\n"
    )
