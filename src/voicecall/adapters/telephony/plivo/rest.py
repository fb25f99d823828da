"""How we talk to Plivo's Voice API: HTTP basic auth, JSON bodies, httpx.

Endpoints (Plivo Voice API reference):

* Make a call, ``POST Call/`` (answers a ``request_uuid``):
  https://docs.plivo.com/docs/voice/api/call/make-a-call
* Transfer a call, ``POST Call/{uuid}/`` with ``legs=aleg`` and ``aleg_url``: the live call
  fetches and runs the XML at ``aleg_url`` in place of what it was running ("fetch and execute
  XML from a different URL"); "Maximum transfers allowed for a single call is 70":
  https://plivo.com/docs/voice/api/call/transfer-a-call
* Hang up a call, ``DELETE Call/{uuid}/`` (404: not live), and cancel a queued one,
  ``DELETE Request/{request_uuid}/``.
* Retrieve a live call ``GET Call/{uuid}/?status=live``, a queued one ``?status=queued``, and
  the call detail record ``GET Call/{uuid}/``, written once the call is over.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from voicecall.domain.errors import CarrierRejected, TransientError, VoiceCallError
from voicecall.domain.ports import CarrierStatus, CarrierStatusKind

from .webhooks import cdr_end_state

__all__ = ["PlivoRest"]


class PlivoRest:
    """The account's REST API.

    Args:
        auth_id: the Plivo Auth ID (account or subaccount).
        auth_token: its Auth Token (HTTP basic auth).
        http: the client; closed by ``aclose`` only if ``owns_http``.
        api_base_url: ``plivo.apiBaseUrl`` (``https://api.plivo.com``).
    """

    def __init__(
        self,
        auth_id: str,
        auth_token: str,
        http: httpx.AsyncClient,
        api_base_url: str = "https://api.plivo.com",
        *,
        owns_http: bool = False,
    ) -> None:
        self._auth_id = auth_id
        self._auth = (auth_id, auth_token)
        self._http = http
        self._owns_http = owns_http
        self._account_url = f"{api_base_url.rstrip('/')}/v1/Account/{auth_id}/"

    async def make_call(self, body: Mapping[str, Any]) -> str:
        """Place a call; returns its ``request_uuid``."""
        response = await self._request("POST", "Call/", json=body)
        self._raise_unless_ok(response, "place the call")
        try:
            data = response.json()
        except ValueError:
            data = None
        request_uuid = data.get("request_uuid") if isinstance(data, dict) else None
        if isinstance(request_uuid, list):
            request_uuid = request_uuid[0] if request_uuid else None
        if not isinstance(request_uuid, str) or not request_uuid:
            raise CarrierRejected("Plivo accepted the call but returned no request_uuid")
        return request_uuid

    async def transfer(self, call_uuid: str, aleg_url: str) -> None:
        """Make the live call fetch and run ``aleg_url`` now, abandoning what it runs."""
        body = {"legs": "aleg", "aleg_url": aleg_url, "aleg_method": "POST"}
        response = await self._request("POST", f"Call/{call_uuid}/", json=body)
        if response.status_code == 404:
            raise CarrierRejected("Plivo says the call is no longer live")
        self._raise_unless_ok(response, "transfer the call to new XML")

    async def send_digits(self, call_uuid: str, digits: str) -> None:
        """``POST Call/{uuid}/DTMF/``: play DTMF into the live call
        (https://www.plivo.com/docs/voice/api/call/send-digits)."""
        response = await self._request("POST", f"Call/{call_uuid}/DTMF/", json={"digits": digits})
        if response.status_code == 404:
            raise CarrierRejected("Plivo says the call is no longer live")
        self._raise_unless_ok(response, "send digits")

    async def hangup(self, call_uuid: str | None) -> None:
        """End a call (or cancel it while queued); one already over is success."""
        if not call_uuid:
            return  # never reached Plivo: nothing to hang up
        response = await self._request("DELETE", f"Call/{call_uuid}/")
        if response.status_code == 404:
            # Not a live call: maybe a request still queued under its request_uuid, else the
            # call is already over, which is what we wanted.
            response = await self._request("DELETE", f"Request/{call_uuid}/")
            if response.status_code == 404:
                return
        self._raise_unless_ok(response, "hang up")

    async def status(self, call_uuid: str | None) -> CarrierStatus:
        """Live, ended (with the CDR's outcome) or unknown; never raises."""
        if not call_uuid:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="no Plivo id for the call")
        try:
            live = await self._request("GET", f"Call/{call_uuid}/", params={"status": "live"})
            if live.is_success:
                return CarrierStatus(CarrierStatusKind.LIVE, detail=_live_status(live))
            if live.status_code != 404:
                return _unknown(live)
            record = await self._request("GET", f"Call/{call_uuid}/")
            if record.is_success:
                data = record.json()
                if not isinstance(data, dict):
                    return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="unreadable CDR")
                cause = str(data.get("hangup_cause_name") or "")
                return CarrierStatus(
                    CarrierStatusKind.ENDED, end_state=cdr_end_state(data), detail=cause
                )
            if record.status_code != 404:
                return _unknown(record)
            # Not live and no record yet: maybe still queued under its request_uuid.
            queued = await self._request("GET", f"Call/{call_uuid}/", params={"status": "queued"})
            if queued.is_success:
                return CarrierStatus(CarrierStatusKind.LIVE, detail="queued")
            # Plivo writes the CDR shortly after a call ends, so "not found anywhere" is not
            # proof the call is over: leave the decision to a later check.
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="Plivo has no record yet")
        except VoiceCallError as err:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=err.detail)
        except ValueError:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="unreadable answer from Plivo")

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        if not self._auth_id:
            raise CarrierRejected("no Plivo auth id configured (plivo.authId)")
        started = time.monotonic()
        try:
            return await self._http.request(
                method,
                self._account_url + path,
                json=json,
                params=params,
                auth=self._auth,
                headers={"Accept": "application/json"},
            )
        except httpx.TimeoutException:
            waited = time.monotonic() - started
            raise TransientError(f"Plivo did not answer within {waited:.1f} s") from None
        except httpx.HTTPError as err:
            raise TransientError(f"could not reach Plivo: {type(err).__name__}") from None

    @staticmethod
    def _raise_unless_ok(response: httpx.Response, what: str) -> None:
        if response.is_success:
            return
        detail = f"Plivo refused to {what}: {_error_detail(response)} ({response.status_code})"
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(detail)
        raise CarrierRejected(detail)


def _unknown(response: httpx.Response) -> CarrierStatus:
    return CarrierStatus(
        CarrierStatusKind.UNKNOWN,
        detail=f"Plivo answered {response.status_code}: {_error_detail(response)}",
    )


def _live_status(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return "live"
    status = data.get("call_status") if isinstance(data, dict) else None
    return str(status) if status else "live"


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return response.reason_phrase or f"HTTP {response.status_code}"
