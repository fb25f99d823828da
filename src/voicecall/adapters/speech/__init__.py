"""Speech providers: synthesisers and transcribers behind the speech ports."""
