from __future__ import annotations

from typing import Any

import pytest

from voicecall.adapters.telephony.mock_stream import MockStreamDialect
from voicecall.adapters.telephony.plivo.stream import PlivoStreamDialect
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


@pytest.mark.parametrize("dialect", [MockStreamDialect, PlivoStreamDialect])
def test_stream_dialects_refuse_deep_json_as_not_json(dialect: type[Any]) -> None:
    with pytest.raises(ValueError, match="not JSON"):
        dialect().parse("[" * 100_000 + "]" * 100_000)


def test_a_document_just_past_the_limit_says_how_deep_is_allowed() -> None:
    with pytest.raises(InvalidJson) as refused:
        parse_json("[" * 65 + "]" * 65)
    assert refused.value.detail == "JSON nested deeper than 64 levels"


@pytest.mark.parametrize(
    "document",
    [
        "[" + "[" * 64 + "]" * 64 + ", 1]",  # a scalar after the deep branch
        "[1, " + "[" * 64 + "]" * 64 + ', "x", null]',
        '{"deep": ' + "[" * 64 + "]" * 64 + ', "flat": 1}',
    ],
)
def test_depth_is_checked_in_every_branch_past_a_scalar(document: str) -> None:
    with pytest.raises(InvalidJson, match="nested deeper than 64"):
        parse_json(document)
