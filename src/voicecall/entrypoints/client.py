"""One client for the gateway: the RPC calls and the event stream's address.

The CLI, the demo and ``expose`` share it, so no entrypoint reaches into another's internals.

The synchronous client speaks HTTP/1.1 with the standard library's ``http.client``: a CLI
command makes one loopback request, and importing an HTTP framework for it cost more than the
request itself (``voicecall status`` must start in well under 100 ms). The async client, used by
the long-lived MCP server, keeps a pooled ``httpx`` connection and imports it only when built.
"""

from __future__ import annotations

import http.client
import json
from typing import TYPE_CHECKING, Any

from voicecall.config import AppConfig
from voicecall.entrypoints.token import read_gateway_token

if TYPE_CHECKING:
    import httpx

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

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        host = connect_host(config.gateway.bind)
        self._host = host.strip("[]")
        self._port = config.gateway.port
        self.base_url = f"http://{host}:{config.gateway.port}"
        self.ws_url = f"ws://{host}:{config.gateway.port}/events"
        self.token = read_gateway_token(config)

    def call(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Run one RPC method; returns the payload or raises ``ClientError``."""
        body = json.dumps({"method": method, "params": params}).encode()
        headers = {"Content-Type": "application/json", **_headers(self.token)}
        connection = http.client.HTTPConnection(self._host, self._port, timeout=5.0)
        try:
            try:
                connection.connect()
            except OSError as err:
                raise _unreachable(self.base_url, err) from None
            # Connected: from here the answer may take as long as the method needs.
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            try:
                connection.request("POST", "/rpc", body=body, headers=headers)
                response = connection.getresponse()
                raw = response.read()
            except TimeoutError:
                raise ClientError(
                    f"the gateway at {self.base_url} did not answer in time",
                    EXIT_UNREACHABLE,
                    code=GATEWAY_UNAVAILABLE,
                ) from None
            except (OSError, http.client.HTTPException) as err:
                raise ClientError(
                    f"lost the gateway at {self.base_url}: {err}",
                    EXIT_UNREACHABLE,
                    code=GATEWAY_UNAVAILABLE,
                ) from None
        finally:
            connection.close()
        return _payload(response.status, raw)


class AsyncGatewayClient:
    """The same RPC client for async code (the MCP server): one pooled connection per gateway.

    Cancelling a call closes its request, so a host that gives up on a long ``continue`` does
    not leave a thread behind waiting for the answer.
    """

    def __init__(self, config: AppConfig) -> None:
        import httpx

        sync = GatewayClient(config)
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
