"""Pairing (inboundPolicy "pairing"): the domain's rules as tables, the 0600 file store, and the
call service on the mock carrier: call, code heard, approve, call again, answered."""

from __future__ import annotations

import itertools
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from voicecall.adapters.store.memory import MemoryCallStore
from voicecall.adapters.store.pairing import FilePairingStore, MemoryPairingStore
from voicecall.config import load_config
from voicecall.container import build_container, call_settings
from voicecall.domain.call import CallState
from voicecall.domain.errors import CallerError
from voicecall.domain.pairing import (
    PairingBook,
    PairingCodeUnknown,
    PairingLimits,
    PairingRefused,
    draw_code,
    spoken_code,
)
from voicecall.domain.policy import InboundPolicy, InboundPolicyMode
from voicecall.services.events import EventFeed
from voicecall.services.pairing import PairingService
from voicecall.testing.clock import FakeClock

from .conftest import ALLOWED, Rig, make_rig, make_settings

UNKNOWN = "+15559990001"
OTHER = "+15559990002"


def counter(start: int = 100000) -> Callable[[], str]:
    numbers = itertools.count(start)
    return lambda: str(next(numbers))


# ---------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    ("mode", "caller", "accept", "pair", "reason"),
    [
        ("pairing", ALLOWED, True, False, "caller is in allowFrom"),
        ("pairing", UNKNOWN, False, True, "caller is not in allowFrom: pairing"),
        ("pairing", None, False, False, "caller ID is withheld or not an E.164 number"),
        ("pairing", "anonymous", False, False, "caller ID is withheld or not an E.164 number"),
        ("allowlist", UNKNOWN, False, False, "caller is not in allowFrom"),
        ("open", UNKNOWN, True, False, "inbound policy is open"),
        ("disabled", ALLOWED, False, False, "inbound calls are disabled (inboundPolicy: disabled)"),
    ],
)
def test_inbound_decisions(
    mode: str, caller: str | None, accept: bool, pair: bool, reason: str
) -> None:
    decision = InboundPolicy(InboundPolicyMode(mode), frozenset({ALLOWED})).decide(caller)
    assert (decision.accept, decision.pair, decision.reason) == (accept, pair, reason)


