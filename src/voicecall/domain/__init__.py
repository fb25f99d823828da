"""The pure core of voicecall: calls, their rules, and the ports the outside must satisfy.

Nothing in this package imports an adapter, an entrypoint or a third-party package other than
attrs; an import-linter contract and a unit test hold it to that.
"""
