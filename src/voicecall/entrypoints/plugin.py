"""The gateway plugin: one object a host gateway loads, carrying RPC methods, the tool and
start/stop. ``voicecall serve`` is its standalone host."""

from __future__ import annotations

import logging
from typing import Any

from voicecall.adapters.store.owner import StoreOwner
from voicecall.config import AppConfig
from voicecall.container import Container, build_container
from voicecall.entrypoints.rpc import RpcHandler, RpcMethods
from voicecall.entrypoints.tool import VoiceCallTool
from voicecall.services.calls import CallService

__all__ = ["VoiceCallPlugin"]

log = logging.getLogger(__name__)


class VoiceCallPlugin:
    """The ``voice-call`` plugin.

    Args:
        config: the validated configuration.
        container: a pre-built container (tests override providers); built from config if None.
    """

    id = "voice-call"

    def __init__(self, config: AppConfig, container: Container | None = None) -> None:
        self.config = config
        self.container = container or build_container(config)
        self.service: CallService = self.container.call_service()
        self.rpc = RpcMethods(self.service)
        self.tool = VoiceCallTool(self.rpc)
        self._started = False
        self._owner: StoreOwner | None = None

    @property
    def gateway_methods(self) -> dict[str, RpcHandler]:
        """RPC method name -> handler taking params and returning the payload."""
        return dict(self.rpc.methods)

    @property
    def tools(self) -> list[dict[str, Any]]:
        return [{"schema": self.tool.schema, "handler": self.tool}]

    async def call_rpc(self, method: Any, params: Any = None) -> dict[str, Any]:
        """Run an RPC method and return its ``{"ok": …}`` envelope; never raises."""
        return await self.rpc.dispatch(method, params)

    async def start(self) -> None:
        """Take the store (one gateway per store) and restore its live calls.

        Raises:
            StoreInUse: another gateway holds the store; nothing was restored.
        """
        if self._started:
            return
        owner = StoreOwner.acquire(self.config.voice.store_path)
        if self.config.voice.skip_signature_verification:
            log.warning(
                "!!! skipSignatureVerification is ON: webhook signatures are NOT checked. "
                "Use this only for local testing."
            )
        try:
            await self.service.start()
        except BaseException:
            owner.release()
            raise
        self._owner = owner
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            await self.service.stop()
        finally:
            if self._owner is not None:
                self._owner.release()
                self._owner = None
