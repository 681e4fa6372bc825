"""Where diagnostic values go (sinks) and how a run's monitor is assembled."""
