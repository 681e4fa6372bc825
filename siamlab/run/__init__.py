"""One training run.

:mod:`.assemble` builds it, :mod:`.train_run` trains it, :mod:`.checkpointer` saves and
restores its parts, :mod:`.results_file` writes its ``metrics.nc``.
"""
