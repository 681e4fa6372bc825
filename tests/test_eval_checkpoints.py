import pickle
import re
import zipfile

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from siamlab.errors import ResultsError
from siamlab.evaluation.checkpoints import load_checkpoint_any
from siamlab.models.config import ModelConfig, ProjectorConfig
from siamlab.models.predictor_config import MlpPredictorConfig
from siamlab.models.siamese import create_model

DIM, HIDDEN, PRED = 16, 32, 8


pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)


def _siamlab_resnet18():
    cfg = ModelConfig(
        backbone="resnet18",
        dim=DIM,
        projector=ProjectorConfig(layers=3, hidden_dim=HIDDEN),
        predictor=MlpPredictorConfig(hidden_dim=PRED),
    )
    torch.manual_seed(0)
    model = create_model(cfg)
    _randomise_bn(model)
    return model.eval()


def _reference_module():
    """The reference implementation's SimSiam (simsiam/builder.py), resnet18, small heads."""
    encoder = torchvision.models.resnet18(num_classes=DIM)
    encoder.fc = nn.Sequential(
        nn.Linear(512, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True),
        nn.Linear(HIDDEN, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True),
        nn.Linear(HIDDEN, DIM), nn.BatchNorm1d(DIM, affine=False),
    )  # fmt: skip
    predictor = nn.Sequential(
        nn.Linear(DIM, PRED, bias=False), nn.BatchNorm1d(PRED), nn.ReLU(inplace=True),
        nn.Linear(PRED, DIM),
    )  # fmt: skip
    return nn.ModuleDict({"encoder": encoder, "predictor": predictor})


def _reference_state(model, bias):
    """Our weights under the reference's key names, with a projector output bias."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone.body."):
            sd["module.encoder." + k.removeprefix("backbone.body.")] = v.clone()
        elif k.startswith("projector."):
            sd["module.encoder.fc." + k.removeprefix("projector.")] = v.clone()
        else:
            sd["module." + k] = v.clone()
    sd["module.encoder.fc.6.bias"] = bias
    sd["module.encoder.fc.7.running_mean"] = sd["module.encoder.fc.7.running_mean"] + bias
    return sd


def test_reference_checkpoint_gives_the_same_features_as_siamlab_and_the_reference(tmp_path):
    model = _siamlab_resnet18()
    bias = torch.linspace(-2.0, 3.0, DIM)  # nonzero, frozen in the reference
    sd = _reference_state(model, bias)
    path = tmp_path / "checkpoint_0099.pth.tar"
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": sd, "optimizer": {}}, path)

    loaded = load_checkpoint_any(path)
    assert loaded.format == "reference" and loaded.epoch == 100
    assert loaded.parts == ("backbone", "projector", "predictor")
    net = loaded.model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = model.embed(x), net.embed(x)
        for a, b in zip(ours, theirs, strict=True):  # h, z (eval mode, bias folded), p
            assert torch.allclose(a, b, atol=1e-5)

        ref = _reference_module()
        ref.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
        ref.eval()
        z_ref = ref["encoder"](x)  # BN(W x + b) with the reference's running mean
        assert torch.allclose(net.embed(x).z, z_ref, atol=1e-5)
        assert torch.allclose(net.embed(x).p, ref["predictor"](z_ref), atol=1e-5)
        ref.train(), net.train()  # train mode: the batch mean cancels the bias exactly
        assert torch.allclose(net.embed(x).z, ref["encoder"](x), atol=1e-4)


def test_plain_torchvision_state_dict_loads_as_backbone(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18()
    _randomise_bn(tv)
    tv.eval()
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    lincls = {"module." + k: v for k, v in tv.state_dict().items()}  # main_lincls.py style
    torch.save({"epoch": 90, "arch": "resnet18", "state_dict": lincls}, tmp_path / "lincls.pth")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tv.fc = nn.Identity()
        expected = tv(x)  # (2, 512) pool5
        for name in ("resnet18.pth", "lincls.pth"):
            loaded = load_checkpoint_any(tmp_path / name)
            assert loaded.format == "torchvision" and loaded.parts == ("backbone",)
            assert torch.allclose(loaded.model.eval().backbone(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    "obj, found",
    [
        ({"weights": torch.ones(2), "step": 3}, "'step', 'weights'"),
        ({"state_dict": {"head.0.weight": torch.ones(2)}}, "head.0"),
        ([1, 2, 3], "type list"),
    ],
)
def test_unknown_format_lists_what_was_found_and_what_is_supported(tmp_path, obj, found):
    path = tmp_path / "mystery.pt"
    torch.save(obj, path)
    with pytest.raises(ResultsError) as info:
        load_checkpoint_any(path)
    msg = str(info.value)
    assert "unrecognised checkpoint format" in msg and found in msg
    for fmt in ("siamlab", "reference", "torchvision"):
        assert fmt in msg


def test_missing_or_unreadable_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ResultsError, match="no checkpoint"):
        load_checkpoint_any(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ResultsError, match="junk.pt is not a torch checkpoint"):
        load_checkpoint_any(tmp_path / "junk.pt")


def _zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _damaged_torch_archive(path) -> None:
    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    _zip(path, {n: b"\x80\x02garbage" if n.endswith("data.pkl") else d for n, d in members.items()})


def _cut_torch_file(path) -> None:
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize(
    "write, size, kind",
    [
        (lambda p: p.write_bytes(b""), "0 bytes", "an empty file"),
        (
            lambda p: p.write_text("2891 7321 174812789\nmore text\n"),
            "30 bytes",
            "a text file, starting '2891 7321 174812789'",
        ),
        (
            lambda p: p.write_bytes(bytes([0xD5, 0x3E, 1, 2]) + bytes(2996)),
            "3.0 kB",
            "binary data (first bytes d5 3e 01 02 00 00 00 00 ...), neither a zip archive nor",
        ),
        (
            lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=4)),
            "bytes",
            "pickle (protocol 4)",
        ),
        (lambda p: np.save(p.open("wb"), np.zeros(3)), "bytes", "a NumPy .npy array"),
        (
            lambda p: _zip(p, {"x.npy": b"1", "y.npy": b"2"}),
            "bytes",
            "without torch's data.pkl (it holds: x.npy, y.npy)",
        ),
        (_cut_torch_file, "300 bytes", "zip archive (torch.save's format) that is cut short"),
        (
            _damaged_torch_archive,
            "bytes",
            "a torch.save zip archive whose contents cannot be read (",
        ),
    ],
)
def test_unreadable_file_is_described_with_the_supported_formats(tmp_path, write, size, kind):
    path = tmp_path / "junk.pth"
    write(path)
    with pytest.raises(ResultsError) as info:
        load_checkpoint_any(path)
    msg = str(info.value)
    assert msg.startswith(f"{path} is not a torch checkpoint: ") and size in msg, msg
    assert kind in msg, msg
    for fmt in ("siamlab:", "reference:", "torchvision:"):
        assert fmt in msg
    assert not re.search(r": \d+$", msg.splitlines()[0]), msg  # no bare torch internals
