"""The one config tree that describes a run completely; saved beside every result."""

from pydantic import BaseModel, ConfigDict

from siamlab.data.config import DataConfig
from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.models.config import ModelConfig
from siamlab.objectives import ObjectiveConfig
from siamlab.train.config import OptimConfig, TrainConfig


class OutputConfig(BaseModel):
    """Where results go.

    Attributes:
        root: results root; a run writes ``<root>/<study>/<variant>/seed<k>/``.
        tensorboard: write TensorBoard event files under ``tb/``.
    """

    model_config = ConfigDict(extra="forbid")

    root: str = "results"
    tensorboard: bool = True


class RunConfig(BaseModel):
    """Everything that determines one training run (defaults: the paper's ImageNet recipe)."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    output: OutputConfig = OutputConfig()
