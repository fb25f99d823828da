"""voicecall adapters/telephony."""
