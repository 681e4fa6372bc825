"""The ``siamlab`` command line. Each command lives in its own module and registers on ``app``."""

from siamlab.cli import (
    bench,  # noqa: F401  (registers bench)
    compare,  # noqa: F401  (registers compare)
    diagnose,  # noqa: F401  (registers diagnose)
    plot,  # noqa: F401  (registers plot)
    rejudge,  # noqa: F401  (registers rejudge)
    run,  # noqa: F401  (registers run, validate)
    status,  # noqa: F401  (registers status)
)
from siamlab.cli import eval as _eval  # noqa: F401  (registers eval linear, eval knn)
from siamlab.cli.app import app, reflow_help
from siamlab.cli.eval import eval_app

reflow_help(app, eval_app)

__all__ = ["app"]
