"""Streamed predictor linearisation, probe rows reused from the bank, string results."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from siamlab.diagnostics.linearise import LeastSquaresAccumulator, linearise_streamed
from siamlab.diagnostics.predictor_alignment import linearise_predictor
from siamlab.diagnostics.probe import EvalFeatures, ProbeCache, embed_dataset, fixed_subset
from siamlab.models.siamese import Embedding
from siamlab.results.recorder import Recorder
from siamlab.results.store import open_run, write_run


def test_linearisation_recovers_a_linear_map_and_matches_lstsq():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(600, 20, generator=g).double() + 0.3
    w, b = torch.randn(12, 20, generator=g).double(), torch.randn(12, generator=g).double()
    p = z @ w.T + b
    assert torch.allclose(linearise_streamed(z, p, chunk_size=77), w, atol=1e-8)
    noisy = torch.tanh(p)  # a non-linear predictor: the least-squares fit of the MLP
    ref = linearise_predictor(z, noisy)
    assert torch.allclose(linearise_streamed(z, noisy, chunk_size=600), ref, atol=1e-8)
    # streamed in chunks == one pass
    assert torch.allclose(linearise_streamed(z, noisy, chunk_size=13), ref, atol=1e-8)


def test_linearisation_of_collapsed_inputs_stays_finite_and_needs_enough_rows():
    z = torch.ones(100, 8).double()  # a collapsed encoder: rank-1 [z, 1]
    w = linearise_streamed(z, torch.randn(100, 8).double())
    assert torch.isfinite(w).all()
    acc = LeastSquaresAccumulator()
    acc.update(torch.randn(5, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match="at least 9"):
        acc.solve()


class Embedder(nn.Module):
    """A model with ``embed``: h = x, z = 2x, p = 3x; counts the images it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def embed(self, x: torch.Tensor) -> Embedding:
        self.seen += x.shape[0]
        return Embedding(x, 2 * x, 3 * x)


def test_probe_set_is_taken_from_the_bank_without_a_second_pass():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    data = TensorDataset(x, torch.arange(50) % 3, torch.arange(50))
    model = Embedder()
    sets = {"bank": fixed_subset(data, 40), "probe": fixed_subset(data, 20), "test": data}
    cache = ProbeCache(EvalFeatures(model, torch.device("cpu")), sets, batch_size=16)
    bank = cache.get("bank")
    assert model.seen == 40
    probe = cache.get("probe")
    assert model.seen == 40  # reused the bank's rows
    direct = embed_dataset(Embedder(), sets["probe"], torch.device("cpu"))
    for field in ("h", "z", "p", "labels"):
        assert torch.equal(getattr(probe, field), getattr(direct, field))
    assert bank.z.shape == (40, 4)
    other = ProbeCache(
        EvalFeatures(model, torch.device("cpu")), {"probe": Subset(data, [1, 2])}, 16
    )
    other.get("probe")
    assert model.seen == 42  # nothing cached: embedded directly


def test_recorder_writes_strings_module_and_component_dims(tmp_path):
    rec = Recorder()
    rec.add(1, {"grad_norm": np.array([1.0, 2.0, np.nan])})
    rec.add(1, {"z_spectrum": np.ones(8), "h_spectrum": np.ones(4), "verdict": "healthy"})
    rec.add(3, {"z_spectrum": np.ones(8), "epoch_loss": -0.5})
    with pytest.raises(ValueError):
        rec.add(1, {"z_spectrum": "healthy"})
    write_run(tmp_path, rec.to_dataset({"status": "finished"}))
    ds = open_run(tmp_path)
    assert list(ds["module"].values) == ["backbone", "projector", "predictor"]
    assert ds["h_spectrum"].dims == ("epoch", "component") and ds.sizes["component"] == 8
    assert np.isnan(ds["h_spectrum"].sel(epoch=1, component=6))  # padded
    assert list(ds["verdict"].values) == ["healthy", ""]
    for dim in ds.dims:
        assert {"long_name", "units"} <= set(ds[dim].attrs)
