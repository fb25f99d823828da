"""The composition root: the only module that knows which concrete adapters exist."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from dependency_injector import containers, providers

from voicecall.adapters.agent.models import ModelRoute, build_chat_model, resolve_model
from voicecall.adapters.agent.rules import RuleBasedResponder
from voicecall.adapters.clock import SystemClock
from voicecall.adapters.speech.wiring import build_synthesizer, build_transcriber, speech_plan
from voicecall.adapters.store.pairing import FilePairingStore
from voicecall.adapters.store.secret import load_or_create_secret
from voicecall.adapters.store.sqlite import SqliteCallStore
from voicecall.adapters.telephony.mock import MockSettings, MockTelephony
from voicecall.adapters.telephony.plivo import PlivoTelephony
from voicecall.adapters.telephony.telnyx import TelnyxTelephony
from voicecall.adapters.telephony.twilio import TwilioTelephony
from voicecall.adapters.tunnel.ngrok import NgrokTunnel
from voicecall.adapters.tunnel.tailscale import TailscaleTunnel
from voicecall.config import AppConfig
from voicecall.domain.call import CallMode
from voicecall.domain.exposure import PublicAddress, Reachability
from voicecall.domain.policy import (
    DialRules,
    InboundPolicy,
    InboundPolicyMode,
    OutboundPolicy,
    country_code,
)
from voicecall.domain.ports import SpeechSynthesizer, Transcriber
from voicecall.domain.tts import SpeechPath, SpeechPlan
from voicecall.services.agent import AgentService, AgentSettings
from voicecall.services.calls import CallService, CallSettings
from voicecall.services.events import EventFeed
from voicecall.services.media import MediaService
from voicecall.services.pairing import PairingService

__all__ = [
    "MOCK_FROM_NUMBER",
    "Container",
    "agent_settings",
    "build_container",
    "call_settings",
    "model_route",
    "stream_url",
]

# What the offline mock shows as the bot's number when the config names none.
MOCK_FROM_NUMBER = "+15550100000"

log = logging.getLogger(__name__)


def call_settings(config: AppConfig) -> CallSettings:
    """The service's numbers and policies, from the plugin config."""
    voice = config.voice
    return CallSettings(
        from_number=voice.from_number or MOCK_FROM_NUMBER,
        outbound=OutboundPolicy(
            max_concurrent_calls=voice.max_concurrent_calls,
            default_mode=CallMode(voice.outbound.default_mode),
            notify_hangup_delay_sec=float(voice.outbound.notify_hangup_delay_sec),
            default_to=voice.to_number,
            dial=DialRules(
                allow_to=voice.outbound.allow_to,
                deny_to=voice.outbound.deny_to,
                home_country=country_code(voice.from_number or MOCK_FROM_NUMBER),
            ),
            max_calls_per_hour=voice.outbound.max_calls_per_hour,
            max_calls_per_day=voice.outbound.max_calls_per_day,
        ),
        inbound=InboundPolicy(
            mode=InboundPolicyMode(voice.inbound_policy),
            allow_from=voice.allow_from,
        ),
        inbound_greeting=voice.inbound_greeting,
        voice=config.tts.openai.voice if config.tts.openai is not None else None,
        max_duration_s=float(voice.max_duration_seconds),
        ring_timeout_s=voice.ring_timeout_ms / 1000,
        transcript_timeout_s=voice.transcript_timeout_ms / 1000,
        response_timeout_s=voice.response_timeout_ms / 1000,
        stale_call_reaper_s=float(voice.stale_call_reaper_seconds),
        retention_s=voice.retention_days * 86400.0,
        stream_url=stream_url(config),
    )


def _speech_plan(config: AppConfig) -> SpeechPlan:
    plan = speech_plan(config)
    if plan.notice:
        log.warning("%s", plan.notice)
    return plan


def model_route(config: AppConfig) -> ModelRoute:
    """``responseModel`` resolved; ``ConfigError`` (exit 2) when it cannot be."""
    return resolve_model(config)


def agent_settings(config: AppConfig) -> AgentSettings:
    voice = config.voice
    return AgentSettings(
        system_prompt=voice.response_system_prompt,
        hold_after_s=voice.agent.hold_after_ms / 1000,
        response_timeout_s=voice.response_timeout_ms / 1000,
        transfer_allowlist=tuple(voice.agent.transfer_allowlist),
        allow_from=tuple(voice.allow_from),
        language=getattr(voice, "language", None),
    )


def _with_agent(
    service: CallService, config: AppConfig, clock: SystemClock, feed: EventFeed
) -> CallService:
    """The call service with the agent on the line (they refer to each other)."""
    route = model_route(config)
    service.agent = AgentService(
        build_chat_model(route), service, clock, feed, agent_settings(config)
    )
    return service


def stream_url(config: AppConfig) -> str | None:
    """Where carriers open media streams: the public URL's host over ``wss://`` (``ws://``
    for plain HTTP) at ``streaming.streamPath``; None with streaming off, or when calls run
    natively for want of a usable TTS or STT key (SPEC §6)."""
    voice = config.voice
    if not voice.streaming.enabled or speech_plan(config).path is SpeechPath.NATIVE:
        return None
    if voice.public_url:
        parts = urlsplit(voice.public_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, voice.streaming.stream_path, "", ""))
    host = voice.serve.bind if voice.serve.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"ws://{host}:{voice.serve.port}{voice.streaming.stream_path}"


def _media_service(
    config: AppConfig,
    clock: SystemClock,
    synthesizer: SpeechSynthesizer,
    transcriber: Transcriber,
) -> MediaService | None:
    voice = config.voice
    if stream_url(config) is None:
        return None
    return MediaService(
        clock,
        synthesizer,
        transcriber,
        load_or_create_secret(voice.store_path / "stream-secret"),
        lead_ms=float(voice.streaming.lead_ms),
    )


