"""The TensorBoard sink: scalars, per-module curves, histograms and spectrum figures."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from siamlab.diagnostics.hooks import Value
from siamlab.diagnostics.verdict import VERDICTS
from siamlab.reporting.curves import CurveFigure
from siamlab.results.schema import DIMS, dim_coordinate, variables


class TensorBoardSink:
    """Scalars under ``step/`` and ``epoch/``; vectors by their dim in the schema.

    ``channel`` vectors become histograms (per-channel std), ``module`` vectors one scalar
    per module (``step/grad_norm/backbone``), ``stage`` vectors one scalar per stage
    (``epoch/stage_rankme/stage1``), ``component`` vectors (spectra, predictor
    cosines/eigenvalues) plotted figures (``epoch/spectra``, ``epoch/predictor``; not the
    stages' spectra, which would cost more than their hook), and the
    verdict a text entry plus the scalar ``epoch/verdict_code`` (index in ``VERDICTS``).
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        self.figures = {tag: CurveFigure(tag) for tag in ("spectra", "predictor")}

    def write(self, scope: str, index: int, values: Mapping[str, Value]) -> None:
        """Log ``values`` at ``index``; flush at an epoch's end.

        All scalars of a call go into one event (``add_scalar`` writes one event per
        scalar, the sink's main cost at every step); TensorBoard reads the same
        ``(tag, step, value)`` series either way.
        """
        curves: dict[str, np.ndarray] = {}
        scalars: list[tuple[str, float]] = []
        known = variables()
        for name, value in values.items():
            if isinstance(value, str):
                self.writer.add_text(f"{scope}/{name}", value, index)
                if name == "verdict" and value in VERDICTS:
                    scalars.append((f"{scope}/verdict_code", VERDICTS.index(value)))
                continue
            arr = np.asarray(value)
            dims = known[name].dims if name in known else ()
            if arr.ndim == 0:
                scalars.append((f"{scope}/{name}", float(arr)))
            elif dims[1:] == ("module",):
                for label, v in zip(DIMS["module"].labels, arr, strict=True):
                    if np.isfinite(v):
                        scalars.append((f"{scope}/{name}/{label}", float(v)))
            elif dims[1:] == ("component",):
                curves[name] = arr
            elif dims[1:] == ("stage",):
                for stage, v in zip(dim_coordinate("stage", arr.size), arr, strict=True):
                    scalars.append((f"{scope}/{name}/{stage}", float(v)))
            elif dims[1:] == ("stage", "component"):
                continue  # metrics.nc and `siamlab plot --kind stages` (a figure: ~0.15 s)
            else:
                self.writer.add_histogram(f"{scope}/{name}", arr, index)
        if scalars:
            summary = Summary(value=[Summary.Value(tag=t, simple_value=v) for t, v in scalars])
            self.writer._get_file_writer().add_summary(summary, index)  # as add_scalar does
        for tag, names in (("spectra", SPECTRA), ("predictor", PREDICTOR_CURVES)):
            chosen = {n: curves[n] for n in names if n in curves}
            if chosen:
                image = self.figures[tag].render(chosen)  # (H, W, 3) uint8
                self.writer.add_image(f"{scope}/{tag}", image, index, dataformats="HWC")
        if scope == "epoch":
            self.writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self.writer.close()


SPECTRA = ("z_spectrum", "p_spectrum", "h_spectrum")
PREDICTOR_CURVES = ("pred_cosines", "pred_eigenvalues")