def test_a_pairing_config_builds_the_gateway(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    plugin = {"inboundPolicy": "pairing", "allowFrom": [ALLOWED], "store": str(tmp_path / "s")}
    path.write_text(json.dumps({"plugins": {"entries": {"voice-call": {"config": plugin}}}}))
    config = load_config(str(path), {})
    assert call_settings(config).inbound.mode is InboundPolicyMode.PAIRING
    service = build_container(config).call_service()
    assert isinstance(service.pairing, PairingService)


# ---------------------------------------------------------------- the rules

LIMITS = PairingLimits()  # one hour, 3 per caller, 50 in all, 60 s apart, 10 a day


def _issue_at(book: PairingBook, number: str, times: list[float]) -> None:
    draw = counter()
    for at in times:
        book.expire(at)
        book.issue(number, at, LIMITS, draw=draw)


@pytest.mark.parametrize(
    ("name", "earlier", "now", "rule"),
    [
        ("first code", [], 0.0, None),
        ("second after a minute", [0.0], 60.0, None),
        ("second too soon", [0.0], 59.0, "rate"),
        ("third pending", [0.0, 60.0], 120.0, None),
        ("fourth pending refused", [0.0, 60.0, 120.0], 180.0, "per_caller"),
        ("fourth once the first expired", [0.0, 60.0, 120.0], 3600.0, None),
        ("eleventh in a day", [i * 3600.0 for i in range(10)], 36000.0, "daily"),
        ("again a day later", [i * 3600.0 for i in range(10)], 86400.0, None),
    ],
)
def test_issue_limits_for_one_caller(
    name: str, earlier: list[float], now: float, rule: str | None
) -> None:
    book = PairingBook()
    _issue_at(book, UNKNOWN, earlier)
    book.expire(now)
    if rule is None:
        request = book.issue(UNKNOWN, now, LIMITS, draw=lambda: "424242")
        assert (request.number, request.issued_at, request.expires_at) == (
            UNKNOWN,
            now,
            now + 3600,
        )
    else:
        with pytest.raises(PairingRefused) as refused:
            book.issue(UNKNOWN, now, LIMITS, draw=lambda: "424242")
        assert refused.value.rule == rule


def test_at_most_fifty_pending_in_all() -> None:
    book = PairingBook()
    draw = counter()
    for n in range(50):
        book.issue(f"+1555000{n:04d}", 0.0, LIMITS, draw=draw)
    with pytest.raises(PairingRefused, match="50 pairing codes are pending") as refused:
        book.issue(UNKNOWN, 1.0, LIMITS, draw=draw)
    assert refused.value.rule == "total"
    assert len(book.expire(3600.0)) == 50
    book.issue(UNKNOWN, 3600.0, LIMITS, draw=draw)


@pytest.mark.parametrize(
    ("decide_at", "expected"),
    [(0.0, "ok"), (3599.9, "ok"), (3600.0, "unknown"), (7200.0, "unknown")],
)
@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_codes_expire_after_an_hour(decide_at: float, expected: str, verb: str) -> None:
    book = PairingBook()
    request = book.issue(UNKNOWN, 0.0, LIMITS, draw=lambda: "123456")
    decide = getattr(book, verb)
    if expected == "ok":
        assert decide("123456", decide_at) == request
        assert book.is_approved(UNKNOWN) is (verb == "approve")
    else:
        with pytest.raises(PairingCodeUnknown, match="123456"):
            decide("123456", decide_at)
        assert not book.is_approved(UNKNOWN)


@pytest.mark.parametrize(
    ("first", "second"),
    [("approve", "approve"), ("approve", "deny"), ("deny", "approve"), ("deny", "deny")],
)
def test_codes_are_single_use(first: str, second: str) -> None:
    book = PairingBook()
    book.issue(UNKNOWN, 0.0, LIMITS, draw=lambda: "123456")
    getattr(book, first)("123456", 1.0)
    with pytest.raises(PairingCodeUnknown):
        getattr(book, second)("123456", 2.0)


def test_a_decision_settles_every_pending_code_of_that_caller_only() -> None:
    book = PairingBook()
    draw = counter()
    mine = [book.issue(UNKNOWN, at, LIMITS, draw=draw) for at in (0.0, 60.0)]
    theirs = book.issue(OTHER, 60.0, LIMITS, draw=draw)
    book.approve(mine[1].code, 100.0)
    assert book.pending == [theirs]
    assert book.is_approved(UNKNOWN) and not book.is_approved(OTHER)
    book.deny(theirs.code, 101.0)
    assert book.pending == [] and not book.is_approved(OTHER)
    assert book.revoke(UNKNOWN) is not None and not book.is_approved(UNKNOWN)
    assert book.revoke(UNKNOWN) is None


def test_a_code_in_use_is_never_issued_twice() -> None:
    book = PairingBook()
    draws = iter(["111111", "111111", "111111", "222222"])
    book.issue(UNKNOWN, 0.0, LIMITS, draw=lambda: next(draws))
    assert book.issue(OTHER, 0.0, LIMITS, draw=lambda: next(draws)).code == "222222"


def test_codes_are_six_digits_read_slowly_twice() -> None:
    codes = {draw_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(codes) > 150  # random, not a counter
    spoken = spoken_code("012345")
    assert spoken.count("0, 1, 2, 3, 4, 5") == 2
    assert "012345" not in spoken


# ---------------------------------------------------------------- the store


async def test_the_file_store_keeps_the_book_0600_and_round_trips(tmp_path: Path) -> None:
    store = FilePairingStore(tmp_path / "store")
    assert await store.load() == PairingBook()
    book = PairingBook()
    book.issue(UNKNOWN, 10.0, LIMITS, draw=lambda: "654321", call_id="c1")
    book.issue(OTHER, 10.0, LIMITS, draw=lambda: "111111")
    book.approve("111111", 11.0)
    await store.save(book)
    assert await FilePairingStore(tmp_path / "store").load() == book
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["pairing.json"]


async def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    store = FilePairingStore(tmp_path)
    store.path.write_text('{"pending": [{"code": "1"}]}')
    with pytest.raises(ValueError, match=r"pairing\.json is damaged"):
        await store.load()
    store.path.write_text("not json")
    with pytest.raises(ValueError, match="is not JSON"):
        await store.load()


# ---------------------------------------------------------------- on the mock carrier


async def pairing_rig(**limits: float) -> tuple[Rig, PairingService]:
    rig = await make_rig(
        settings=make_settings(
            inbound=InboundPolicy(InboundPolicyMode.PAIRING, frozenset({ALLOWED}))
        )
    )
    pairing = PairingService(
        MemoryPairingStore(),
        rig.clock,
        rig.feed,
        PairingLimits(**limits),  # type: ignore[arg-type]
        draw=counter(314159),
    )
    rig.service.pairing = pairing
    return rig, pairing


async def feed_types(rig: Rig) -> list[str]:
    return [r.type for r in await rig.store.log_since(0) if r.type.startswith("pairing.")]


async def test_unknown_caller_hears_a_code_then_approved_is_answered() -> None:
    rig, pairing = await pairing_rig()
    try:
        [first] = await rig.service.apply_events([rig.carrier.simulate_inbound(UNKNOWN, None)])
        assert first.is_live and first.end_detail is None
        await rig.clock.advance(0)  # the carrier confirms the answer
        await rig.clock.advance(30)  # the code is read twice, then the notify hold
        done = await rig.service.get(first.call_id)
        assert done is not None and done.state is CallState.COMPLETED
        heard = rig.carrier.heard(done.provider_call_id or "")
        assert heard == [spoken_code("314159")]
        assert heard[0].count("3, 1, 4, 1, 5, 9") == 2
        # The caller's words on the line reached no agent: nobody answered them.
        assert [t.speaker.value for t in done.transcript] == ["bot"]

        listing = await pairing.listing()
        assert [(r["code"], r["from"], r["callId"]) for r in listing["pending"]] == [
            ("314159", UNKNOWN, first.call_id)
        ]
        approved = await pairing.approve("314 159")
        assert approved.number == UNKNOWN
        assert (await pairing.listing())["pending"] == []

        [second] = await rig.service.apply_events([rig.carrier.simulate_inbound(UNKNOWN, None)])
        await rig.clock.advance(0)
        await rig.clock.advance(2.5)
        live = await rig.service.get(second.call_id)
        assert live is not None and live.is_live
        assert rig.carrier.heard(live.provider_call_id or "")[0] == (
            "Hello! How can I help you today?"
        )
        assert await feed_types(rig) == ["pairing.issued", "pairing.approved"]
        [issued] = [r for r in await rig.store.log_since(0) if r.type == "pairing.issued"]
        assert issued.call_id == first.call_id and issued.data["code"] == "314159"
    finally:
        await rig.service.stop()


async def test_allow_from_is_answered_without_a_code_and_withheld_is_rejected() -> None:
    rig, pairing = await pairing_rig()
    try:
        [call] = await rig.service.apply_events([rig.carrier.simulate_inbound(ALLOWED, None)])
        await rig.clock.advance(0)
        await rig.clock.advance(2.5)
        assert rig.carrier.heard(call.provider_call_id or "")[0].startswith("Hello!")
        await rig.service.end(call.call_id)
        [hidden] = await rig.service.apply_events([rig.carrier.simulate_inbound(None, None)])
        assert hidden.state is CallState.HANGUP_BOT
        assert (await pairing.listing())["pending"] == []
        assert await feed_types(rig) == []
    finally:
        await rig.service.stop()


async def test_a_caller_over_its_limit_is_refused_and_denied_stays_out() -> None:
    rig, pairing = await pairing_rig(min_interval_s=0.0)
    try:
        for _ in range(3):
            await rig.service.apply_events([rig.carrier.simulate_inbound(UNKNOWN, None)])
            await rig.clock.advance(0)
            await rig.clock.advance(30)
        [refused] = await rig.service.apply_events([rig.carrier.simulate_inbound(UNKNOWN, None)])
        assert refused.state is CallState.HANGUP_BOT
        assert refused.end_detail == (
            f"rejected: pairing refused: {UNKNOWN} already has 3 pending pairing codes (at most 3)"
        )
        assert rig.carrier.heard(refused.provider_call_id or "") == []
        await pairing.deny("314160")  # one of its codes: all three go
        assert (await pairing.listing())["pending"] == []
        with pytest.raises(PairingCodeUnknown):
            await pairing.approve("314159")
        assert not await pairing.is_approved(UNKNOWN)
        assert await feed_types(rig) == ["pairing.issued"] * 3 + [
            "pairing.refused",
            "pairing.denied",
        ]
    finally:
        await rig.service.stop()


async def test_expired_codes_are_reported_once_and_cannot_be_approved() -> None:
    rig, pairing = await pairing_rig()
    try:
        await rig.service.apply_events([rig.carrier.simulate_inbound(UNKNOWN, None)])
        await rig.clock.advance(3600)
        assert (await pairing.listing())["pending"] == []
        assert (await pairing.listing())["pending"] == []
        with pytest.raises(PairingCodeUnknown):
            await pairing.approve("314159")
        assert await feed_types(rig) == ["pairing.issued", "pairing.expired"]
    finally:
        await rig.service.stop()


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "", None, 123456])
async def test_a_malformed_code_is_a_clear_error(code: object) -> None:
    store = MemoryCallStore()
    pairing = PairingService(MemoryPairingStore(), FakeClock(), EventFeed(store))
    for verb in (pairing.approve, pairing.deny):
        with pytest.raises(CallerError, match="a pairing code is six digits"):
            await verb(code)
    with pytest.raises(CallerError, match=r"E\.164"):
        await pairing.revoke("555")
    assert await store.log_since(0) == []


