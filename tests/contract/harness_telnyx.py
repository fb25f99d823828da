"""The Telnyx adapter against the simulated Telnyx carrier, for the telephony contract suite.

Everything runs in-process: our adapter's REST goes to the simulator through an
``httpx.ASGITransport``, and the simulator's signed webhooks reach our real webhook door the
same way.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

from voicecall.adapters.telephony.handset import SimulatedHandset
from voicecall.adapters.telephony.telnyx import TelnyxTelephony, encode_client_state
from voicecall.adapters.websocket import WsConnect
from voicecall.config import AppConfig
from voicecall.domain.call import Call
from voicecall.domain.ports import Clock
from voicecall.testing.simtime import HeardLine, ScaledClock
from voicecall.testing.telnyx_sim import TelnyxSimulator

from .conftest import REPLIES

API_KEY = "KEYsimulated0123456789"
API_BASE = "http://telnyx.sim/v2"
PUBLIC_URL = "http://127.0.0.1:3334/voice/webhook"
OUR_NUMBER = "+15550100000"


class Harness:
    """``CarrierHarness`` for Telnyx (see ``tests/contract/conftest.py``)."""

    name = "telnyx"

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.key = SigningKey.generate()
        self.sim: TelnyxSimulator | None = None
        self.rest: httpx.AsyncClient | None = None
        self.connect_ws: WsConnect | None = None
        self.barge_in_after_s: float | None = None

    # ------------------------------------------------------------------ StreamHarness

    def enable_streams(self, connect_ws: WsConnect, barge_in_after_s: float | None) -> None:
        self.connect_ws = connect_ws
        self.barge_in_after_s = barge_in_after_s

    def handset(self, call: Call) -> SimulatedHandset | None:
        return self._sim().handset(call.provider_call_id)

    def stream_connections(self, call: Call) -> int:
        return self._sim().stream_connections(call.provider_call_id)

    async def drop_stream(self, call: Call) -> None:
        await self._sim().drop_stream(call.provider_call_id)

    # ------------------------------------------------------------------ CarrierHarness

    def plugin_config(self) -> dict[str, Any]:
        return {
            "provider": "telnyx",
            "publicUrl": PUBLIC_URL,
            "telnyx": {
                "apiKey": API_KEY,
                "connectionId": "sim-connection",
                "publicKey": base64.b64encode(bytes(self.key.verify_key)).decode(),
                "apiBaseUrl": API_BASE,
            },
        }

    def build(
        self, config: AppConfig, clock: Clock, outcome: str, webhook: httpx.AsyncClient
    ) -> TelnyxTelephony:
        assert isinstance(clock, ScaledClock)
        # Delays in simulated seconds, on the clock the service runs on.
        self.sim = TelnyxSimulator(
            webhook,
            self.key,
            PUBLIC_URL,
            api_key=API_KEY,
            outcome=outcome,
            replies=REPLIES,
            answer_delay_s=0.3,
            reply_delay_s=0.5,
            retry_delays_s=(0.5, 1.0),
            clock=clock,
            # Enough for a line's end and the next one's start to swap now and then; the
            # swaps are exercised hard in test_telnyx_speech.py.
            delivery_jitter_s=0.05,
            connect_ws=self.connect_ws,
            barge_in_after_s=self.barge_in_after_s,
        )
        self.rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.sim))
        return TelnyxTelephony.from_config(config, clock, http=self.rest)

    def rebuild(self, config: AppConfig, clock: Clock) -> TelnyxTelephony:
        # A new process: its own connection to the same (still running) carrier.
        self.rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=self._sim()))
        return TelnyxTelephony.from_config(config, clock, http=self.rest)

    def _sim(self) -> TelnyxSimulator:
        assert self.sim is not None, "build() first"
        return self.sim

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
        sim_call = self._sim().calls[call.provider_call_id or ""]
        return sim_call.rejected + sim_call.hangups

    def break_carrier(self) -> None:
        self._sim().unavailable = True

    async def redeliver_last_webhook(self) -> httpx.Response:
        sim = self._sim()
        await sim.idle()
        return await sim.redeliver()

    async def forge_webhook(self, call: Call) -> httpx.Response:
        sim = self._sim()
        body = json.dumps(
            {
                "data": {
                    "record_type": "event",
                    "event_type": "call.transcription",
                    "id": str(uuid.uuid4()),
                    "occurred_at": "2025-01-01T00:00:00.000000Z",
                    "payload": {
                        "call_control_id": call.provider_call_id,
                        "client_state": encode_client_state(call.call_id),
                        "transcription_data": {
                            "transcript": "FORGED",
                            "is_final": True,
                            "confidence": 1.0,
                        },
                    },
                }
            }
        ).encode()
        # Signed by someone else's key: well-formed, fresh, and not Telnyx.
        impostor = TelnyxSimulator(sim.webhook, SigningKey.generate(), PUBLIC_URL, clock=sim.clock)
        return await sim.webhook.post(PUBLIC_URL, content=body, headers=impostor.sign(body))

    async def aclose(self) -> None:
        if self.sim is not None:
            await self.sim.aclose()
        if self.rest is not None:
            await self.rest.aclose()
