"""Preprocessing helpers."""

from ._split import split

__all__ = ["split"]
