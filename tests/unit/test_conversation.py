"""The agent's side of a call as values (domain/conversation): tool arguments, the token
estimate, the transcript as chat turns, the memory budget and the phone system prompt."""

from __future__ import annotations

import pytest

from voicecall.domain.call import Call, CallDirection, CallMode, Speaker
from voicecall.domain.conversation import (
    ChatMessage,
    Role,
    ToolCall,
    ToolSpec,
    conversation_messages,
    estimate_tokens,
    fit_budget,
    parse_arguments,
    phone_system_prompt,
    time_of_day,
)

TRANSFER = ToolSpec(
    "transfer",
    "Transfer the call to a person.",
    {
        "type": "object",
        "properties": {"to": {"type": "string"}, "attempts": {"type": "integer"}},
        "required": ["to"],
    },
)
NO_REQUIRED = ToolSpec(
    "end_call",
    "End the call.",
    {"type": "object", "properties": {"reason": {"type": "string"}}},
)
NO_PROPERTIES = ToolSpec("hold", "Hold.", {"type": "object"})


def _args(arguments: str, spec: ToolSpec = TRANSFER) -> dict[str, object]:
    return parse_arguments(ToolCall("call-1", spec.name, arguments), spec)


# ------------------------------------------------------------------ parse_arguments


def test_empty_arguments_are_an_empty_object() -> None:
    assert _args("", NO_REQUIRED) == {}
    assert _args("", NO_PROPERTIES) == {}


def test_good_arguments_are_returned_as_written() -> None:
    assert _args('{"to": "+15550001111"}') == {"to": "+15550001111"}
    # Only string-typed properties must be non-empty strings; others pass as given.
    assert _args('{"to": "+15550001111", "attempts": 2}') == {"to": "+15550001111", "attempts": 2}
    assert _args('{"attempts": 0, "to": "x"}') == {"attempts": 0, "to": "x"}
    # A spec that requires nothing takes an object without the optional argument.
    assert _args('{"reason": "done"}', NO_REQUIRED) == {"reason": "done"}
    assert _args("{}", NO_REQUIRED) == {}


