"""Twilio Programmable Voice: the telephony adapter and its webhook signature verification."""

from __future__ import annotations

import enum
import logging
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

import attrs
import httpx
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from voicecall.config import AppConfig, url_trust_settings
from voicecall.domain.call import Call, CallDirection, CallState
from voicecall.domain.errors import CallerError, CarrierRejected, TransientError, VoiceCallError
from voicecall.domain.events import (
    CallAnswered,
    CallEnded,
    CallEvent,
    CallInitiated,
    CallRinging,
    CallSilence,
    CallSpeech,
)
from voicecall.domain.ports import (
    CarrierStatus,
    CarrierStatusKind,
    Clock,
    DialRequest,
    DialResult,
    EventSink,
)
from voicecall.domain.signed_url import (
    UrlTrustSettings,
    Verification,
    reconstruct_public_url,
    signature_headers_present,
    twilio_url_variants,
)
from voicecall.domain.webhook import WebhookRequest, WebhookResponse

__all__ = ["OPENAI_TO_TWILIO_VOICE", "TwilioSignatureVerifier", "TwilioTelephony", "twilio_voice"]

log = logging.getLogger(__name__)

_SIGNATURE_HEADER: Final = "x-twilio-signature"
_FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"


class _FormParams(dict[str, list[str]]):
    """Form fields with repeats kept; the SDK's validator reads them through ``getlist``."""

    def getlist(self, key: str) -> list[str]:
        return list(self[key])


