"""Responders: the agent that answers inbound callers."""
