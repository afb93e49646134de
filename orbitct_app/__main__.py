"""``python -m orbitct_app`` runs the command line."""

from orbitct_app.cli import run

run()