# ---------------------------------------------------------------- the rules, on a real clock

T0 = 1_764_000_000.0  # a wall-clock time: the rules hold far from zero too


def test_the_caller_hears_why_then_the_code_then_what_to_do() -> None:
    spoken = spoken_code("123")
    assert spoken == (
        "This number is not yet allowed to call. "
        "Your pairing code is: 1, 2, 3. "
        "Again, your pairing code is: 1, 2, 3. "
        "Give it to the operator to be let in. Goodbye."
    )


def test_an_unknown_code_names_itself_and_where_to_look() -> None:
    book = PairingBook()
    with pytest.raises(PairingCodeUnknown) as unknown:
        book.approve("999999", T0)
    assert unknown.value.pairing_code == "999999"
    assert str(unknown.value) == (
        "no pending pairing request has code '999999' "
        "(it may have expired or been decided already; see 'voicecall pairing list')"
    )


def test_an_approval_remembers_which_code_let_the_number_in() -> None:
    book = PairingBook()
    book.issue(UNKNOWN, T0, LIMITS, draw=lambda: "123456")
    book.approve("123456", T0 + 5)
    approved = book.approved[UNKNOWN]
    assert (approved.number, approved.approved_at, approved.code) == (UNKNOWN, T0 + 5, "123456")


def test_a_refusal_for_asking_too_soon_says_how_long_ago_and_how_long_to_wait() -> None:
    book = PairingBook()
    book.issue(UNKNOWN, T0, LIMITS, draw=lambda: "123456")
    book.expire(T0 + 20)
    with pytest.raises(PairingRefused) as refused:
        book.issue(UNKNOWN, T0 + 20, LIMITS, draw=lambda: "654321")
    assert refused.value.rule == "rate"
    assert str(refused.value) == (
        f"{UNKNOWN} was given a pairing code 20 s ago; it may ask again in 40 s"
    )


