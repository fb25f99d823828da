"""How we talk to Twilio's REST API: the Call resource, over httpx, with Twilio's errors
translated into ours.

Call resource: https://www.twilio.com/docs/voice/api/call-resource (create, fetch, update with
``Twiml`` or ``Status=completed``).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote, urlencode

import httpx

from voicecall.adapters.telephony.twilio.verify import FORM_CONTENT_TYPE
from voicecall.domain.errors import CarrierRejected, TransientError

__all__ = ["API_VERSION", "AlreadyEnded", "TwilioRest"]

API_VERSION: Final = "2010-04-01"
# REST answers that mean "that call is already over": not found, or not in progress.
_ALREADY_ENDED_CODES: Final = frozenset({20404, 21220})


class AlreadyEnded(Exception):
    """Twilio says the call is gone (20404 / 404) or not in progress (21220)."""


class TwilioRest:
    """The Calls endpoints of one Twilio account.

    Args:
        account_sid: the account (``AC…``), also the basic-auth user.
        auth_token: the basic-auth password.
        api_base_url: ``https://api.twilio.com`` or a simulator.
        http: the client; one with sane timeouts is made (and closed) when None.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        api_base_url: str,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._calls_url = f"{api_base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Calls"
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    async def create_call(self, form: list[tuple[str, str]]) -> dict[str, Any]:
        """POST Calls.json: place an outbound call."""
        return await self._request("POST", f"{self._calls_url}.json", form, "place the call")

    async def update_call(self, sid: str, form: list[tuple[str, str]], what: str) -> None:
        """POST Calls/{Sid}.json: new TwiML (``Twiml``) or an end (``Status=completed``).

        Raises ``AlreadyEnded`` when Twilio says the call is over.
        """
        await self._request("POST", self._call_url(sid), form, what)

    async def fetch_call(self, sid: str) -> dict[str, Any]:
        """GET Calls/{Sid}.json."""
        return await self._request("GET", self._call_url(sid), None, "read the call")

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _call_url(self, sid: str) -> str:
        return f"{self._calls_url}/{quote(sid, safe='')}.json"

    async def _request(
        self, method: str, url: str, form: list[tuple[str, str]] | None, what: str
    ) -> dict[str, Any]:
        try:
            headers = {"Accept": "application/json"}
            content: bytes | None = None
            if form is not None:
                # Encoded by hand: httpx takes repeats only from a dict of lists, which would
                # lose the order of the other fields.
                content = urlencode(form).encode()
                headers["Content-Type"] = FORM_CONTENT_TYPE
            response = await self._http.request(
                method, url, content=content, auth=self._auth, headers=headers
            )
        except httpx.TimeoutException:
            raise TransientError(f"Twilio timed out trying to {what}") from None
        except httpx.HTTPError as err:
            raise TransientError(f"Twilio unreachable trying to {what}: {err}") from None
        try:
            decoded: Any = response.json()
        except ValueError:
            decoded = None
        body: dict[str, Any] = decoded if isinstance(decoded, dict) else {}
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"Twilio answered {response.status_code} trying to {what}")
        if response.status_code >= 400:
            code = body.get("code")
            if response.status_code == 404 or code in _ALREADY_ENDED_CODES:
                raise AlreadyEnded()
            message = body.get("message") or response.reason_phrase
            raise CarrierRejected(
                f"Twilio refused to {what}: {message} (HTTP {response.status_code}"
                + (f", code {code})" if code else ")")
            )
        return body
