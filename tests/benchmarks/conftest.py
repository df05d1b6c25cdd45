"""Fixtures of the benchmark scripts' tests."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench():
    """Import a script of ``benchmarks/`` by name: ``bench("realnet")`` is benchmarks/realnet.py as a module."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
