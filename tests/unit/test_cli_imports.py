"""Commands that talk to a running gateway import only what they need (issue 12).

``voicecall status`` must start in under 100 ms; that is measured by
``benchmarks/cli_startup.py``, not here. What this guards, without timing anything, is the
reason it is fast: a gateway command run in a fresh interpreter against a loopback stand-in for
the gateway loads no HTTP framework, no SDK, no attrs/cattrs schema and no JSON5 parser, and
still sends the right request with the right token. A config only the full loader can read
(JSON5) still works, through that loader.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from voicecall.client_settings import ClientSettings
from voicecall.entrypoints.client import ClientError, GatewayClient

# Top-level packages (and our modules) a gateway command must not import.
HEAVY = (
    "anthropic",
    "attr",
    "attrs",
    "cattrs",
    "dependency_injector",
    "email",
    "httpx",
    "json5",
    "litestar",
    "numpy",
    "openai",
    "plivo",
    "soxr",
    "telnyx",
    "twilio",
    "uvicorn",
    "websockets",
    "voicecall.adapters",
    "voicecall.config",
    "voicecall.container",
    "voicecall.domain",
    "voicecall.services",
)

_PROBE = """
import json, sys
from voicecall.entrypoints.cli import main
code = main(sys.argv[2:])
heavy = tuple(json.loads(sys.argv[1]))
loaded = sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy)))
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""


class _Gateway(ThreadingHTTPServer):
    requests: list[dict[str, Any]]


class _Rpc(BaseHTTPRequestHandler):
    server: _Gateway

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.server.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        payload: dict[str, Any] = {"found": True, "call": {"callId": "c1", "state": "active"}}
        if body["method"] == "voicecall.list":
            payload = {"calls": []}
        elif body["method"] in ("voicecall.end", "voicecall.speak"):
            payload = {"success": True}
        answer = json.dumps({"ok": True, "payload": payload}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[_Gateway]:
    server = _Gateway(("127.0.0.1", 0), _Rpc)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _config(tmp_path: Path, gateway: _Gateway, text: str | None = None) -> Path:
    path = tmp_path / "openclaw.json"
    document = {
        "plugins": {"entries": {"voice-call": {"config": {"store": str(tmp_path / "store")}}}},
        "gateway": {"port": gateway.server_address[1], "auth": {"token": "tok"}},
    }
    # Written as an operator would (JSON5 with a comment): still the quick path.
    path.write_text(text if text is not None else "// ours\n" + json.dumps(document))
    return path


def _probe(
    args: list[str], tmp_path: Path, extra_env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICECALL_", "OPENCLAW_"))}
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # no stray .env from the working directory
        env={**env, "HOME": str(tmp_path)},
        check=False,
    )
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE ")), done.stdout


@pytest.mark.parametrize(
    ("command", "method"),
    [
        (["status", "--call-id", "c1"], "voicecall.status"),
        (["list", "--active"], "voicecall.list"),
        (["end", "--call-id", "c1"], "voicecall.end"),
        (["speak", "--call-id", "c1", "--message", "hi"], "voicecall.speak"),
    ],
)
def test_gateway_commands_load_no_heavy_module(
    command: list[str], method: str, gateway: _Gateway, tmp_path: Path
) -> None:
    config = _config(tmp_path, gateway)
    result, stdout = _probe([*command, "--config", str(config), "--json"], tmp_path)
    assert result == {"code": 0, "loaded": []}
    assert [(r["path"], r["auth"], r["body"]["method"]) for r in gateway.requests] == [
        ("/rpc", "Bearer tok", method)
    ]
    assert json.loads(stdout)  # the payload was printed as JSON


def test_a_config_only_the_loader_reads_goes_through_it(gateway: _Gateway, tmp_path: Path) -> None:
    port = gateway.server_address[1]
    # ${VAR} (and $include, the env block, rarer JSON5) are resolved by the full loader only.
    text = f"{{gateway: {{port: {port}, auth: {{token: '${{GW_TOKEN}}'}}}},}}"
    config = _config(tmp_path, gateway, text)
    result, _ = _probe(
        ["status", "--call-id", "c1", "--config", str(config)], tmp_path, {"GW_TOKEN": "j5"}
    )
    assert result["code"] == 0
    assert "voicecall.config" in result["loaded"]  # the probe sees the loader when it runs
    assert [r["auth"] for r in gateway.requests] == ["Bearer j5"]


def test_a_broken_gateway_section_is_reported_by_the_loader(
    gateway: _Gateway, tmp_path: Path
) -> None:
    config = _config(tmp_path, gateway, json.dumps({"gateway": {"port": "x"}}))
    done = subprocess.run(
        [sys.executable, "-m", "voicecall", "status", "--call-id", "c1", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "gateway.port" in done.stderr
    assert gateway.requests == []


# -- the client's own HTTP/1.1 over a socket -----------------------------------------------------


def _one_answer(raw: bytes) -> tuple[int, list[bytes]]:
    """A socket server that answers one request with ``raw`` and records what it received."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            data = b""
            while b"\r\n\r\n" not in data:
                data += connection.recv(4096)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += connection.recv(4096)
            received.append(data)
            connection.sendall(raw)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], received


_ENVELOPE = b'{"ok": true, "payload": {"found": false}}'


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(_ENVELOPE), _ENVELOPE),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (_ENVELOPE[:10], _ENVELOPE[10:]))
        + b"0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + _ENVELOPE,
    ],
    ids=["content-length", "chunked", "until-close"],
)
def test_the_client_reads_each_http_body_framing(raw: bytes) -> None:
    port, received = _one_answer(raw)
    client = GatewayClient(ClientSettings("127.0.0.1", port, "tok"))
    assert client.call("voicecall.status", {"callId": "x"}) == {"found": False}
    head = received[0].decode()
    assert head.startswith("POST /rpc HTTP/1.1\r\n")
    assert "Authorization: Bearer tok\r\n" in head
    assert f"Host: 127.0.0.1:{port}\r\n" in head


def test_the_client_names_a_gateway_that_answers_garbage() -> None:
    port, _ = _one_answer(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ClientError, match="lost the gateway") as caught:
        GatewayClient(ClientSettings("127.0.0.1", port, None)).call("voicecall.list", {})
    assert caught.value.exit_code == 3


def test_a_token_that_cannot_be_a_header_is_refused_clearly() -> None:
    with pytest.raises(ClientError, match=r"gateway\.auth\.token") as caught:
        GatewayClient(ClientSettings("127.0.0.1", 1, "bad\ntoken")).call("voicecall.list", {})
    assert caught.value.exit_code == 2
