"""The ``localscorers`` command line: one module per command group, assembled in ``application``."""

# The names this package exports: ``X as X`` marks each public (mypy, ruff), no __all__.
from localscorers.cli.application import app as app
from localscorers.cli.application import main as main
from localscorers.cli.common import run as run
from localscorers.cli.demo_app import demo_judge_model as demo_judge_model
from localscorers.cli.demo_app import is_concise as is_concise
from localscorers.cli.server import is_loopback as is_loopback
from localscorers.cli.server import settings_for as settings_for
from localscorers.cli.story import run_demo as run_demo
