"""voicecall adapters/store."""
