"""The sink that hands diagnostic values to the run's results recorder (``metrics.nc``)."""

from collections.abc import Mapping

from siamlab.diagnostics.hooks import Value
from siamlab.results.recorder import Recorder


class RecorderSink:
    """Hands values to the run's :class:`Recorder` (the xarray results)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def write(self, scope: str, index: int, values: Mapping[str, Value]) -> None:
        """Record ``values`` at step/epoch ``index``."""
        self.recorder.add(index, dict(values))

    def close(self) -> None:
        """Nothing to release: the run writes the recorder's results itself."""
