"""One client for the gateway: the RPC calls and the event stream's address.

The CLI, the demo and ``expose`` share it, so no entrypoint reaches into another's internals.
"""

from __future__ import annotations

from typing import Any

import httpx

from voicecall.config import AppConfig
from voicecall.entrypoints.token import read_gateway_token

__all__ = ["ClientError", "GatewayClient", "connect_host"]


class ClientError(Exception):
    """A command cannot be done; ``exit_code`` is what the CLI exits with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.post(
                f"{self.base_url}/rpc",
                json={"method": method, "params": params},
                headers=headers,
                timeout=httpx.Timeout(timeout, connect=5.0),
            )
        except httpx.ConnectError:
            raise ClientError(
                f"the gateway is not running at {self.base_url} (start it with 'voicecall serve')"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the gateway at {self.base_url} did not answer in time") from None
        except httpx.HTTPError as err:
            raise ClientError(f"cannot reach the gateway at {self.base_url}: {err}") from None
        if response.status_code == 401:
            raise ClientError("the gateway refused our token (check gateway.auth.token)")
        try:
            answer = response.json()
        except ValueError:
            raise ClientError(
                f"the gateway answered HTTP {response.status_code} without JSON"
            ) from None
        if not isinstance(answer, dict) or "ok" not in answer:
            raise ClientError("the gateway answered something that is not an RPC envelope")
        if not answer["ok"]:
            error = answer.get("error") or {}
            raise ClientError(f"{error.get('message', 'refused')} ({error.get('code', 'error')})")
        payload: dict[str, Any] = answer.get("payload") or {}
        return payload
