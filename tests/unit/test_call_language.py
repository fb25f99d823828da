"""``language`` drives the carriers' native voices and recognisers (en-US stays unsaid)."""

from __future__ import annotations

from voicecall.adapters.telephony.plivo import documents as plivo
from voicecall.adapters.telephony.telnyx import documents as telnyx
from voicecall.adapters.telephony.twilio import documents as twilio
from voicecall.domain.speech import SpokenLine

LINE = SpokenLine("u1", "Xin chào", "nova")
URLS = twilio.WebhookUrls("https://voice.example.com/voice/webhook")


def test_twilio_says_and_gathers_in_the_call_language() -> None:
    xml = str(twilio.say_then_listen(URLS, "c1", LINE, "vi-VN"))
    assert 'language="vi-VN"' in xml.split("<Say")[0]  # the Gather's recogniser
    assert '<Say language="vi-VN">Xin chào</Say>' in xml  # no English Polly voice
    assert '<Say language="vi-VN">' in str(twilio.say_then_return(URLS, "c1", LINE, "vi-VN"))
    assert 'language="vi-VN"' in str(twilio.listen(URLS, "c1", None, "vi-VN"))


def test_twilio_english_keeps_the_mapped_voice_and_its_default() -> None:
    xml = str(twilio.say_then_listen(URLS, "c1", LINE))
    assert "language=" not in xml
    assert 'voice="Polly.Salli"' in xml
    assert 'language="en-GB"' in str(twilio.say_then_return(URLS, "c1", LINE, "en-GB"))


def test_plivo_speaks_and_listens_in_the_call_language() -> None:
    xml = plivo.listen("https://a/x", "https://a/y", 10, ("Xin chào", "nova"), "vi-VN").decode()
    assert xml.count('language="vi-VN"') == 2  # GetInput and its Speak
    assert "Polly" not in xml
    spoken = plivo.speak_then_redirect("Xin chào", "nova", "https://a/z", "vi-VN").decode()
    assert 'language="vi-VN"' in spoken
    english = plivo.speak_then_redirect("Hi", "nova", "https://a/z").decode()
    assert "language=" not in english and "Polly.Kimberly" in english


def test_telnyx_speaks_and_transcribes_in_the_call_language() -> None:
    assert telnyx.speak_command("c1", LINE, "vi-VN")["language"] == "vi-VN"
    config = telnyx.transcription_start_command("c1", "vi-VN")["transcription_engine_config"]
    assert config["language"] == "vi"
    assert telnyx.speak_command("c1", LINE)["language"] == "en-US"
