"""The package version, written in one place: ``regdecoder.__version__``, the installed
metadata (pyproject.toml reads it with setuptools' dynamic version), ``regdecoder --version``
and the version recorded in saved model files all come from here."""

__version__ = "0.2.0"
