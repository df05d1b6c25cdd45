"""Simulators that return a new AnnData with the ground truth inside it."""

from ._grn import grn

__all__ = ["grn"]
