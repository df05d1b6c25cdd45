"""API conventions of the public modules (in the spirit of scanpy's tests/test_package_structure.py)."""

import inspect
import types

import pytest

import regdecoder as rd

MODULES = ("sim", "pp", "tl", "pl", "metrics", "get")


def _public_functions():
    out = []
    for mod_name in MODULES:
        mod = getattr(rd, mod_name)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                out.append(pytest.param(obj, id=f"{mod_name}.{name}"))
    return out


FUNCTIONS = _public_functions()
TL_WITH_COPY = [p for p in FUNCTIONS if p.id.startswith("tl.") and "copy" in inspect.signature(p.values[0]).parameters]


def test_submodules_are_exposed():
    for name in MODULES:
        mod = getattr(rd, name)
        assert isinstance(mod, types.ModuleType)
        assert mod.__name__ == f"regdecoder.{name}"
        assert name in rd.__all__


@pytest.mark.parametrize("name", MODULES)
def test_all_entries_exist(name):
    mod = getattr(rd, name)
    assert len(mod.__all__) == len(set(mod.__all__)) > 0
    for item in mod.__all__:
        assert hasattr(mod, item), f"rd.{name}.__all__ lists {item!r}, which does not exist"


def test_there_are_public_functions_to_check():
    # guards the parametrised tests below against silently checking nothing
    ids = {p.id for p in FUNCTIONS}
    assert {"tl.fit_decoder", "tl.infer", "metrics.recovery", "pl.loss", "get.weights", "sim.grn", "pp.split"} <= ids


@pytest.mark.parametrize("f", FUNCTIONS)
def test_at_most_three_positional_parameters(f):
    positional = [
        p
        for p in inspect.signature(f).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    assert len(positional) <= 3, f"{f.__qualname__} has positional parameters {[p.name for p in positional]}"


@pytest.mark.parametrize("f", FUNCTIONS)
def test_has_a_docstring(f):
    doc = inspect.getdoc(f)
    assert doc is not None and doc.strip(), f"{f.__qualname__} has no docstring"


@pytest.mark.parametrize("f", TL_WITH_COPY)
def test_tl_copy_convention(f):
    sig = inspect.signature(f)
    assert sig.parameters["copy"].default is False
    ann = sig.return_annotation
    assert ann is not inspect.Signature.empty, f"{f.__qualname__} has no return annotation"
    text = ann if isinstance(ann, str) else repr(ann)
    assert "AnnData" in text and "None" in text, f"{f.__qualname__} returns {text!r}"


def test_some_tl_function_has_copy():
    # guards test_tl_copy_convention against checking nothing
    assert "tl.infer" in {p.id for p in TL_WITH_COPY}


def test_version_is_a_string():
    assert isinstance(rd.__version__, str) and rd.__version__
