"""``python -m localscorers`` runs the command line."""

from localscorers.cli.application import main

main()
