"""A whole study: every variant x seed (:mod:`.execute`)."""
