from __future__ import annotations

import pytest

from voicecall.domain.json_input import InvalidJson, parse_json


def test_nesting_a_hundred_thousand_deep_is_invalid_not_a_crash() -> None:
    with pytest.raises(InvalidJson, match="nested deeper than 64"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)


def test_nesting_just_past_the_limit_is_refused_and_at_it_accepted() -> None:
    assert parse_json("[" * 64 + "]" * 64) is not None
    with pytest.raises(InvalidJson):
        parse_json("[" * 65 + "]" * 65)
    with pytest.raises(InvalidJson):
        parse_json('{"a": ' * 65 + "1" + "}" * 65)


def test_not_json_is_invalid_request() -> None:
    with pytest.raises(InvalidJson) as refused:
        parse_json(b"\xff{")
    assert refused.value.code == "invalid_request"
