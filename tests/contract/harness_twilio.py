"""Contract harness for Twilio: ``TwilioTelephony`` against the simulated Twilio, in-process.

REST goes to the simulator's ASGI app; its signed webhooks go to our real webhook door. Both
directions use Twilio's wire format, so the contract exercises what production would. With
streams enabled, the simulator's ``<Connect><Stream>`` opens its WebSocket on our listener
in-process and puts a simulated handset on the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.adapters.telephony.twilio import TwilioTelephony
from voicecall.adapters.websocket import WsConnect
from voicecall.config import AppConfig
from voicecall.domain.call import Call
from voicecall.domain.ports import Clock
from voicecall.testing.simtime import HeardLine, ScaledClock
from voicecall.testing.twilio_sim import SimStream, TwilioSimulator

from .conftest import REPLIES

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "contract-auth-token"
API_BASE = "http://api.twilio.test"
PUBLIC_URL = "http://127.0.0.1:3334/voice/webhook"
OUR_NUMBER = "+15550100000"


class Harness:
    name = "twilio"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sim: TwilioSimulator | None = None
        self.rest: httpx.AsyncClient | None = None
        self.webhook: httpx.AsyncClient | None = None
        self.connect_ws: WsConnect | None = None
        self.barge_in_after_s: float | None = None

    def enable_streams(self, connect_ws: WsConnect, barge_in_after_s: float | None) -> None:
        self.connect_ws = connect_ws
        self.barge_in_after_s = barge_in_after_s

    def _stream(self, call: Call) -> SimStream | None:
        return self._sim().stream(call.provider_call_id or "")

    def handset(self, call: Call) -> SimulatedHandset | None:
        stream = self._stream(call)
        return stream.handset if stream is not None else None

    def stream_connections(self, call: Call) -> int:
        stream = self._stream(call)
        return stream.connections if stream is not None else 0

    async def drop_stream(self, call: Call) -> None:
        assert self._stream(call) is not None
        await self._sim().drop_stream(call.provider_call_id or "")

    def plugin_config(self) -> dict[str, Any]:
        return {
            "provider": "twilio",
            "twilio": {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN, "apiBaseUrl": API_BASE},
            "publicUrl": PUBLIC_URL,
        }

    def build(
        self, config: AppConfig, clock: Clock, outcome: str, webhook: httpx.AsyncClient
    ) -> TwilioTelephony:
        self.webhook = webhook
        assert isinstance(clock, ScaledClock)
        self.sim = TwilioSimulator(
            webhook,
            clock=clock,
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            voice_url=PUBLIC_URL,
            number_status_callback=PUBLIC_URL,
            outcome=outcome,
            replies=REPLIES,
            # Simulated seconds, like every delay of the simulator.
            answer_delay_s=0.3,
            reply_delay_s=0.3,
            callback_delay_s=0.5,
            connect_ws=self.connect_ws,
            barge_in_after_s=self.barge_in_after_s,
        )
        self.rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sim))
        return TwilioTelephony.from_config(config, clock, http=self.rest)

    def rebuild(self, config: AppConfig, clock: Clock) -> TwilioTelephony:
        # A new process: its own connection to the same (still running) carrier.
        self.rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=self._sim()))
        return TwilioTelephony.from_config(config, clock, http=self.rest)

    def _sim(self) -> TwilioSimulator:
        assert self.sim is not None
        return self.sim

    def heard(self, call: Call) -> list[str]:
        return self._sim().heard(call.provider_call_id or "")

    def played(self, call: Call) -> list[HeardLine]:
        return self._sim().played(call.provider_call_id or "")

    def line_dead_at(self, call: Call) -> float | None:
        return self._sim().ended_at(call.provider_call_id or "")

    async def caller_hangs_up(self, call: Call) -> None:
        self._sim().caller_hangs_up(call.provider_call_id or "")

    async def ring_inbound(self, from_number: str | None) -> None:
        await self._sim().ring_inbound(from_number, OUR_NUMBER)

    def rejections(self, call: Call) -> int:
        sim_call = self._sim().calls[call.provider_call_id or ""]
        return sim_call.rejected + sim_call.hangups

    def break_carrier(self) -> None:
        self._sim().unavailable = True

    async def redeliver_last_webhook(self) -> httpx.Response:
        return await self._sim().redeliver_last()

    async def forge_webhook(self, call: Call) -> httpx.Response:
        assert self.webhook is not None
        url = f"{PUBLIC_URL}?" + urlencode(
            {"callId": call.call_id, "hook": "gather", "turn": "forged"}
        )
        params = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": call.provider_call_id or "",
            "CallStatus": "in-progress",
            "SpeechResult": "FORGED",
            "Confidence": "0.99",
        }
        forger = TwilioSimulator(self.webhook, account_sid=ACCOUNT_SID, auth_token="not-the-token")
        return await self.webhook.post(
            url,
            content=urlencode(params).encode(),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-twilio-signature": forger.sign(url, params),
            },
        )

    async def aclose(self) -> None:
        if self.sim is not None:
            await self.sim.aclose()
        if self.rest is not None:
            await self.rest.aclose()
