"""Who may be dialled: outbound.allowTo / denyTo, the home country, the hourly/daily caps."""

from __future__ import annotations

import pytest

from voicecall.domain.policy import (
    DestinationRefused,
    DialLedger,
    DialRules,
    OutboundPolicy,
    country_code,
)

from .conftest import CALLEE, Rig, make_rig, make_settings


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("+15557654321", "+1"),
        ("+79161234567", "+7"),
        ("+447700900123", "+44"),
        ("+4915112345678", "+49"),
        ("+353871234567", "+353"),
        ("+8613812345678", "+86"),
        ("+85212345678", "+852"),
    ],
)
def test_country_code(number: str, code: str) -> None:
    assert country_code(number) == code


def test_premium_rate_is_denied_by_default_naming_the_rule() -> None:
    with pytest.raises(DestinationRefused) as refused:
        DialRules(home_country="+1").check("+19005551234")
    assert refused.value.rule == "outbound.denyTo"
    assert "outbound.denyTo" in refused.value.detail and "+1900" in refused.value.detail


def test_other_countries_need_allow_to() -> None:
    rules = DialRules(home_country="+1")
    rules.check("+15557654321")
    with pytest.raises(DestinationRefused) as refused:
        rules.check("+447700900123")
    assert refused.value.rule == "outbound.allowTo"
    DialRules(home_country="+1", allow_to=("+44",)).check("+447700900123")


def test_allow_to_is_the_only_thing_dialled_and_deny_to_still_wins() -> None:
    rules = DialRules(allow_to=("+1555765", "+19005550000"), home_country="+1")
    rules.check("+15557654321")
    with pytest.raises(DestinationRefused, match=r"not in outbound\.allowTo"):
        rules.check("+15551230001")
    with pytest.raises(DestinationRefused, match=r"outbound\.denyTo"):
        rules.check("+19005550000")


def test_ledger_is_a_sliding_window() -> None:
    ledger = DialLedger(per_hour=2, per_day=3)
    ledger.record(0.0)
    ledger.record(10.0)
    with pytest.raises(DestinationRefused) as refused:
        ledger.check(3599.0)
    assert refused.value.rule == "outbound.maxCallsPerHour"
    ledger.check(3600.5)  # the first left the hour
    ledger.record(3600.5)
    with pytest.raises(DestinationRefused, match="maxCallsPerDay is 3"):
        ledger.check(7300.0)
    ledger.check(86400.5)


async def _refusals(rig: Rig) -> list[dict[str, object]]:
    return [r.data for r in await rig.store.log_since(0) if r.type == "call.refused"]


async def test_a_destination_outside_allow_to_is_refused_and_on_the_feed() -> None:
    policy = OutboundPolicy(dial=DialRules(allow_to=("+1555123",), home_country="+1"))
    rig = await make_rig(settings=make_settings(outbound=policy))
    try:
        with pytest.raises(DestinationRefused) as refused:
            await rig.service.initiate(CALLEE, "hello", "notify")
        assert refused.value.code == "destination_refused"
        assert await rig.service.list_calls() == []
        assert await _refusals(rig) == [
            {"to": CALLEE, "rule": "outbound.allowTo", "error": refused.value.detail}
        ]
        assert rig.carrier.dials == []
    finally:
        await rig.service.stop()


async def test_a_destination_in_deny_to_is_refused() -> None:
    rig = await make_rig(settings=make_settings(outbound=OutboundPolicy(dial=DialRules())))
    try:
        with pytest.raises(DestinationRefused, match=r"outbound.denyTo \(\+1976\)"):
            await rig.service.initiate("+19765550100", "hello", "notify")
        assert [r["rule"] for r in await _refusals(rig)] == ["outbound.denyTo"]
    finally:
        await rig.service.stop()


async def test_the_hourly_cap_refuses_the_next_call_until_the_hour_has_passed() -> None:
    policy = OutboundPolicy(max_concurrent_calls=10, max_calls_per_hour=2)
    rig = await make_rig(settings=make_settings(outbound=policy))
    try:
        await rig.service.initiate(CALLEE, "one", "notify")
        await rig.service.initiate(CALLEE, "two", "notify")
        with pytest.raises(DestinationRefused) as refused:
            await rig.service.initiate(CALLEE, "three", "notify")
        assert refused.value.rule == "outbound.maxCallsPerHour"
        assert len(await rig.service.list_calls()) == 2
        assert [r["rule"] for r in await _refusals(rig)] == ["outbound.maxCallsPerHour"]
        await rig.clock.advance(3601)
        await rig.service.initiate(CALLEE, "three", "notify")
    finally:
        await rig.service.stop()


async def test_the_caps_count_calls_placed_before_a_restart() -> None:
    policy = OutboundPolicy(max_concurrent_calls=10, max_calls_per_day=1)
    rig = await make_rig(settings=make_settings(outbound=policy))
    await rig.service.initiate(CALLEE, "one", "notify")
    await rig.service.stop()
    settings = make_settings(outbound=policy)
    again = await make_rig(settings=settings, store=rig.store, clock=rig.clock)
    try:
        with pytest.raises(DestinationRefused, match="maxCallsPerDay"):
            await again.service.initiate(CALLEE, "two", "notify")
    finally:
        await again.service.stop()


def test_a_number_abroad_is_refused_saying_how_to_allow_it() -> None:
    with pytest.raises(DestinationRefused) as refused:
        DialRules(home_country="+1").check("+447700900123")
    assert str(refused.value) == (
        "+447700900123 is outside fromNumber's country code +1; "
        "name it in outbound.allowTo to dial it"
    )


def test_the_caps_name_themselves_and_a_call_leaves_the_window_exactly_on_time() -> None:
    hourly = DialLedger(per_hour=1)
    hourly.record(1000.0)
    with pytest.raises(DestinationRefused) as refused:
        hourly.check(4599.0)
    assert str(refused.value) == (
        "1 call(s) placed in the last hour, and outbound.maxCallsPerHour is 1"
    )
    hourly.check(4600.0)  # exactly an hour later
    daily = DialLedger(per_day=1)
    daily.record(1000.0)
    with pytest.raises(DestinationRefused) as refused:
        daily.check(87399.0)
    assert refused.value.rule == "outbound.maxCallsPerDay"
    assert str(refused.value) == (
        "1 call(s) placed in the last 24 hours, and outbound.maxCallsPerDay is 1"
    )
    daily.check(87400.0)  # exactly a day later
