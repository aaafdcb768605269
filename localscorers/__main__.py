"""``python -m localscorers`` runs the command line."""

from localscorers.cli import main

main()
