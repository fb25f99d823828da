"""How we talk to Telnyx's Call Control v2 REST API.

JSON over HTTPS with ``Authorization: Bearer <apiKey>``. ``POST /calls`` dials; every other
command is ``POST /calls/{call_control_id}/actions/<name>``; ``GET /calls/{call_control_id}``
reports ``is_alive`` (https://developers.telnyx.com/docs/voice/programmable-voice/sending-commands).
Errors come back as ``{"errors": [{"code", "title", "detail"}]}``; ``90018`` means "call has
already ended" (seen with 404 and 422).
"""

from __future__ import annotations

import uuid
from typing import Any, Final
from urllib.parse import quote

import httpx

from voicecall.domain.errors import CarrierRejected, TransientError

__all__ = ["ALREADY_ENDED_CODE", "TelnyxApiError", "TelnyxRest", "json_data"]

ALREADY_ENDED_CODE: Final = "90018"
"""Telnyx's error code for a command sent to a call that is no longer active."""


class TelnyxApiError(CarrierRejected):
    """Telnyx answered a command with a 4xx.

    Attributes:
        status: the HTTP status.
        codes: the ``errors[].code`` values Telnyx gave, as strings.
    """

    def __init__(self, detail: str, status: int, codes: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.status = status
        self.codes = codes

    @property
    def call_already_ended(self) -> bool:
        return self.status in (404, 410, 422) and ALREADY_ENDED_CODE in self.codes


class TelnyxRest:
    """The REST client: one method per kind of request, Telnyx's errors mapped to ours.

    Args:
        api_key: the Telnyx API v2 key (Bearer token).
        api_base_url: REST base, ``https://api.telnyx.com/v2`` in production.
        http: the async HTTP client.
    """

    def __init__(self, api_key: str, api_base_url: str, http: httpx.AsyncClient) -> None:
        self._api_key = api_key
        self._base = api_base_url.rstrip("/")
        self.http = http

    async def dial(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """``POST /calls``; the answer's ``data``."""
        return json_data(await self.request("POST", "/calls", "dial", body))

    async def action(self, pid: str, action: str, body: dict[str, Any]) -> None:
        """``POST /calls/{pid}/actions/{action}`` with a fresh ``command_id``.

        Telnyx ignores a command whose ``command_id`` it has seen for the call, so each
        command gets its own unless ``body`` brings one.
        """
        command = {**body}
        command.setdefault("command_id", str(uuid.uuid4()))
        await self.request("POST", f"/calls/{path_id(pid)}/actions/{action}", action, command)

    async def call_record(self, pid: str) -> dict[str, Any] | None:
        """``GET /calls/{pid}``; the answer's ``data``."""
        return json_data(await self.request("GET", f"/calls/{path_id(pid)}", "status", None))

    async def request(
        self, method: str, path: str, what: str, body: dict[str, Any] | None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        try:
            response = await self.http.request(
                method, f"{self._base}{path}", json=body, headers=headers
            )
        except httpx.TimeoutException:
            raise TransientError(f"Telnyx {what}: timed out") from None
        except httpx.HTTPError as err:
            raise TransientError(f"Telnyx {what}: {type(err).__name__}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientError(f"Telnyx {what}: HTTP {status}")
        if status >= 400:
            codes, summary = _errors_of(response)
            detail = f"Telnyx {what}: HTTP {status}" + (f" ({summary})" if summary else "")
            raise TelnyxApiError(detail, status, codes)
        return response


def path_id(pid: str) -> str:
    # Call control ids look like "v3:AbC-_..."; the colon is legal in a path segment.
    return quote(pid, safe=":")


def json_data(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        return None
    data = document.get("data") if isinstance(document, dict) else None
    return data if isinstance(data, dict) else None


def _errors_of(response: httpx.Response) -> tuple[tuple[str, ...], str]:
    """The error codes and a short safe summary from a Telnyx error body."""
    try:
        document = response.json()
    except ValueError:
        return (), ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return (), ""
    codes: list[str] = []
    parts: list[str] = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        code = error.get("code")
        if isinstance(code, str | int) and not isinstance(code, bool):
            codes.append(str(code))
        title = error.get("title") or error.get("detail")
        if isinstance(title, str) and title:
            parts.append(f"{code}: {title}" if code is not None else title)
    return tuple(codes), "; ".join(parts)[:300]
