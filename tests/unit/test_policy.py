"""Inbound and outbound policies, including withheld and malformed caller IDs."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from voicecall.domain.call import CallMode
from voicecall.domain.errors import CallerError, ConcurrencyLimitReached
from voicecall.domain.policy import InboundPolicy, InboundPolicyMode, OutboundPolicy, is_e164

ALLOWED = "+15551230001"


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("+15551230001", True),
        ("+12", True),
        ("+123456789012345", True),
        ("+1234567890123456", False),  # 16 digits
        ("+05551230001", False),
        ("15551230001", False),
        ("+1 555 123 0001", False),
        ("+1555123000a", False),
        ("+", False),
        ("", False),
        (None, False),
        (15551230001, False),
        ("+15551230001\n", False),
        (" +15551230001", False),
    ],
)
def test_is_e164(number: object, ok: bool) -> None:
    assert is_e164(number) is ok


ALLOWLIST = InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({ALLOWED}))


@pytest.mark.parametrize(
    ("policy", "caller", "accept"),
    [
        (InboundPolicy(InboundPolicyMode.DISABLED, frozenset({ALLOWED})), ALLOWED, False),
        (InboundPolicy(InboundPolicyMode.OPEN), "+15559999999", True),
        (InboundPolicy(InboundPolicyMode.OPEN), None, True),
        (ALLOWLIST, ALLOWED, True),
        (ALLOWLIST, "+15551230002", False),
        (ALLOWLIST, None, False),  # withheld
        (ALLOWLIST, "", False),
        (ALLOWLIST, "anonymous", False),
        (ALLOWLIST, "15551230001", False),  # missing +
        (ALLOWLIST, "+1555123000", False),  # prefix of an allowed number
        (ALLOWLIST, "+155512300011", False),  # allowed number plus a digit
        (ALLOWLIST, "+15551230001 ", False),
        (
            InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({"anonymous", ""})),
            "anonymous",
            False,
        ),
        (InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({"", "x"})), "", False),
    ],
)
def test_inbound_policy(policy: InboundPolicy, caller: str | None, accept: bool) -> None:
    decision = policy.decide(caller)
    assert decision.accept is accept
    assert decision.reason


def test_outbound_resolves_callee_and_mode() -> None:
    policy = OutboundPolicy(default_to=ALLOWED, default_mode=CallMode.CONVERSATION)
    assert policy.resolve_callee(None) == ALLOWED
    assert policy.resolve_callee("+15557654321") == "+15557654321"
    assert policy.resolve_mode(None) is CallMode.CONVERSATION
    assert policy.resolve_mode("notify") is CallMode.NOTIFY
    with pytest.raises(CallerError, match=r"E\.164"):
        policy.resolve_callee("555-1234")
    with pytest.raises(CallerError, match="mode"):
        policy.resolve_mode("shout")
    with pytest.raises(CallerError, match="toNumber"):
        OutboundPolicy().resolve_callee(None)


def test_outbound_capacity() -> None:
    policy = OutboundPolicy(max_concurrent_calls=2)
    policy.check_capacity([])
    policy.check_capacity(["a"])
    with pytest.raises(ConcurrencyLimitReached, match="maxConcurrentCalls is 2"):
        policy.check_capacity(["a", "b"])


# --------------------------------------------------------------------------- rules as properties

E164 = st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True)


@given(allowed=st.frozensets(E164, max_size=5), caller=E164)
def test_allowlist_accepts_exactly_the_listed_strings(allowed: frozenset[str], caller: str) -> None:
    decision = InboundPolicy(InboundPolicyMode.ALLOWLIST, allowed).decide(caller)
    assert decision.accept is (caller in allowed)


@given(allowed=E164, other=E164)
def test_allowlist_refuses_every_other_valid_number(allowed: str, other: str) -> None:
    assume(other != allowed)
    policy = InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({allowed}))
    assert policy.decide(allowed).accept is True
    assert policy.decide(other).accept is False


@given(
    allowed=st.from_regex(r"\+[1-9][0-9]{9,14}", fullmatch=True),
    country=st.from_regex(r"[1-9][0-9]{0,4}", fullmatch=True),
)
def test_allowlist_refuses_a_number_that_shares_only_the_last_digits(
    allowed: str, country: str
) -> None:
    # +445551230001 for +15551230001: the same national digits under another country code.
    for keep in range(1, 15):
        other = "+" + country + allowed[-keep:]
        if other == allowed or not is_e164(other):
            continue
        policy = InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({allowed}))
        assert policy.decide(other).accept is False, (allowed, other)


@given(allowed=E164, data=st.data())
def test_allowlist_refuses_near_misses_of_an_allowed_number(
    allowed: str, data: st.DataObject
) -> None:
    near = data.draw(
        st.sampled_from(
            [
                allowed[:-1],  # a prefix
                allowed + data.draw(st.sampled_from("0123456789")),  # one digit more
                allowed[1:],  # no "+"
                " " + allowed,
                allowed + "\n",
                allowed.replace("+", "00", 1),  # the international dialling prefix
                "+" + allowed[2:] + allowed[1],  # the same digits, rotated
            ]
        )
    )
    assume(near != allowed)
    policy = InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({allowed}))
    assert policy.decide(near).accept is False


def test_the_last_ten_digits_example_from_the_issue() -> None:
    policy = InboundPolicy(InboundPolicyMode.ALLOWLIST, frozenset({"+15551230001"}))
    assert policy.decide("+445551230001").accept is False
    assert policy.decide("+5551230001").accept is False


@pytest.mark.parametrize(
    ("policy", "caller", "reason"),
    [
        (
            InboundPolicy(InboundPolicyMode.DISABLED, frozenset({ALLOWED})),
            ALLOWED,
            "inbound calls are disabled (inboundPolicy: disabled)",
        ),
        (InboundPolicy(InboundPolicyMode.OPEN), None, "inbound policy is open"),
        (ALLOWLIST, None, "caller ID is withheld or not an E.164 number"),
        (ALLOWLIST, ALLOWED, "caller is in allowFrom"),
        (ALLOWLIST, "+15559990000", "caller is not in allowFrom"),
    ],
)
def test_inbound_decisions_say_why(policy: InboundPolicy, caller: str | None, reason: str) -> None:
    # The reason is what an operator reads in the call's endDetail and the event log.
    assert policy.decide(caller).reason == reason


def test_outbound_refusals_say_what_to_do() -> None:
    with pytest.raises(CallerError) as no_number:
        OutboundPolicy().resolve_callee(None)
    assert no_number.value.detail == "no number to call: pass 'to' or set toNumber in the config"
    assert OutboundPolicy(default_mode=CallMode.CONVERSATION).resolve_mode("") is (
        CallMode.CONVERSATION
    )
