"""The ``localscorers`` command line: one module per command group, assembled in ``application``."""

from localscorers.cli.application import app, main

__all__ = ["app", "main"]