def tunnel_provider(config: AppConfig) -> str:
    """The tunnel to run: ``tunnel.provider``, else the legacy ``tailscale.mode`` mapped as
    OpenClaw maps it; ``none`` when ``publicUrl`` is set (it wins, as in OpenClaw)."""
    voice = config.voice
    if voice.public_url:
        return "none"
    if voice.tunnel.provider != "none":
        return voice.tunnel.provider
    if voice.tailscale.mode != "off":
        return f"tailscale-{voice.tailscale.mode}"
    return "none"


def public_address(config: AppConfig) -> PublicAddress:
    """Where carriers reach us now; a tunnel fills it in after start."""
    voice = config.voice
    options: dict[str, object] = {
        "webhook_path": voice.serve.path,
        "stream_path": voice.streaming.stream_path if stream_url(config) else None,
        # The offline mock calls back in-process; it needs no public URL.
        "required": voice.provider != "mock",
        "local_stream_url": stream_url(config),
    }
    if voice.public_url:
        return PublicAddress.static(voice.public_url, **options)
    address = PublicAddress(**options)  # type: ignore[arg-type]
    if tunnel_provider(config) != "none":
        address.state = Reachability.PENDING
    return address


def _local_target(config: AppConfig, path: str = "") -> str:
    serve = config.voice.serve
    host = serve.bind if serve.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{serve.port}{path}"


def _tailscale(config: AppConfig, clock: SystemClock, mode: str) -> TailscaleTunnel:
    voice = config.voice
    # Legacy tailscale.path publishes under its own path; the tunnel form uses serve.path.
    public_path = voice.tailscale.path if voice.tunnel.provider == "none" else voice.serve.path
    routes = [(public_path, _local_target(config, voice.serve.path))]
    if voice.streaming.enabled:
        path = voice.streaming.stream_path
        routes.append((path, _local_target(config, path)))
    return TailscaleTunnel(mode, routes, clock)


def _mock_settings(config: AppConfig) -> MockSettings:
    mock = config.voice.mock
    return MockSettings(
        answer_delay_ms=mock.answer_delay_ms,
        outcome=mock.outcome,
        replies=tuple(mock.replies),
        speech_chars_per_sec=mock.speech_chars_per_sec,
        barge_in_after_s=(
            mock.barge_in_after_ms / 1000 if mock.barge_in_after_ms is not None else None
        ),
    )


class Container(containers.DeclarativeContainer):
    """Wires one gateway process. ``app_config`` must be provided, already validated."""

    app_config = providers.Dependency(instance_of=AppConfig)

    clock = providers.Singleton(SystemClock)
    store = providers.Singleton(
        SqliteCallStore, directory=providers.Callable(lambda c: c.voice.store_path, app_config)
    )
    feed = providers.Singleton(EventFeed, store=store)
    # Pairing requests and approved numbers: pairing.json in the store, never the config.
    pairing = providers.Singleton(
        PairingService,
        store=providers.Singleton(
            FilePairingStore,
            directory=providers.Callable(lambda c: c.voice.store_path, app_config),
        ),
        clock=clock,
        feed=feed,
    )

    telephony = providers.Selector(
        providers.Callable(lambda c: c.voice.provider, app_config),
        mock=providers.Singleton(
            MockTelephony,
            settings=providers.Callable(_mock_settings, app_config),
            clock=clock,
            state_path=providers.Callable(
                lambda c: c.voice.store_path / "mock-carrier.json", app_config
            ),
        ),
        plivo=providers.Singleton(PlivoTelephony.from_config, app_config, clock),
        telnyx=providers.Singleton(TelnyxTelephony.from_config, app_config, clock),
        twilio=providers.Singleton(TwilioTelephony.from_config, app_config, clock),
    )

    # The agent (responseModel, attached by _with_agent) answers callers; the service's
    # responder only answers when it runs without one, which the container never builds.
    responder = providers.Singleton(RuleBasedResponder)

    # Who speaks and hears streamed calls: the domain's rules (SPEC §6) over the config.
    speech_plan = providers.Singleton(_speech_plan, app_config)
    synthesizer = providers.Singleton(build_synthesizer, app_config, speech_plan)
    transcriber = providers.Singleton(build_transcriber, app_config, speech_plan, clock)
    media = providers.Singleton(_media_service, app_config, clock, synthesizer, transcriber)

    address = providers.Singleton(public_address, app_config)
    tunnel = providers.Selector(
        providers.Callable(tunnel_provider, app_config),
        none=providers.Object(None),
        ngrok=providers.Singleton(
            NgrokTunnel,
            forward_to=providers.Callable(_local_target, app_config),
            auth_token=providers.Callable(lambda c: c.voice.tunnel.ngrok_auth_token, app_config),
            domain=providers.Callable(lambda c: c.voice.tunnel.ngrok_domain, app_config),
        ),
        **{
            "tailscale-serve": providers.Singleton(_tailscale, app_config, clock, "serve"),
            "tailscale-funnel": providers.Singleton(_tailscale, app_config, clock, "funnel"),
        },
    )

    _bare_call_service = providers.Singleton(
        CallService,
        provider=telephony,
        store=store,
        clock=clock,
        responder=responder,
        feed=feed,
        settings=providers.Callable(call_settings, app_config),
        media=media,
        address=address,
        pairing=pairing,
    )
    call_service = providers.Singleton(_with_agent, _bare_call_service, app_config, clock, feed)


def build_container(config: AppConfig) -> Container:
    container = Container(app_config=config)
    return container


def telephony_names() -> frozenset[str]:
    """Every carrier the container can wire (the contract suite's guard compares to this)."""
    return frozenset(Container.telephony.providers)
