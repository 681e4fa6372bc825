"""TensorBoard's curve figures: one redrawn figure per kind, the same image as a fresh one."""

import numpy as np
import pytest

from siamlab.reporting.curves import CurveFigure


def _spectra(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: np.sort(rng.random(64))[::-1] + 1e-3 for n in ("z_spectrum", "h_spectrum")}


def _predictor(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"pred_cosines": rng.random(32), "pred_eigenvalues": rng.normal(size=32)}


@pytest.mark.parametrize(("kind", "curves"), [("spectra", _spectra), ("predictor", _predictor)])
def test_a_redrawn_figure_equals_a_fresh_one(kind, curves):
    reused = CurveFigure(kind)
    first = reused.render(curves(0))
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    second = reused.render(curves(1))
    assert not np.array_equal(first, second)  # the new values are drawn
    assert np.array_equal(second, CurveFigure(kind).render(curves(1)))  # nothing left over


def test_other_curve_names_rebuild_the_figure():
    fig = CurveFigure("predictor")
    two = fig.render(_predictor(0))
    one = fig.render({"pred_cosines": _predictor(0)["pred_cosines"]})
    assert one.shape[1] < two.shape[1]  # one panel instead of two
    assert np.array_equal(
        one, CurveFigure("predictor").render({"pred_cosines": _predictor(0)["pred_cosines"]})
    )


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        CurveFigure("stages")
