"""Where the per-kind unions sit in the config tree (for messages and for layering).

See :mod:`siamlab.config.kinds` for the rule; this table names, for each union, its
dotted path, its registry of per-kind classes, its tag key and its default kind.
"""

from dataclasses import dataclass

from siamlab.config.kinds import KindRegistry
from siamlab.data.dataset_config import DATASET_CONFIGS
from siamlab.eta.config import ETA_CONFIGS
from siamlab.models.backbone_config import BACKBONE_CONFIGS
from siamlab.models.predictor_config import PREDICTOR_CONFIGS


@dataclass(frozen=True)
class Union:
    """One per-kind union of the config tree.

    Attributes:
        path: dotted path of the union (``model.backbone``).
        registry: its per-kind classes.
        tag: the key naming the kind (``kind``, ``mode``).
        default: the kind when none is given.
        flat: the tag is the string at ``path`` and the options are its siblings;
            otherwise the tag and options sit inside the mapping at ``path``.
    """

    path: str
    registry: KindRegistry
    tag: str
    default: str
    flat: bool

    def tag_path(self) -> tuple[str, ...]:
        """Where the user writes the kind."""
        parts = tuple(self.path.split("."))
        return parts if self.flat else (*parts, self.tag)

    def options_path(self) -> tuple[str, ...]:
        """The mapping the kind's options sit in."""
        parts = tuple(self.path.split("."))
        return parts[:-1] if self.flat else parts


UNIONS: tuple[Union, ...] = (
    Union("model.backbone", BACKBONE_CONFIGS, "kind", "resnet50", flat=True),
    Union("model.predictor", PREDICTOR_CONFIGS, "kind", "mlp", flat=False),
    Union("objective.eta", ETA_CONFIGS, "mode", "off", flat=False),
    Union("data.dataset", DATASET_CONFIGS, "kind", "digits", flat=True),
)
