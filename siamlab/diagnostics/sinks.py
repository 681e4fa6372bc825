"""Sinks consume diagnostic values: the results recorder, TensorBoard, the progress bar."""

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from siamlab.results.recorder import Recorder


class Sink(Protocol):
    """Receives the values of one step or one epoch."""

    def write(self, scope: str, index: int, values: dict[str, Any]) -> None:
        """``scope`` is "step" or "epoch"; ``index`` the 1-based step or epoch."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class RecorderSink:
    """Hands values to the run's :class:`Recorder` (the xarray results)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def write(self, scope: str, index: int, values: dict[str, Any]) -> None:
        self.recorder.add(index, values)

    def close(self) -> None:
        pass


class TensorBoardSink:
    """Scalars under ``step/`` and ``epoch/``; vectors as histograms."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def write(self, scope: str, index: int, values: dict[str, Any]) -> None:
        for name, value in values.items():
            arr = np.asarray(value)
            if arr.ndim == 0:
                self.writer.add_scalar(f"{scope}/{name}", float(arr), index)
            else:
                self.writer.add_histogram(f"{scope}/{name}", arr, index)
        if scope == "epoch":
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class ProgressSink:
    """A progress bar over all steps: loss, z-std x sqrt(d), lr, img/s, kNN."""

    def __init__(self, total: int, initial: int, dim: int, desc: str) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
        self.sqrt_d = math.sqrt(dim)
        self.fields: dict[str, str] = {}

    def write(self, scope: str, index: int, values: dict[str, Any]) -> None:
        if "loss" in values:
            self.fields["loss"] = f"{values['loss']:.3f}"
        if "z_std_train" in values:
            self.fields["std*sqrt(d)"] = f"{values['z_std_train'] * self.sqrt_d:.2f}"
        if "lr" in values:
            self.fields["lr"] = f"{values['lr']:.3g}"
        if "z_std_eval" in values:
            self.fields["eval std*sqrt(d)"] = f"{values['z_std_eval'] * self.sqrt_d:.2f}"
        if "knn_top1" in values:
            self.fields["knn"] = f"{values['knn_top1']:.3f}"
        if "images_per_second" in values:
            self.fields["img/s"] = f"{values['images_per_second']:.0f}"
        if scope == "step":
            self.bar.update(1)
            if index % 10 == 0:
                self.bar.set_postfix(self.fields, refresh=False)
        else:
            self.bar.set_postfix(self.fields)

    def close(self) -> None:
        self.bar.close()
