"""The Plivo adapter against the simulated Plivo, for the telephony contract suite.

REST goes from the adapter to the simulator in-process (``httpx.ASGITransport``); the
simulator's signed webhooks go to our real webhook door through the client the suite gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.adapters.telephony.plivo import PlivoTelephony
from voicecall.adapters.websocket import WsConnect
from voicecall.config import AppConfig
from voicecall.domain.call import Call
from voicecall.domain.ports import Clock
from voicecall.testing.plivo_sim import PlivoSimulator, sign_v3
from voicecall.testing.simtime import HeardLine, ScaledClock

from .conftest import REPLIES

AUTH_ID = "MAPLIVOCONTRACT00001"
AUTH_TOKEN = "contract-plivo-token"
API = "http://plivo.sim"
PUBLIC_URL = "http://127.0.0.1:3334/voice/webhook"
OUR_NUMBER = "+15550100000"


class Harness:
    name = "plivo"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sim: PlivoSimulator | None = None
        self.rest: httpx.AsyncClient | None = None
        self.adapter: PlivoTelephony | None = None
        self.connect_ws: WsConnect | None = None
        self.barge_in_after_s: float | None = None

    def enable_streams(self, connect_ws: WsConnect, barge_in_after_s: float | None) -> None:
        self.connect_ws = connect_ws
        self.barge_in_after_s = barge_in_after_s

    def plugin_config(self) -> dict[str, Any]:
        return {
            "provider": "plivo",
            "publicUrl": PUBLIC_URL,
            "plivo": {"authId": AUTH_ID, "authToken": AUTH_TOKEN, "apiBaseUrl": API},
        }

    def build(
        self, config: AppConfig, clock: Clock, outcome: str, webhook: httpx.AsyncClient
    ) -> PlivoTelephony:
        assert isinstance(clock, ScaledClock), "the contract suite runs on a ScaledClock"
        # Delays in simulated seconds: the suite's clock runs them SPEED times faster.
        self.sim = PlivoSimulator(
            auth_id=AUTH_ID,
            auth_token=AUTH_TOKEN,
            webhook=webhook,
            webhook_url=PUBLIC_URL,
            outcome=outcome,
            replies=REPLIES,
            clock=clock,
            answer_delay_s=0.3,
            reply_delay_s=0.5,
            callback_delay_s=0.3,
            connect_ws=self.connect_ws,
            barge_in_after_s=self.barge_in_after_s,
        )
        self.rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sim))
        self.adapter = PlivoTelephony.from_config(config, clock, self.rest)
        return self.adapter

    def rebuild(self, config: AppConfig, clock: Clock) -> PlivoTelephony:
        # A new process: its own connection to the same (still running) carrier.
        self.rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=self._sim()))
        self.adapter = PlivoTelephony.from_config(config, clock, self.rest)
        return self.adapter

    def _sim(self) -> PlivoSimulator:
        assert self.sim is not None, "build() first"
        return self.sim

    def handset(self, call: Call) -> SimulatedHandset | None:
        stream = self._sim().stream(call.provider_call_id)
        return stream.handset if stream is not None else None

    def stream_connections(self, call: Call) -> int:
        stream = self._sim().stream(call.provider_call_id)
        return stream.connections if stream is not None else 0

    async def drop_stream(self, call: Call) -> None:
        assert self._sim().stream(call.provider_call_id) is not None, "no stream to drop"
        await self._sim().drop_stream(call.provider_call_id)

    def heard(self, call: Call) -> list[str]:
        return self._sim().heard(call.provider_call_id)

    def played(self, call: Call) -> list[HeardLine]:
        return self._sim().played(call.provider_call_id)

    def line_dead_at(self, call: Call) -> float | None:
        return self._sim().ended_at(call.provider_call_id)

    async def caller_hangs_up(self, call: Call) -> None:
        await self._sim().caller_hangs_up(call.provider_call_id)

    async def ring_inbound(self, from_number: str | None) -> None:
        await self._sim().ring_inbound(from_number, OUR_NUMBER)

    def rejections(self, call: Call) -> int:
        sim_call = self._sim().find(call.provider_call_id)
        return 0 if sim_call is None else sim_call.rejected + sim_call.hangups

    def break_carrier(self) -> None:
        self._sim().unavailable = True

    async def redeliver_last_webhook(self) -> httpx.Response:
        last = self._sim().last_webhook
        assert last is not None, "no webhook was sent yet"
        return await self._sim().redeliver(last)

    async def forge_webhook(self, call: Call) -> httpx.Response:
        sim = self._sim()
        url = f"{PUBLIC_URL}?" + urlencode({"callId": call.call_id, "kind": "input", "doc": "x"})
        params = {
            "CallUUID": call.provider_call_id or "",
            "Direction": call.direction.value,
            "InputType": "speech",
            "Speech": "FORGED",
        }
        nonce = "12345678901234567890"
        signature = sign_v3("not-the-auth-token", url, params, nonce)
        return await sim.webhook.post(
            url,
            content=urlencode(params).encode(),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-plivo-signature-v3": signature,
                "x-plivo-signature-v3-nonce": nonce,
            },
        )

    async def aclose(self) -> None:
        if self.sim is not None:
            await self.sim.aclose()
        if self.rest is not None:
            await self.rest.aclose()
