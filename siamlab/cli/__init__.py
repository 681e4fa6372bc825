"""The ``siamlab`` command line. Each command lives in its own module and registers on ``app``."""

from siamlab.cli import run  # noqa: F401  (registers run, validate)
from siamlab.cli.app import app

__all__ = ["app"]
