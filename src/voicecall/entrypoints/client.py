"""One client for the gateway: the RPC calls and the event stream's address.

The CLI, the demo and ``expose`` share it, so no entrypoint reaches into another's internals.
"""

from __future__ import annotations

from typing import Any

import httpx

from voicecall.config import AppConfig
from voicecall.entrypoints.token import read_gateway_token

__all__ = ["AsyncGatewayClient", "ClientError", "GatewayClient", "connect_host"]

GATEWAY_UNAVAILABLE = "gateway_unavailable"


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
        self.base_url = f"http://{host}:{config.gateway.port}"
        self.ws_url = f"ws://{host}:{config.gateway.port}/events"
        self.token = read_gateway_token(config)

    def call(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Run one RPC method; returns the payload or raises ``ClientError``."""
        try:
            response = httpx.post(
                f"{self.base_url}/rpc",
                json={"method": method, "params": params},
                headers=_headers(self.token),
                timeout=httpx.Timeout(timeout, connect=5.0),
            )
        except httpx.HTTPError as err:
            raise _transport_error(self.base_url, err) from None
        return _payload(response)


class AsyncGatewayClient:
    """The same RPC client for async code (the MCP server): one pooled connection per gateway.

    Cancelling a call closes its request, so a host that gives up on a long ``continue`` does
    not leave a thread behind waiting for the answer.
    """

    def __init__(self, config: AppConfig) -> None:
        sync = GatewayClient(config)
        self.base_url = sync.base_url
        self.ws_url = sync.ws_url
        self.token = sync.token
        self._http = httpx.AsyncClient(headers=_headers(self.token))

    async def call(
        self, method: str, params: dict[str, Any], read_timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Run one RPC method; returns the payload or raises ``ClientError``."""
        try:
            response = await self._http.post(
                f"{self.base_url}/rpc",
                json={"method": method, "params": params},
                timeout=httpx.Timeout(read_timeout_s, connect=5.0),
            )
        except httpx.HTTPError as err:
            raise _transport_error(self.base_url, err) from None
        return _payload(response)

    async def aclose(self) -> None:
        await self._http.aclose()


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _transport_error(base_url: str, err: httpx.HTTPError) -> ClientError:
    if isinstance(err, httpx.ConnectError):
        return ClientError(
            f"the gateway is not running at {base_url} (start it with 'voicecall serve')",
            code=GATEWAY_UNAVAILABLE,
        )
    if isinstance(err, httpx.TimeoutException):
        return ClientError(
            f"the gateway at {base_url} did not answer in time", code=GATEWAY_UNAVAILABLE
        )
    return ClientError(f"cannot reach the gateway at {base_url}: {err}", code=GATEWAY_UNAVAILABLE)


def _payload(response: httpx.Response) -> dict[str, Any]:
    """The payload of an RPC answer, or ``ClientError`` carrying the gateway's code and message."""
    if response.status_code == 401:
        raise ClientError(
            "the gateway refused our token (check gateway.auth.token)", code="unauthorized"
        )
    try:
        answer = response.json()
    except ValueError:
        raise ClientError(
            f"the gateway answered HTTP {response.status_code} without JSON", code="bad_answer"
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
