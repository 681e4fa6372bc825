"""The progress-bar sink: one bar over the run's steps with the headline diagnostics."""

import math
from collections.abc import Mapping

from tqdm import tqdm

from siamlab.diagnostics.hooks import Value

# value -> (label on the bar, times sqrt(d)?, format)
FIELDS = {
    "loss": ("loss", False, ".3f"),
    "z_std_train": ("std*sqrt(d)", True, ".2f"),
    "lr": ("lr", False, ".3g"),
    "z_std_eval": ("eval std*sqrt(d)", True, ".2f"),
    "knn_top1": ("knn", False, ".3f"),
    "images_per_second": ("img/s", False, ".0f"),
}


class ProgressSink:
    """A progress bar over all steps: loss, z-std x sqrt(d), lr, img/s, kNN, verdict."""

    def __init__(self, total: int, initial: int, dim: int, desc: str) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
        self.sqrt_d = math.sqrt(dim)
        self.fields: dict[str, str] = {}

    def write(self, scope: str, index: int, values: Mapping[str, Value]) -> None:
        """Update the bar's fields; advance it by one step."""
        for name, (label, scale, fmt) in FIELDS.items():
            value = values.get(name)
            if isinstance(value, float | int):
                self.fields[label] = format(value * (self.sqrt_d if scale else 1.0), fmt)
        if "verdict" in values:
            self.fields["verdict"] = str(values["verdict"])
        if scope == "step":
            self.bar.update(1)
            if index % 10 == 0:
                self.bar.set_postfix(self.fields, refresh=False)
        else:
            self.bar.set_postfix(self.fields)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