def test_the_daily_limit_counts_the_last_24_hours_of_a_real_clock() -> None:
    book = PairingBook()
    many = PairingLimits(per_caller=100)  # only the daily limit can refuse here
    draw = counter()
    for i in range(10):
        book.issue(UNKNOWN, T0 + i * 3600.0, many, draw=draw)
    with pytest.raises(PairingRefused) as refused:
        book.issue(UNKNOWN, T0 + 36000.0, many, draw=draw)
    assert refused.value.rule == "daily"
    assert str(refused.value) == (
        f"{UNKNOWN} was given 10 pairing codes in the last 24 hours (at most 10)"
    )
    # Without expire(): the first code, exactly a day old, no longer counts.
    request = book.issue(UNKNOWN, T0 + 86400.0, many, draw=draw)
    assert request.issued_at == T0 + 86400.0


def test_a_code_too_soon_is_refused_on_a_real_clock() -> None:
    book = PairingBook()
    book.issue(UNKNOWN, T0, LIMITS, draw=lambda: "123456")
    with pytest.raises(PairingRefused) as refused:
        book.issue(UNKNOWN, T0 + 59, LIMITS, draw=lambda: "654321")
    assert refused.value.rule == "rate"


def test_expire_forgets_issue_times_a_day_old_and_keeps_younger_ones() -> None:
    book = PairingBook()
    draw = counter()
    book.issue(UNKNOWN, T0, LIMITS, draw=draw)
    book.issue(OTHER, T0 + 10, LIMITS, draw=draw)
    book.expire(T0 + 20)
    assert book.issued == {UNKNOWN: [T0], OTHER: [T0 + 10]}
    with pytest.raises(PairingRefused, match="ago"):
        book.issue(UNKNOWN, T0 + 30, LIMITS, draw=draw)
    book.expire(T0 + 86400.0)  # exactly a day after the first: forgotten
    assert book.issued == {OTHER: [T0 + 10]}


def test_a_draw_that_keeps_colliding_is_given_up_after_a_hundred_tries() -> None:
    book = PairingBook()
    book.issue(UNKNOWN, T0, LIMITS, draw=lambda: "111111")
    draws: list[str] = ["111111"] * 101 + ["222222"]
    calls = iter(draws)
    with pytest.raises(RuntimeError, match=r"^could not draw an unused pairing code$"):
        book.issue(OTHER, T0, LIMITS, draw=lambda: next(calls))
    assert next(calls) == "222222"  # 101 draws: the first and a hundred more
    assert [r.code for r in book.pending] == ["111111"]
