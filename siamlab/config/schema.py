"""The one config tree that describes a run completely; saved beside every result."""

from pydantic import BaseModel, ConfigDict, model_validator

from siamlab.config.objective import ObjectiveConfig
from siamlab.data.config import DataConfig
from siamlab.diagnostics.config import DiagnosticsConfig
from siamlab.models.config import ModelConfig
from siamlab.train.config import OptimConfig, TrainConfig

# The hooks whose values the collapse verdict judges (train.stop_on_collapse needs them).
VERDICT_HOOKS = ("loss", "eval_std", "centred", "verdict")


class OutputConfig(BaseModel):
    """Where results go.

    Attributes:
        root: results root (``~`` expanded); a run writes ``<root>/<study>/<variant>/seed<k>/``.
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

    @model_validator(mode="after")
    def _check_combinations(self) -> "RunConfig":
        """Refuse combinations that have no meaning, naming the keys involved."""
        eta = self.objective.eta.mode
        if eta != "off" and self.objective.symmetry == "asymmetric_2x":
            raise ValueError(
                "objective.eta.mode and objective.symmetry=asymmetric_2x cannot be combined: "
                "eta holds one target per image, the 2x loss samples two pairs per image"
            )
        if eta != "off" and self.model.target.momentum > 0:
            raise ValueError(
                "objective.eta.mode and model.target.momentum > 0 are two different target "
                "sources; use one of them"
            )
        if not self.objective.stop_grad and eta != "off":
            raise ValueError(
                f"objective.stop_grad=false cannot be combined with objective.eta.mode={eta}: "
                "eta is a stored constant from an earlier pass, so no gradient can reach it "
                "and the run would silently train with stop-gradient; use stop_grad: true, or "
                "eta.mode: off for the no-stop-gradient control"
            )
        if not self.objective.stop_grad and self.model.target.momentum > 0:
            raise ValueError(
                "objective.stop_grad=false cannot be combined with model.target.momentum > 0: "
                "the momentum target receives no gradient by construction, so the flag would "
                "change nothing; use stop_grad: true, or momentum 0 for the no-stop-gradient "
                "control"
            )
        missing = [h for h in VERDICT_HOOKS if h not in self.diagnostics.hooks]
        if self.train.stop_on_collapse and missing:
            raise ValueError(
                "train.stop_on_collapse needs the collapse verdict, which diagnostics.hooks "
                f"leaves without {', '.join(missing)}; add them, or drop stop_on_collapse"
            )
        return self
