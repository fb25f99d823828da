"""One client for the gateway: the RPC calls and the event stream's address.

The CLI, the demo and ``expose`` share it, so no entrypoint reaches into another's internals.

The synchronous client writes its one HTTP/1.1 request on a plain socket: a CLI command makes
one loopback request, and importing an HTTP library for it (``httpx``, even ``http.client`` with
the ``email`` parser it pulls in) cost more than the request itself, while ``voicecall status``
must start in under 100 ms. It takes a :class:`~voicecall.client_settings.ClientSettings`, not
the whole configuration, so a command can build it without the attrs/cattrs schema. The async
client, used by the long-lived MCP server, keeps a pooled ``httpx`` connection and imports it
only when built.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any

from voicecall.client_settings import ClientSettings, client_settings

if TYPE_CHECKING:
    import httpx

    from voicecall.config import AppConfig

__all__ = [
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "AsyncGatewayClient",
    "ClientError",
    "GatewayClient",
    "connect_host",
]

GATEWAY_UNAVAILABLE = "gateway_unavailable"

# The CLI's exit codes (README "Exit codes"): every command uses the same four.
EXIT_OK = 0
EXIT_NOT_FOUND = 1  # refused by the gateway, or the call does not exist
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_UNREACHABLE = 3  # the gateway is not running or did not answer


class ClientError(Exception):
    """A command cannot be done; ``exit_code`` is what the CLI exits with.

    ``code`` and ``message`` are the gateway's own when it refused the call (the RPC error
    envelope); when the gateway could not be asked, ``code`` names why (``gateway_unavailable``,
    ``unauthorized``, ``bad_answer``).
    """

    def __init__(
        self, message: str, exit_code: int = 1, *, code: str = "error", detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code
        self.message = detail if detail is not None else message


def connect_host(bind: str) -> str:
    """Where to reach a listener bound to ``bind`` from this machine (wildcards -> loopback)."""
    if bind in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind == "::":
        return "[::1]"
    return f"[{bind}]" if ":" in bind else bind


class GatewayClient:
    """A small synchronous RPC client for the gateway listener."""

    def __init__(self, settings: ClientSettings) -> None:
        host = connect_host(settings.bind)
        self.settings = settings
        self._host = host.strip("[]")
        self._host_header = f"{host}:{settings.port}"
        self._port = settings.port
        self.base_url = f"http://{host}:{settings.port}"
        self.ws_url = f"ws://{host}:{settings.port}/events"
        self.token = settings.token

    @classmethod
    def for_config(cls, config: AppConfig) -> GatewayClient:
        """The client for a fully loaded configuration."""
        return cls(client_settings(config))

    def call(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Run one RPC method; returns the payload or raises ``ClientError``."""
        body = json.dumps({"method": method, "params": params}).encode()
        request = _request_head(self._host_header, len(body), self.token) + body
        try:
            # An ASCII host goes down as bytes: a str is encoded with the "idna" codec, whose
            # import (with stringprep) costs more start-up time than the request.
            host = self._host.encode() if self._host.isascii() else self._host
            # (getaddrinfo takes bytes; typeshed only lists str.)
            connection = socket.create_connection((host, self._port), timeout=5.0)  # type: ignore[arg-type]
        except OSError as err:
            raise _unreachable(self.base_url, err) from None
        with connection:
            # Connected: from here the answer may take as long as the method needs.
            connection.settimeout(timeout)
            try:
                connection.sendall(request)
                status, raw = _read_response(connection)
            except TimeoutError:
                raise ClientError(
                    f"the gateway at {self.base_url} did not answer in time",
                    EXIT_UNREACHABLE,
                    code=GATEWAY_UNAVAILABLE,
                ) from None
            except (OSError, _BadResponse) as err:
                raise ClientError(
                    f"lost the gateway at {self.base_url}: {err}",
                    EXIT_UNREACHABLE,
                    code=GATEWAY_UNAVAILABLE,
                ) from None
        return _payload(status, raw)


class _BadResponse(Exception):
    """The bytes that came back are not an HTTP/1.1 response."""


