"""The public webhook address (SPEC §2, §4): subscribers, and why outbound calls are refused.

The refusal text is what the agent or the CLI user reads, so each state's text is pinned.
"""

from __future__ import annotations

import pytest

from voicecall.domain.exposure import NO_PUBLIC_URL, NotReachable, PublicAddress, Reachability


def address() -> PublicAddress:
    return PublicAddress(webhook_path="/voice/webhook")


def refusal(addr: PublicAddress) -> str:
    with pytest.raises(NotReachable) as caught:
        addr.check_outbound()
    assert caught.value.code == "not_reachable"
    return caught.value.detail


def test_a_late_subscriber_is_told_the_known_url_at_once() -> None:
    addr = PublicAddress.static("https://calls.example.com/voice/webhook", webhook_path="/w")
    told: list[str] = []
    addr.subscribe(told.append)
    assert told == ["https://calls.example.com/voice/webhook"]


def test_an_early_subscriber_is_told_each_adopted_url() -> None:
    addr, told = address(), []
    addr.subscribe(told.append)
    assert told == []
    addr.adopt_base("https://a.example")
    assert told == ["https://a.example/voice/webhook"]


def test_no_url_at_all() -> None:
    assert refusal(address()) == NO_PUBLIC_URL


def test_a_pending_tunnel_says_to_try_again() -> None:
    addr = address()
    addr.state = Reachability.PENDING
    assert refusal(addr) == ("the tunnel has not reported its public URL yet; try again shortly")


def test_a_dropped_tunnel_says_why_and_that_it_is_coming_back() -> None:
    addr = address()
    addr.adopt_base("https://a.example")
    addr.drop("connection reset")
    assert refusal(addr) == (
        "the tunnel is down (connection reset); it is being re-established, and new "
        "outbound calls are refused until it is back"
    )


def test_a_changed_url_says_how_to_keep_one() -> None:
    addr = address()
    addr.adopt_base("https://a.example")
    assert addr.adopt_base("https://b.example") is True
    assert refusal(addr) == (
        "the tunnel's public URL changed to https://b.example/voice/webhook; new outbound "
        "calls wait until it has settled (set tunnel.ngrokDomain for a URL that survives "
        "reconnects)"
    )


def test_a_tunnel_that_comes_back_clears_the_drop_reason() -> None:
    addr = address()
    addr.adopt_base("https://a.example")
    addr.drop("connection reset")
    assert addr.detail == "connection reset"
    assert addr.adopt_base("https://a.example") is False
    assert addr.state is Reachability.UP
    assert addr.detail == ""
    addr.check_outbound()
