"""``python -m siamlab`` (and ``torchrun -m siamlab``) runs the CLI."""

from siamlab.cli import app

app()
