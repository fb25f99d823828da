"""voicecall entrypoints."""