def _request_head(host: str, length: int, token: str | None) -> bytes:
    lines = [
        "POST /rpc HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        "Connection: close",
    ]
    if token:
        # A token is sent as a header value: a control or non-ASCII character would corrupt the
        # request (or be refused by the gateway as garbage), so it is refused here, clearly.
        if not token.isascii() or not token.isprintable():
            raise ClientError(
                "the gateway token contains characters that cannot be sent in an HTTP header "
                "(check gateway.auth.token)",
                EXIT_USAGE,
                code="bad_token",
            )
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _read_response(connection: socket.socket) -> tuple[int, bytes]:
    """Status and body of the one response (RFC 9112: Content-Length, chunked, or to close)."""
    buffer = _recv_until(connection, b"", b"\r\n\r\n", "before the response headers")
    head, _, body = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _BadResponse(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower().endswith("chunked"):
        return int(parts[1]), _dechunk(connection, body)
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        size = int(length)
        body = _recv_until(connection, body, size, "mid-body")
        return int(parts[1]), body[:size]
    while chunk := connection.recv(65536):
        body += chunk
    return int(parts[1]), body


def _recv_until(connection: socket.socket, buffer: bytes, until: int | bytes, where: str) -> bytes:
    """``buffer`` and what follows it on ``connection``, until it holds ``until`` bytes (an
    int) or the ``until`` marker (bytes)."""
    while (len(buffer) < until) if isinstance(until, int) else (until not in buffer):
        more = connection.recv(65536)
        if not more:
            raise _BadResponse(f"the connection closed {where}")
        buffer += more
    return buffer


def _dechunk(connection: socket.socket, buffer: bytes) -> bytes:
    body = b""
    while True:
        buffer = _recv_until(connection, buffer, b"\r\n", "mid-chunk")
        size_line, _, buffer = buffer.partition(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadResponse("a malformed chunk size") from None
        if size == 0:
            return body
        buffer = _recv_until(connection, buffer, size + 2, "mid-chunk")
        body += buffer[:size]
        buffer = buffer[size + 2 :]


class AsyncGatewayClient:
    """The same RPC client for async code (the MCP server): one pooled connection per gateway.

    Cancelling a call closes its request, so a host that gives up on a long ``continue`` does
    not leave a thread behind waiting for the answer.
    """

    def __init__(self, config: AppConfig) -> None:
        import httpx

        sync = GatewayClient.for_config(config)
        self.base_url = sync.base_url
        self.ws_url = sync.ws_url
        self.token = sync.token
        self._http: httpx.AsyncClient = httpx.AsyncClient(headers=_headers(self.token))

    async def call(
        self, method: str, params: dict[str, Any], read_timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Run one RPC method; returns the payload or raises ``ClientError``."""
        import httpx

        try:
            response = await self._http.post(
                f"{self.base_url}/rpc",
                json={"method": method, "params": params},
                timeout=httpx.Timeout(read_timeout_s, connect=5.0),
            )
        except httpx.HTTPError as err:
            raise _transport_error(self.base_url, err) from None
        return _payload(response.status_code, response.content)

    async def aclose(self) -> None:
        await self._http.aclose()


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _unreachable(base_url: str, err: OSError) -> ClientError:
    if isinstance(err, ConnectionRefusedError):
        message = f"the gateway is not running at {base_url} (start it with 'voicecall serve')"
    elif isinstance(err, TimeoutError):
        message = f"the gateway at {base_url} did not answer in time"
    else:
        message = f"cannot reach the gateway at {base_url}: {err}"
    return ClientError(message, EXIT_UNREACHABLE, code=GATEWAY_UNAVAILABLE)


def _transport_error(base_url: str, err: httpx.HTTPError) -> ClientError:
    import httpx

    if isinstance(err, httpx.ConnectError):
        return ClientError(
            f"the gateway is not running at {base_url} (start it with 'voicecall serve')",
            EXIT_UNREACHABLE,
            code=GATEWAY_UNAVAILABLE,
        )
    if isinstance(err, httpx.TimeoutException):
        return ClientError(
            f"the gateway at {base_url} did not answer in time",
            EXIT_UNREACHABLE,
            code=GATEWAY_UNAVAILABLE,
        )
    return ClientError(
        f"cannot reach the gateway at {base_url}: {err}",
        EXIT_UNREACHABLE,
        code=GATEWAY_UNAVAILABLE,
    )


def _payload(status: int, raw: bytes) -> dict[str, Any]:
    """The payload of an RPC answer, or ``ClientError`` carrying the gateway's code and message."""
    if status == 401:
        raise ClientError(
            "the gateway refused our token (check gateway.auth.token)", code="unauthorized"
        )
    try:
        answer = json.loads(raw)
    except ValueError:
        raise ClientError(
            f"the gateway answered HTTP {status} without JSON", code="bad_answer"
        ) from None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise ClientError(
            "the gateway answered something that is not an RPC envelope", code="bad_answer"
        )
    if not answer["ok"]:
        error = answer.get("error") or {}
        code = str(error.get("code", "error"))
        message = str(error.get("message", "refused"))
        raise ClientError(f"{message} ({code})", code=code, detail=message)
    payload: dict[str, Any] = answer.get("payload") or {}
    return payload
