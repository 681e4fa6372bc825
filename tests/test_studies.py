"""Every variant of every study file runs end to end (a few steps, tiny sizes) on digits."""

from pathlib import Path

import numpy as np
import pytest

from siamlab.config.study import expand_study, read_study
from siamlab.results.store import open_run
from siamlab.run.train_run import train_run
from tests.conftest import TINY, TINY_DATA_PATH

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
CASES = [(p, v) for p in STUDIES for v in read_study(p).variants]
# a variant that runs at other profiles only (a batch of 4096) is run at the first of them,
# on the quick profile's digits and convnet
ELSEWHERE = ["data.dataset=digits", "model.backbone=convnet_small"]


@pytest.mark.parametrize(("path", "variant"), CASES, ids=[f"{p.stem}-{v}" for p, v in CASES])
def test_study_variant_smoke_run(path, variant, tmp_path):
    tiny = [s for s in TINY if s not in TINY_DATA_PATH]  # each study's own data path
    sets = [*tiny, f"output.root={tmp_path}", "train.max_steps=2"]
    study = read_study(path)
    profiles = (study.variants[variant] or {}).get("profiles")
    if profiles and "quick" not in profiles:
        spec = expand_study(study, profiles[0], sets=[*sets, *ELSEWHERE], only=[variant])[0]
        assert spec.profile == profiles[0]
    else:
        spec = expand_study(study, sets=sets, only=[variant])[0]
    outcome = train_run(spec, progress=False)
    assert outcome.status == "finished"
    ds = open_run(outcome.directory)
    assert ds.sizes["step"] == 2 and np.isfinite(ds["loss"]).all()
    assert ds.attrs["paper"] == spec.paper
