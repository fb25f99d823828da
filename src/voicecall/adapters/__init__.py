"""voicecall adapters."""
