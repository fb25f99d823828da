"""The model-backed responder, faked at the HTTP transport with respx."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from voicecall.adapters.agent.openai import OpenAIResponder, model_name
from voicecall.config import parse_config
from voicecall.container import build_container
from voicecall.domain.call import Call, CallDirection, CallMode, Speaker
from voicecall.domain.errors import TransientError, VoiceCallError

URL = "https://api.openai.com/v1/chat/completions"


def completion(text: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
    }


def inbound_call() -> Call:
    call = Call(
        call_id="c",
        provider="mock",
        direction=CallDirection.INBOUND,
        from_number="+15551230001",
        to_number="+15550100000",
        mode=CallMode.CONVERSATION,
        started_at=1.0,
    )
    call.add_transcript(Speaker.BOT, "Hello! How can I help you today?", 2.0)
    call.add_transcript(Speaker.USER, "When do you open?", 3.0)
    return call


@respx.mock
async def test_sends_prompt_and_transcript_and_returns_the_reply() -> None:
    route = respx.post(URL).mock(return_value=httpx.Response(200, json=completion(" At nine. ")))
    responder = OpenAIResponder("openai/gpt-4o-mini", "Be brief.", "sk-test")
    assert await responder.respond(inbound_call(), "When do you open?") == "At nine."
    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello! How can I help you today?"},
        {"role": "user", "content": "When do you open?"},
    ]
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test"
    await responder.aclose()


@respx.mock
@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(503, json={"error": {"message": "down"}}), TransientError),
        (httpx.Response(401, json={"error": {"message": "bad key"}}), VoiceCallError),
        (httpx.Response(200, json=completion("")), TransientError),
    ],
)
async def test_failures_become_voicecall_errors(answer: httpx.Response, error: type) -> None:
    respx.post(URL).mock(return_value=answer)
    responder = OpenAIResponder("gpt-4o-mini", "Be brief.", "sk-test")
    with pytest.raises(error):
        await responder.respond(inbound_call(), "When do you open?")
    await responder.aclose()


def test_model_names() -> None:
    assert model_name("openai/gpt-4o-mini") == "gpt-4o-mini"
    assert model_name("gpt-4o-mini") == "gpt-4o-mini"


def test_container_picks_the_responder_from_config() -> None:
    plain = parse_config({}, {})
    assert type(build_container(plain).responder()).__name__ == "RuleBasedResponder"
    with_model = parse_config(
        {"plugins": {"entries": {"voice-call": {"config": {"responseModel": "gpt-4o-mini"}}}}},
        {"OPENAI_API_KEY": "sk-env"},
    )
    assert isinstance(build_container(with_model).responder(), OpenAIResponder)
