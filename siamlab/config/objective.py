"""Configuration of the objective: stop-gradient, similarity, symmetry, eta (torch-free).

The similarity names come from :data:`SIMILARITY_NAMES`; :mod:`siamlab.objectives`
registers the function of each under the same name.
"""

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from siamlab.config.kinds import check_applies
from siamlab.eta.config import ETA_CONFIGS, EtaField, EtaOffConfig
from siamlab.registry import Registry

SIMILARITY_NAMES: Registry[str] = Registry("similarity")
SIMILARITY_NAMES.add("cosine", "D(p, z) = -<p/|p|, z/|z|> (paper Eq. 1)")
SIMILARITY_NAMES.add("cross_entropy", "D(p, z) = -softmax(z) . log softmax(p) (paper Sec. 4.5)")


class ObjectiveConfig(BaseModel):
    """How the two branches are compared.

    Attributes:
        stop_grad: treat the target as a constant in D(p, z) (paper Eq. 3); False is
            the collapsing control of Fig. 2. Only meaningful when the online encoder
            gives the targets: validation refuses False with a momentum target (m > 0)
            or with eta (``cached``, ``moving_average``), whose targets carry no graph.
        similarity: a registered similarity, ``cosine`` (Eq. 1) or ``cross_entropy``
            (Sec. 4.5).
        symmetry: ``symmetric`` (Eq. 4); ``asymmetric``: D(p1, sg(z2)) only;
            ``asymmetric_2x``: the asymmetric loss on two independently augmented
            pairs per image (Sec. 4.6). ``train.batch_size`` always counts images: a
            step encodes 2B views (symmetric, asymmetric) or 4B views (asymmetric_2x).
        eta: the EM-hypothesis targets of Sec. 5, per mode (``off`` = SimSiam).
    """

    model_config = ConfigDict(extra="forbid")

    stop_grad: bool = True
    similarity: str = "cosine"
    symmetry: Literal["symmetric", "asymmetric", "asymmetric_2x"] = "symmetric"
    eta: EtaField = Field(default_factory=EtaOffConfig)

    @model_validator(mode="before")
    @classmethod
    def _check_eta_keys(cls, data: Any) -> Any:
        eta = data.get("eta") if isinstance(data, Mapping) else None
        if isinstance(eta, Mapping):
            check_applies(eta, ETA_CONFIGS, "mode", "off", "eta.mode", "objective.eta.")
        return data

    @field_validator("similarity")
    @classmethod
    def _known_similarity(cls, name: str) -> str:
        if name not in SIMILARITY_NAMES:
            raise ValueError(
                f"unknown similarity {name!r}; registered: {', '.join(SIMILARITY_NAMES.names())}"
            )
        return name