# The refusal's words go back to the model as the tool's result ("refused: ..."), so they are
# what it reads to correct its call.
@pytest.mark.parametrize(
    ("arguments", "spec", "message"),
    [
        ("{not json", TRANSFER, "the arguments are not valid JSON"),
        ('{"to": ', TRANSFER, "the arguments are not valid JSON"),
        ('["+15550001111"]', TRANSFER, "the arguments must be a JSON object"),
        ('"+15550001111"', TRANSFER, "the arguments must be a JSON object"),
        ("{}", TRANSFER, "missing argument 'to'"),
        ('{"attempts": 1}', TRANSFER, "missing argument 'to'"),
        ('{"to": "+15550001111", "why": "asked"}', TRANSFER, "unknown argument 'why'"),
        ('{"reason": "x", "extra": 1}', NO_REQUIRED, "unknown argument 'extra'"),
        ('{"anything": 1}', NO_PROPERTIES, "unknown argument 'anything'"),
        ('{"to": 15550001111}', TRANSFER, "argument 'to' must be a non-empty string"),
        ('{"to": null}', TRANSFER, "argument 'to' must be a non-empty string"),
        ('{"to": ""}', TRANSFER, "argument 'to' must be a non-empty string"),
        ('{"to": "   "}', TRANSFER, "argument 'to' must be a non-empty string"),
        ('{"reason": ["a"]}', NO_REQUIRED, "argument 'reason' must be a non-empty string"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason_the_model_can_read(
    arguments: str, spec: ToolSpec, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        _args(arguments, spec)
    assert str(caught.value) == message


# ------------------------------------------------------------------ estimate_tokens


def test_a_message_costs_a_quarter_token_a_character_plus_four() -> None:
    assert estimate_tokens(ChatMessage(Role.USER, "")) == 4
    assert estimate_tokens(ChatMessage(Role.USER, "abc")) == 4
    assert estimate_tokens(ChatMessage(Role.USER, "abcd")) == 5
    assert estimate_tokens(ChatMessage(Role.USER, "abcde")) == 5
    assert estimate_tokens(ChatMessage(Role.USER, "x" * 40)) == 14


def test_tool_calls_count_their_names_and_arguments() -> None:
    calls = (ToolCall("c1", "ab", "cd"), ToolCall("c2", "ef", "gh"))
    # Eight characters of names and arguments, nothing between them: 8 // 4 + 4.
    assert estimate_tokens(ChatMessage(Role.ASSISTANT, "", tool_calls=calls)) == 6
    assert estimate_tokens(ChatMessage(Role.ASSISTANT, "abcd", tool_calls=calls)) == 7


# ------------------------------------------------------------------ conversation_messages


def _call(direction: CallDirection, from_number: str | None, to_number: str | None) -> Call:
    return Call(
        call_id="call-1",
        provider="mock",
        direction=direction,
        from_number=from_number,
        to_number=to_number,
        mode=CallMode.CONVERSATION,
        started_at=1000.0,
    )


def test_the_transcript_becomes_turns_in_order() -> None:
    call = _call(CallDirection.INBOUND, "+15550001111", "+15550002222")
    call.add_transcript(Speaker.BOT, "Hello, front desk.", 1.0)
    call.add_transcript(Speaker.USER, "I need a table.", 2.0)
    call.add_transcript(Speaker.BOT, "For how many people and at what", 3.0, cut=True)
    call.add_transcript(Speaker.USER, "Two, at seven.", 4.0)
    call.add_transcript(Speaker.SYSTEM, "tool end_call({}) -> ok", 5.0)
    assert conversation_messages(call) == [
        ChatMessage(Role.ASSISTANT, "Hello, front desk."),
        ChatMessage(Role.USER, "I need a table."),
        ChatMessage(
            Role.ASSISTANT, "For how many people and at what [the caller interrupted here]"
        ),
        ChatMessage(Role.USER, "Two, at seven."),
        ChatMessage(Role.SYSTEM, "tool end_call({}) -> ok"),
    ]


def test_a_call_with_no_transcript_has_no_turns() -> None:
    assert conversation_messages(_call(CallDirection.OUTBOUND, None, "+15550001111")) == []


# ------------------------------------------------------------------ fit_budget

SYSTEM = ChatMessage(Role.SYSTEM, "Be brief.")  # 6 tokens
BOOKING = [
    ChatMessage(Role.USER, "I need a table"),  # 7
    ChatMessage(Role.ASSISTANT, "For how many?"),  # 7
    ChatMessage(Role.USER, "Two people"),  # 6
    ChatMessage(Role.ASSISTANT, "At what time?"),  # 7
    ChatMessage(Role.USER, "Seven tonight"),  # 7
    ChatMessage(Role.ASSISTANT, "Booked for seven."),  # 8
]  # 42 tokens in all
NOTE_HEAD = "Earlier in this call ({} older messages left out), the caller said: "


def _total(messages: list[ChatMessage]) -> int:
    return sum(map(estimate_tokens, messages))


def test_everything_is_kept_when_it_fits_the_budget_exactly() -> None:
    assert fit_budget(SYSTEM, BOOKING, 48) == [SYSTEM, *BOOKING]
    assert fit_budget(SYSTEM, BOOKING, 1000) == [SYSTEM, *BOOKING]
    assert fit_budget(SYSTEM, [], 10) == [SYSTEM]


def test_the_system_prompt_counts_against_the_budget() -> None:
    # The turns alone (42) fit 45; with the system prompt (6) they do not.
    fitted = fit_budget(SYSTEM, BOOKING, 45)
    assert fitted[0] == SYSTEM
    assert fitted[1].role is Role.SYSTEM and fitted[1].content.startswith("Earlier in this call")
    assert fitted[2:] == BOOKING[-1:]
    assert _total(fitted) == 45


def test_the_oldest_turns_go_first_when_the_note_needs_room() -> None:
    # At 45 the note, which grows with each turn it speaks for, leaves room for the latest.
    assert fit_budget(SYSTEM, BOOKING, 45)[2:] == BOOKING[5:]
    assert fit_budget(SYSTEM, BOOKING, 44)[2:] == []


def test_the_note_speaks_for_every_turn_dropped_to_make_room_for_it() -> None:
    # Regression: turns dropped to fit the note itself were neither counted nor summarised.
    fitted = fit_budget(SYSTEM, BOOKING, 45)
    kept = len(fitted) - 2
    note = fitted[1].content
    assert note.startswith(NOTE_HEAD.format(len(BOOKING) - kept))
    assert note.endswith("need a table; Two people; Seven tonight")


LONG_LINE = ChatMessage(Role.ASSISTANT, "Let me read you the whole menu. " * 6)  # 52 tokens


def test_the_note_says_what_the_caller_said_in_the_dropped_turns() -> None:
    turns = [BOOKING[0], BOOKING[2], LONG_LINE, *BOOKING[3:]]
    fitted = fit_budget(SYSTEM, turns, 79)
    assert fitted == [
        SYSTEM,
        ChatMessage(Role.SYSTEM, NOTE_HEAD.format(3) + "I need a table; Two people"),
        *BOOKING[3:],
    ]
    assert _total(fitted) <= 79


def test_the_note_has_nothing_of_note_when_the_caller_said_nothing_dropped() -> None:
    fitted = fit_budget(SYSTEM, [LONG_LINE, *BOOKING], 80)
    assert fitted == [
        SYSTEM,
        ChatMessage(Role.SYSTEM, NOTE_HEAD.format(1) + "nothing of note"),
        *BOOKING,
    ]


def _dropping(first_words: str, budget: int) -> str:
    """The note's text when ``first_words`` (a caller's turn) is dropped, and the long turn
    after it too, to make room for the note."""
    # The latest turn leaves four tokens of the budget: too few for the caller's words, and
    # too few for the note, so it goes as well.
    later = [ChatMessage(Role.ASSISTANT, "y" * (4 * (budget - 14)))]
    fitted = fit_budget(SYSTEM, [ChatMessage(Role.USER, first_words), *later], budget)
    assert fitted[1].role is Role.SYSTEM
    return fitted[1].content


def test_the_note_keeps_at_most_an_eighth_of_the_budget_of_the_callers_words() -> None:
    head = NOTE_HEAD.format(2)
    # Small budgets allow 40 characters.
    forty = "".join(chr(ord("a") + n % 26) for n in range(40))
    assert _dropping(forty, 60) == head + forty
    assert _dropping("Z" + forty, 60) == head + "…" + forty
    assert _dropping("YZ" + forty, 60) == head + "…" + forty
    # At 200 tokens, an eighth is 100 characters (200 * 4 // 8).
    ninety_five = "w" * 55 + forty
    assert _dropping(ninety_five, 200) == head + ninety_five
    hundred_and_one = "v" * 61 + forty
    assert _dropping(hundred_and_one, 200) == head + "…" + hundred_and_one[1:]


# ------------------------------------------------------------------ time_of_day


@pytest.mark.parametrize(
    ("hours", "part"),
    [
        (range(0, 5), "night"),
        (range(5, 12), "morning"),
        (range(12, 18), "afternoon"),
        (range(18, 22), "evening"),
        (range(22, 24), "night"),
    ],
)
def test_the_part_of_the_day(hours: range, part: str) -> None:
    assert [time_of_day(hour) for hour in hours] == [part] * len(hours)


# ------------------------------------------------------------------ phone_system_prompt

CLOSING = (
    "Use end_call when the conversation is over, transfer only when the caller asks for a "
    "person, and send_digits only to navigate a phone menu."
)


def _prompt(call: Call, **overrides: object) -> str:
    facts: dict[str, object] = {
        "local_time": "09:15",
        "hour": 9,
        "allowlisted": None,
        "language": None,
        "goal": None,
    }
    facts.update(overrides)
    return phone_system_prompt("  You answer the phone.  \n", call, **facts)  # type: ignore[arg-type]


def test_an_inbound_prompt_names_the_caller_and_the_allowlist() -> None:
    call = _call(CallDirection.INBOUND, "+15550001111", "+15550002222")
    assert _prompt(call, allowlisted=True) == "\n".join(
        [
            "You answer the phone.",
            "",
            "The caller's number is +15550001111.",
            "The caller is on the allowlist of known numbers.",
            "It is morning (09:15) where you are.",
            CLOSING,
        ]
    )
    assert _prompt(call, allowlisted=False, local_time="19:40", hour=19) == "\n".join(
        [
            "You answer the phone.",
            "",
            "The caller's number is +15550001111.",
            "The caller is not on the allowlist of known numbers.",
            "It is evening (19:40) where you are.",
            CLOSING,
        ]
    )


def test_an_inbound_prompt_says_when_the_number_is_withheld() -> None:
    call = _call(CallDirection.INBOUND, None, "+15550002222")
    assert _prompt(call) == "\n".join(
        [
            "You answer the phone.",
            "",
            "The caller's number is withheld.",
            "It is morning (09:15) where you are.",
            CLOSING,
        ]
    )


def test_an_outbound_prompt_names_the_number_called_the_language_and_the_goal() -> None:
    call = _call(CallDirection.OUTBOUND, "+15550002222", "+15550001111")
    prompt = _prompt(
        call,
        local_time="14:05",
        hour=14,
        language="fr-FR",
        goal="book a table for two at seven",
        allowlisted=True,
    )
    assert prompt == "\n".join(
        [
            "You answer the phone.",
            "",
            "You placed this call to +15550001111.",
            "It is afternoon (14:05) where you are.",
            "Speak in the language of fr-FR.",
            "Your goal on this call: book a table for two at seven. Work towards it yourself. "
            "When it is done, or cannot be done, say goodbye and call end_call with a "
            "one-sentence summary of the outcome as the reason.",
            CLOSING,
        ]
    )


def test_an_outbound_prompt_to_no_number_says_so() -> None:
    call = _call(CallDirection.OUTBOUND, "+15550002222", None)
    assert _prompt(call, local_time="23:30", hour=23) == "\n".join(
        [
            "You answer the phone.",
            "",
            "You placed this call to an unknown number.",
            "It is night (23:30) where you are.",
            CLOSING,
        ]
    )