def _form_params(body: str) -> _FormParams:
    params = _FormParams()
    # Twilio signs empty fields too (e.g. "CallerCity="), so blanks must be kept.
    for key, value in parse_qsl(body, keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


def _media_type(request: WebhookRequest) -> str:
    return (request.header("content-type") or "").split(";", 1)[0].strip().lower()


class TwilioSignatureVerifier:
    """Checks ``X-Twilio-Signature`` with the Twilio SDK's ``RequestValidator``.

    The signature is HMAC-SHA1(authToken, URL + sorted POST fields). The URL is rebuilt under
    the operator's trust settings and tried with the port variants of
    ``twilio_url_variants``. A JSON body is covered by the ``bodySHA256`` query parameter, as
    the SDK handles it; any other body that the signature would not cover is refused.
    """

    required_headers: tuple[str, ...] = (_SIGNATURE_HEADER,)
    header_sets: tuple[tuple[str, ...], ...] = (required_headers,)
    """Header groups of which one must be complete for the request to be verifiable."""

    def __init__(self, auth_token: str, settings: UrlTrustSettings) -> None:
        self._configured = bool(auth_token)
        self._validator = RequestValidator(auth_token)
        self._settings = settings

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        """Whether the headers needed to verify at all are present (checked before the body)."""
        return signature_headers_present(self.header_sets, header_names)

    def verify(self, request: WebhookRequest) -> Verification:
        """Verify one request; never raises."""
        signature = request.header(_SIGNATURE_HEADER)
        if not signature:
            return Verification(ok=False, reason="missing X-Twilio-Signature")
        if not self._configured:
            return Verification(ok=False, reason="no Twilio auth token configured")

        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return Verification(ok=False, reason="body is not UTF-8")
        params: _FormParams | str
        if "bodySHA256" in parse_qs(request.query):
            params = body  # the SDK checks the body against the signed hash
        elif _media_type(request) == _FORM_CONTENT_TYPE:
            params = _form_params(body)
        elif not request.body:
            params = _FormParams()
        else:
            return Verification(ok=False, reason="body not covered by the signature")

        url = reconstruct_public_url(request, self._settings)
        if self._valid(url, params, signature):
            # The common case; the port variants are worked out only when it fails.
            return _accepted((url,), signature)
        candidates = twilio_url_variants(url, request, self._settings)
        for candidate in candidates[1:]:
            if self._valid(candidate, params, signature):
                return _accepted(candidates, signature)
        return Verification(ok=False, reason="bad Twilio signature", checked_urls=candidates)

    def _valid(self, url: str, params: _FormParams | str, signature: str) -> bool:
        try:
            return bool(self._validator.validate(url, params, signature))
        except Exception:  # the SDK must never turn a hostile request into a 500
            return False


def _accepted(checked: tuple[str, ...], signature: str) -> Verification:
    return Verification(
        ok=True,
        reason="valid Twilio signature",
        checked_urls=checked,
        replay_key=f"twilio:{signature}",
    )


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------

_API_VERSION: Final = "2010-04-01"

# OpenAI voice names (what ``tts.openai.voice`` holds) to comparable Amazon Polly voices that
# Twilio's <Say> speaks natively.
OPENAI_TO_TWILIO_VOICE: Final[dict[str, str]] = {
    "alloy": "Polly.Joanna",
    "echo": "Polly.Matthew",
    "fable": "Polly.Amy",
    "onyx": "Polly.Brian",
    "nova": "Polly.Salli",
    "shimmer": "Polly.Kimberly",
}
# Names Twilio's <Say> already understands are passed through untouched.
_NATIVE_VOICE_PREFIXES: Final = ("Polly.", "Google.", "alice", "man", "woman")

_LIVE_STATUSES: Final = frozenset({"queued", "initiated", "ringing", "in-progress"})
_END_STATES: Final[dict[str, CallState]] = {
    "completed": CallState.COMPLETED,
    "busy": CallState.BUSY,
    "failed": CallState.FAILED,
    "no-answer": CallState.NO_ANSWER,
    "canceled": CallState.HANGUP_BOT,
}
# REST answers that mean "that call is already over": not found, or not in progress.
_ALREADY_ENDED_CODES: Final = frozenset({20404, 21220})

# Twilio waits this long for a webhook answer; an unanswered TwiML window older than this is
# dead (its handler failed) and must not swallow verbs.
_WINDOW_TTL_S: Final = 15.0
# While Twilio is running TwiML that redirects straight back to us, verbs wait for that fetch
# instead of replacing the TwiML (which would cut off a <Say> mid-sentence). A fetch that has
# not come within this long is not coming; REST takes over.
_RETURN_TTL_S: Final = 60.0
# <Gather input="speech"> waits 5 s for speech to start unless told otherwise.
_GATHER_DEFAULT_TIMEOUT_MS: Final = 5000


class _Hook(enum.StrEnum):
    """Which of our URLs Twilio requested; carried in the ``hook`` query parameter."""

    ANSWER = "answer"  # the dial's Url: fetched when the callee picks up
    STATUS = "status"  # StatusCallback: call progress, answered with an empty <Response/>
    GATHER = "gather"  # a <Gather action>: the caller's speech (or silence)
    WAIT = "wait"  # a <Redirect> that keeps the call open while the bot has nothing to say
    VOICE = "voice"  # no hook: the number's voice URL, i.e. an inbound call


class _Tail(enum.Enum):
    """How a TwiML document we hand Twilio ends."""

    GATHER = "gather"  # listening: the Gather's action brings the caller's words back
    RETURN = "return"  # a Redirect straight back to us once the words are said
    PARK = "park"  # <Pause> then <Redirect>: waiting for the bot


@attrs.frozen
class _Say:
    text: str
    voice: str | None


@attrs.frozen
class _Gather:
    turn: str


@attrs.frozen
class _Hangup:
    pass


_Verb = _Say | _Gather | _Hangup


@attrs.define
class _Window:
    """One TwiML answer being prepared: verbs the service asks for while the webhook runs."""

    request: WebhookRequest
    call_sid: str
    call_id: str | None
    opened_at: float
    verbs: list[_Verb] = attrs.Factory(list)
    rejected: bool = False
    closed: bool = False


@attrs.frozen
class _Webhook:
    """A parsed Twilio request: form fields (first value of each) and our query parameters."""

    hook: _Hook
    call_sid: str
    call_id: str | None
    turn: str | None
    form: dict[str, str]


def twilio_voice(voice: str | None) -> str | None:
    """The ``<Say voice>`` for an OpenAI voice name; native names pass through, others None."""
    if not voice:
        return None
    mapped = OPENAI_TO_TWILIO_VOICE.get(voice.lower())
    if mapped is not None:
        return mapped
    if voice.startswith(_NATIVE_VOICE_PREFIXES):
        return voice
    return None


class TwilioTelephony:
    """Twilio Programmable Voice behind the ``TelephonyProvider`` port.

    Twilio drives a call by TwiML: the bot's words and listening are verbs in a TwiML document
    that Twilio fetches from our webhook (the dial's ``Url``, a ``<Gather action>``, a
    ``<Redirect>``) or that we push by updating the live call over REST. When ``speak`` /
    ``listen`` / ``hangup`` / ``reject`` are called while a TwiML-fetching webhook for the same
    call is being handled, the verbs go into that webhook's answer; otherwise the live call is
    updated. A call whose TwiML runs out ends, so while the bot waits the call is parked in
    ``<Pause>`` + ``<Redirect>``.

    Our call id travels as the ``callId`` query parameter of every URL we give Twilio (signed
    with the rest of the URL). Inbound calls arrive on the number's voice URL without it and
    are resolved by ``CallSid``.

    Args:
        account_sid: the Twilio account (``AC…``); also the REST user name.
        auth_token: REST password and webhook signing key.
        api_base_url: ``twilio.apiBaseUrl`` (``https://api.twilio.com``).
        public_url: the exact webhook URL Twilio calls (``publicUrl``).
        verifier: checks ``X-Twilio-Signature``.
        clock: time source.
        http: the REST client; one with sane timeouts is made when None.
        wait_pause_s: how long a parked call pauses between ``<Redirect>`` round trips. Long
            enough to ride out a gateway restart; updates interrupt it at once.
    """

    name = "twilio"
    signs_webhooks = True

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base_url: str,
        public_url: str,
        verifier: TwilioSignatureVerifier,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        wait_pause_s: int = 30,
    ) -> None:
        self.account_sid = account_sid
        self.public_url = public_url
        self.verifier = verifier
        self.clock = clock
        self.wait_pause_s = wait_pause_s
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._calls_url = f"{api_base_url.rstrip('/')}/{_API_VERSION}/Accounts/{account_sid}/Calls"
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        self._sink: EventSink | None = None
        self._windows: dict[str, _Window] = {}
        self._status_requests: dict[int, WebhookRequest] = {}
        self._pending: dict[str, list[_Verb]] = {}
        self._returning: dict[str, float] = {}
        self._listening: set[str] = set()
        self._gathering: set[str] = set()

    @classmethod
    def from_config(
        cls, config: AppConfig, clock: Clock, http: httpx.AsyncClient | None = None
    ) -> TwilioTelephony:
        """Build the adapter from validated settings (``twilio.*``, ``publicUrl``, security)."""
        voice = config.voice
        token = voice.twilio.auth_token or ""
        return cls(
            account_sid=voice.twilio.account_sid or "",
            auth_token=token,
            api_base_url=voice.twilio.api_base_url,
            public_url=voice.public_url or "",
            verifier=TwilioSignatureVerifier(token, url_trust_settings(voice)),
            clock=clock,
            http=http,
        )

    # ------------------------------------------------------------------ port: calls

    def bind(self, sink: EventSink) -> None:
        self._sink = sink

    async def dial(self, request: DialRequest) -> DialResult:
        form: list[tuple[str, str]] = [
            ("To", request.to_number),
            ("From", request.from_number),
            ("Url", self._url(_Hook.ANSWER, request.call_id)),
            ("Method", "POST"),
            ("StatusCallback", self._url(_Hook.STATUS, request.call_id)),
            ("StatusCallbackMethod", "POST"),
            # Twilio takes the events as a repeated field, one value each.
            *(
                ("StatusCallbackEvent", event)
                for event in ("initiated", "ringing", "answered", "completed")
            ),
            ("Timeout", str(min(max(math.ceil(request.ring_timeout_s), 1), 600))),
        ]
        body = await self._rest("POST", f"{self._calls_url}.json", form, "place the call")
        sid = body.get("sid")
        if not isinstance(sid, str) or not sid:
            raise TransientError("Twilio accepted the call but returned no call sid")
        # On answer Twilio fetches the dial's Url: verbs asked for before then wait for it.
        self._returning[sid] = time.monotonic()
        return DialResult(provider_call_id=sid)

    async def answer(self, call: Call) -> None:
        # An inbound call is answered by the TwiML our webhook returns; nothing to send.
        window = self._window_for(call)
        if window is not None:
            window.call_id = call.call_id

    async def reject(self, call: Call) -> None:
        window = self._window_for(call)
        if window is not None:
            window.call_id = call.call_id
            window.rejected = True
            self._forget(window.call_sid)
            return
        # Outside its first webhook an inbound call is already connected: hang it up.
        await self.hangup(call)

    async def speak(self, call: Call, text: str, voice: str | None) -> None:
        await self._add_verb(call, _Say(text, twilio_voice(voice)))

    async def listen(self, call: Call) -> None:
        sid = self._sid(call)
        self._listening.add(sid)
        await self._add_verb(call, _Gather(_turn_token()))

    async def hangup(self, call: Call) -> None:
        sid = call.provider_call_id
        if not sid:
            return  # never reached Twilio: nothing to hang up
        window = self._window_for(call)
        self._forget(sid)
        if window is not None:
            window.verbs.append(_Hangup())
            return
        try:
            await self._rest("POST", self._call_url(sid), [("Status", "completed")], "hang up")
        except _AlreadyEnded:
            return

    async def status(self, call: Call) -> CarrierStatus:
        sid = call.provider_call_id
        if not sid:
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail="no Twilio call sid")
        try:
            body = await self._rest("GET", self._call_url(sid), None, "read the call")
        except (VoiceCallError, _AlreadyEnded) as err:
            detail = err.detail if isinstance(err, VoiceCallError) else "Twilio has no such call"
            return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=detail)
        raw = body.get("status")
        if raw in _LIVE_STATUSES:
            return CarrierStatus(CarrierStatusKind.LIVE, detail=str(raw))
        if isinstance(raw, str) and raw in _END_STATES:
            return CarrierStatus(CarrierStatusKind.ENDED, end_state=_END_STATES[raw], detail=raw)
        return CarrierStatus(CarrierStatusKind.UNKNOWN, detail=f"unexpected status {raw!r}")

    # ------------------------------------------------------------------ port: webhooks

    def has_signature_headers(self, header_names: Iterable[str]) -> bool:
        return self.verifier.has_signature_headers(header_names)

    def verify_webhook(self, request: WebhookRequest) -> Verification:
        return self.verifier.verify(request)

    async def parse_webhook(self, request: WebhookRequest) -> Sequence[CallEvent]:
        hook = _read_webhook(request)
        if hook.hook is _Hook.STATUS:
            # Status callbacks are most of the traffic and always get the empty answer.
            self._status_requests[id(request)] = request
            if len(self._status_requests) > 1024:
                self._status_requests.clear()
            return self._status_events(hook)
        events = self._fetch_events(hook)
        sid = hook.call_sid
        window = _Window(
            request=request, call_sid=sid, call_id=hook.call_id, opened_at=time.monotonic()
        )
        # Twilio is fetching TwiML: verbs that were waiting for this fetch go into its answer.
        self._returning.pop(sid, None)
        self._gathering.discard(sid)
        window.verbs.extend(self._pending.pop(sid, []))
        self._windows[sid] = window
        return events

    def _fetch_events(self, hook: _Webhook) -> list[CallEvent]:
        sid = hook.call_sid
        form = hook.form
        key = f"twilio:{sid}"
        if hook.hook is _Hook.VOICE:
            if form.get("Direction", "inbound") != "inbound":
                raise CallerError("a Twilio voice request without our hook must be inbound")
            return [
                CallInitiated(
                    provider_call_id=sid,
                    direction=CallDirection.INBOUND,
                    from_number=form.get("From") or None,
                    to_number=form.get("To") or None,
                    dedupe_key=f"{key}:initiated",
                ),
                # Answering the voice request with TwiML is what picks the call up; a refused
                # call is already over when this applies, so then it changes nothing.
                CallAnswered(provider_call_id=sid, dedupe_key=f"{key}:answered"),
            ]
        if hook.hook is _Hook.ANSWER:
            return [
                CallAnswered(
                    call_id=hook.call_id, provider_call_id=sid, dedupe_key=f"{key}:answered"
                )
            ]
        if hook.hook is _Hook.GATHER:
            # Each <Gather> has its own turn token in its action URL, so a retry of the same
            # request dedupes while the same words said in a later turn do not.
            turn = hook.turn or "none"
            speech = form.get("SpeechResult", "").strip()
            if not speech:
                # actionOnEmptyResult: the caller said nothing; keep listening.
                self._listening.add(sid)
                return [
                    CallSilence(
                        call_id=hook.call_id,
                        provider_call_id=sid,
                        duration_ms=_GATHER_DEFAULT_TIMEOUT_MS,
                        dedupe_key=f"{key}:silence:{turn}",
                    )
                ]
            self._listening.discard(sid)
            return [
                CallSpeech(
                    call_id=hook.call_id,
                    provider_call_id=sid,
                    transcript=speech,
                    is_final=True,
                    confidence=_confidence(form.get("Confidence")),
                    dedupe_key=f"{key}:speech:{turn}",
                )
            ]
        return []  # _Hook.WAIT only keeps the call open

    def webhook_response(self, request: WebhookRequest, calls: Sequence[Call]) -> WebhookResponse:
        if self._status_requests.pop(id(request), None) is request:
            return _EMPTY_TWIML
        try:
            hook = _read_webhook(request)
        except CallerError:
            return _EMPTY_TWIML
        if hook.hook is _Hook.STATUS:
            return _EMPTY_TWIML
        window = self._windows.get(hook.call_sid)
        if window is None or window.request is not request:
            window = _Window(
                request=request,
                call_sid=hook.call_sid,
                call_id=hook.call_id,
                opened_at=time.monotonic(),
            )
        else:
            del self._windows[hook.call_sid]
        window.closed = True
        call = next((c for c in calls if c.provider_call_id == hook.call_sid), None)
        if call is not None and window.call_id is None:
            window.call_id = call.call_id
        ended = call is not None and not call.is_live
        return _twiml(self._render(window, ended=ended))

    async def aclose(self) -> None:
        self._windows.clear()
        self._pending.clear()
        self._returning.clear()
        if self._owns_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ TwiML

    async def _add_verb(self, call: Call, verb: _Verb) -> None:
        sid = self._sid(call)
        window = self._window_for(call)
        if window is not None:
            window.call_id = window.call_id or call.call_id
            if not (
                isinstance(verb, _Gather) and window.verbs and isinstance(window.verbs[-1], _Gather)
            ):
                window.verbs.append(verb)
            return
        if isinstance(verb, _Gather) and sid in self._gathering:
            # The TwiML Twilio runs already ends in a <Gather>; replacing it would cut off
            # whatever it says first.
            return
        returning_since = self._returning.get(sid)
        if returning_since is not None and time.monotonic() - returning_since < _RETURN_TTL_S:
            self._pending.setdefault(sid, []).append(verb)
            return
        self._returning.pop(sid, None)
        response = VoiceResponse()
        verbs = [*self._pending.pop(sid, []), verb]
        self._append_verbs(response, verbs, call.call_id)
        # Recorded before the request: Twilio can start the new TwiML and fetch from us
        # again before its REST answer arrives, and that fetch must win over this record.
        self._running(sid, self._append_tail(response, sid, call.call_id, verbs))
        try:
            await self._rest(
                "POST", self._call_url(sid), [("Twiml", str(response))], "update the call"
            )
        except _AlreadyEnded:
            self._running(sid, _Tail.PARK)
            raise CarrierRejected("Twilio: the call is no longer in progress") from None
        except VoiceCallError:
            self._running(sid, _Tail.PARK)
            raise

    def _render(self, window: _Window, *, ended: bool) -> VoiceResponse:
        response = VoiceResponse()
        sid = window.call_sid
        if window.rejected:
            response.reject(reason="rejected")
            return response
        verbs = window.verbs
        if any(isinstance(verb, _Hangup) for verb in verbs):
            verbs = verbs[: next(i for i, v in enumerate(verbs) if isinstance(v, _Hangup))]
            self._append_verbs(response, verbs, window.call_id)
            response.hangup()
            return response
        self._append_verbs(response, verbs, window.call_id)
        if ended:
            response.hangup()
            self._forget(sid)
            return response
        self._running(sid, self._append_tail(response, sid, window.call_id, verbs))
        return response

    def _append_verbs(
        self, response: VoiceResponse, verbs: Sequence[_Verb], call_id: str | None
    ) -> None:
        for verb in verbs:
            if isinstance(verb, _Say):
                if verb.voice:
                    response.say(verb.text, voice=verb.voice)
                else:
                    response.say(verb.text)
            elif isinstance(verb, _Gather):
                self._gather(response, verb.turn, call_id)

    def _append_tail(
        self, response: VoiceResponse, sid: str, call_id: str | None, verbs: Sequence[_Verb]
    ) -> _Tail:
        """Keep the call open after ``verbs``; says how the TwiML comes back to us."""
        if verbs and isinstance(verbs[-1], _Gather):
            return _Tail.GATHER  # the Gather's action is the way back
        if sid in self._listening:
            self._gather(response, _turn_token(), call_id)
            return _Tail.GATHER
        if verbs:
            # Come back as soon as the words are said, so later verbs do not cut them off.
            response.redirect(self._url(_Hook.WAIT, call_id, n=_turn_token()), method="POST")
            return _Tail.RETURN
        response.pause(length=self.wait_pause_s)
        response.redirect(self._url(_Hook.WAIT, call_id, n=_turn_token()), method="POST")
        return _Tail.PARK

    def _running(self, sid: str, tail: _Tail) -> None:
        """Remember how the TwiML Twilio now runs for ``sid`` ends."""
        self._returning.pop(sid, None)
        self._gathering.discard(sid)
        if tail is _Tail.RETURN:
            self._returning[sid] = time.monotonic()
        elif tail is _Tail.GATHER:
            self._gathering.add(sid)

    def _gather(self, response: VoiceResponse, turn: str, call_id: str | None) -> None:
        response.gather(
            input="speech",
            speech_timeout="auto",
            action_on_empty_result=True,
            action=self._url(_Hook.GATHER, call_id, turn=turn),
            method="POST",
        )

    def _url(self, hook: _Hook, call_id: str | None, **extra: str) -> str:
        """Our webhook URL with ``hook``, ``callId`` and extras; unique per use where the
        request would otherwise repeat byte for byte (the replay guard would swallow it)."""
        parts = urlsplit(self.public_url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if call_id:
            query.append(("callId", call_id))
        query.append(("hook", hook.value))
        query.extend(extra.items())
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _window_for(self, call: Call) -> _Window | None:
        sid = call.provider_call_id
        if not sid:
            return None
        window = self._windows.get(sid)
        if window is None or window.closed:
            return None
        if time.monotonic() - window.opened_at > _WINDOW_TTL_S:
            del self._windows[sid]
            return None
        return window

    def _forget(self, sid: str) -> None:
        self._pending.pop(sid, None)
        self._returning.pop(sid, None)
        self._listening.discard(sid)
        self._gathering.discard(sid)

    # ------------------------------------------------------------------ events

    def _status_events(self, hook: _Webhook) -> list[CallEvent]:
        sid = hook.call_sid
        raw = hook.form.get("CallStatus")
        if not raw:
            raise CallerError("Twilio status callback without CallStatus")
        key = f"twilio:{sid}"
        call_id = hook.call_id
        if raw in ("queued", "initiated"):
            # Never an inbound "initiated": only the voice request may create an inbound call.
            return [
                CallInitiated(call_id=call_id, provider_call_id=sid, dedupe_key=f"{key}:initiated")
            ]
        if raw == "ringing":
            return [CallRinging(call_id=call_id, provider_call_id=sid, dedupe_key=f"{key}:ringing")]
        if raw == "in-progress":
            return [
                CallAnswered(call_id=call_id, provider_call_id=sid, dedupe_key=f"{key}:answered")
            ]
        end_state = _END_STATES.get(raw)
        if end_state is None:
            log.warning("Twilio status callback with unknown CallStatus %r ignored", raw)
            return []
        self._forget(sid)
        code = hook.form.get("ErrorCode")
        detail = f"Twilio {raw}" + (f" (error {code})" if code else "")
        return [
            CallEnded(
                call_id=call_id,
                provider_call_id=sid,
                reason=end_state,
                detail=detail,
                dedupe_key=f"{key}:ended",
            )
        ]

    # ------------------------------------------------------------------ REST

    def _sid(self, call: Call) -> str:
        if not call.provider_call_id:
            raise CarrierRejected("Twilio: the call has no call sid yet")
        return call.provider_call_id

    def _call_url(self, sid: str) -> str:
        return f"{self._calls_url}/{quote(sid, safe='')}.json"

    async def _rest(
        self, method: str, url: str, form: list[tuple[str, str]] | None, what: str
    ) -> dict[str, Any]:
        try:
            headers = {"Accept": "application/json"}
            content: bytes | None = None
            if form is not None:
                # Encoded by hand: httpx takes repeats only from a dict of lists, which would
                # lose the order of the other fields.
                content = urlencode(form).encode()
                headers["Content-Type"] = _FORM_CONTENT_TYPE
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
                raise _AlreadyEnded()
            message = body.get("message") or response.reason_phrase
            raise CarrierRejected(
                f"Twilio refused to {what}: {message} (HTTP {response.status_code}"
                + (f", code {code})" if code else ")")
            )
        return body


class _AlreadyEnded(Exception):
    """Twilio says the call is gone (20404 / 404) or not in progress (21220)."""


def _turn_token() -> str:
    return uuid.uuid4().hex[:12]


def _confidence(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and 0.0 <= value <= 1.0 else None


def _twiml(response: VoiceResponse) -> WebhookResponse:
    return WebhookResponse(200, str(response).encode(), "text/xml")


_EMPTY_TWIML = _twiml(VoiceResponse())


def _read_webhook(request: WebhookRequest) -> _Webhook:
    """Parse one Twilio request; ``CallerError`` when it is not one."""
    try:
        body = request.body.decode("utf-8")
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body))
        query = dict(parse_qsl(request.query, keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise CallerError("the Twilio webhook body is not a form") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    sid = form.get("CallSid", "")
    if not sid or len(sid) > 64 or not sid.isalnum():
        raise CallerError("the Twilio webhook has no valid CallSid")
    raw_hook = query.get("hook")
    if raw_hook is None:
        # The number's own status callback has no hook of ours but says what it is.
        is_status = form.get("CallbackSource") == "call-progress-events"
        hook = _Hook.STATUS if is_status else _Hook.VOICE
    else:
        try:
            hook = _Hook(raw_hook)
        except ValueError:
            raise CallerError(f"unknown webhook hook {raw_hook!r}") from None
        if hook is _Hook.VOICE:
            raise CallerError("unknown webhook hook 'voice'")
    return _Webhook(
        hook=hook,
        call_sid=sid,
        call_id=query.get("callId") or None,
        turn=query.get("turn") or None,
        form=form,
    )
