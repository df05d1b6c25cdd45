"""Loaders for prior networks and example data (local files first; nothing downloads in tests)."""

from ._collectri import collectri, read_net

__all__ = ["collectri", "read_net"]
