"""The model registry's in-shape check: every registered model on every data set it
claims to accept (a forward pass of that data set's shape), a one-line refusal on the
others, and the MLP on images trained from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from landscape import store
from landscape._errors import UserError
from landscape.cli import main
from landscape.data import DATASET_SHAPES, load_dataset
from landscape.models import ALIASES, MODELS, build_model, default_model, models_for

PAIRS = [pytest.param(m, d, id=f"{m}-{d}") for m in MODELS for d in DATASET_SHAPES]


@pytest.mark.parametrize(("model", "dataset"), PAIRS)
def test_every_model_on_every_dataset(model: str, dataset: str) -> None:
    shape = DATASET_SHAPES[dataset]
    if model not in models_for(shape.in_shape):
        with pytest.raises(UserError, match=r"takes inputs of shape .* choose --model "
                           r"from \[") as e:
            build_model(model, shape.in_shape, shape.n_classes)
        assert "mlp" in str(e.value)  # the MLP takes every data set
        assert "\n" not in str(e.value)
        return
    torch.manual_seed(0)
    net = build_model(model, shape.in_shape, shape.n_classes).eval()
    x = torch.randn(2, *shape.in_shape)  # synthetic inputs of the data set's shape
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, shape.n_classes)
    assert torch.isfinite(out).all()


def test_what_each_model_accepts() -> None:
    accepts = {m: sorted(d for d, s in DATASET_SHAPES.items()
                         if m in models_for(s.in_shape)) for m in MODELS}
    assert accepts["mlp"] == sorted(DATASET_SHAPES)
    assert accepts["seed000-cnn"] == ["kaggle-digits", "mnist"]
    assert accepts["mnist1d-cnn"] == accepts["mnist1d-smallcnn"] == ["mnist1d"]
    assert accepts["vgg16"] == ["cifar10", "cifar100", "svhn"]
    assert accepts["seed004-cnn"] == ["cifar10", "cifar100", "kaggle-digits", "mnist", "svhn"]
    assert accepts["preresnet"] == ["cifar10", "cifar100", "svhn"]
    for dataset, shape in DATASET_SHAPES.items():  # each data set's default model fits
        assert default_model(dataset) in models_for(shape.in_shape)


def test_seed004_cnn_is_the_seeds_smallcnn_on_any_image_size() -> None:
    def count(shape: tuple[int, ...]) -> int:
        return sum(p.numel() for p in build_model("seed004-cnn", shape, 10).parameters())

    # conv 3->32 (896) + conv 32->64 (18,496) + linear 16384->256 (4,194,560) + 256->10 (2,570)
    assert count((3, 32, 32)) == 896 + 18_496 + 4_194_560 + 2_570
    # one input channel (320) and a 64*14*14 = 12544 feature map (3,211,520) on MNIST
    assert count((1, 28, 28)) == 320 + 18_496 + 3_211_520 + 2_570
    out = build_model("seed004-cnn", (1, 28, 28), 10)(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10)


def test_declared_shape_is_what_mnist1d_loads(tmp_path: Path) -> None:
    d = load_dataset("mnist1d", tmp_path, num_samples=200)
    assert d.in_shape == DATASET_SHAPES["mnist1d"].in_shape == (1, 40)
    assert d.n_classes == DATASET_SHAPES["mnist1d"].n_classes == 10


def test_mlp_flattens_any_shape_and_keeps_its_former_name() -> None:
    for shape in [(40,), (1, 40), (1, 28, 28), (3, 32, 32), (2, 3, 4, 5)]:
        net = build_model("mlp", shape, 7, hidden=5)
        assert net[1].in_features == int(np.prod(shape))
        assert net(torch.zeros(3, *shape)).shape == (3, 7)
    old = build_model("mnist1d-mlp", (1, 40), 10)
    new = build_model("mlp", (1, 40), 10)
    assert [p.shape for p in old.parameters()] == [p.shape for p in new.parameters()]
    assert ALIASES["mnist1d-mlp"] == "mlp"
    with pytest.raises(UserError, match="unknown model 'mlp2'"):
        build_model("mlp2", (1, 40), 10)


def test_mlp_on_mnist_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    """``landscape train --data mnist --model mlp --model-width 256`` (IDX files of
    random digits), then info, sharpness, surface and compare on the run file."""
    from test_data import write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("t10k", 40)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte",
                  rng.integers(0, 10, n, dtype=np.uint8))
    out = tmp_path / "mlp.h5"
    assert main(["train", "--quiet", "--data", "mnist", "--data-root", str(tmp_path),
                 "--model", "mlp", "--model-width", "256", "--epochs", "3",
                 "--swa-start", "2", "--batch-size", "40", "--out", str(out)]) == 0
    with store.open_run(out) as f:
        assert store.model_spec(f) == ("mlp", {"hidden": 256})
        assert store.layouts(f)[0].numel == 269322  # 784*256+256 + 256*256+256 + 2570
        assert sorted(store.solution_names(f)) == ["sgd", "swa", "swa_last"]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "model: mlp (269322 parameters), input [1, 28, 28]" in capsys.readouterr().out
    assert main(["sharpness", str(out), "--quiet", "--solutions", "sgd,swa", "--measures",
                 "width", "--directions", "3", "--samples", "60"]) == 0
    assert main(["surface", str(out), "--quiet", "--kind", "line", "--grid", "0:1:3"]) == 0
    assert main(["compare", str(out), "--no-write"]) == 0
    printed = capsys.readouterr().out
    assert "surface line_sgd_swa" in printed
    assert "| median width" in printed


def test_build_model_takes_a_feature_count_and_names_a_bad_shape() -> None:
    net = build_model("mlp", 20, 3)  # an int: that many flat features
    assert net(torch.randn(5, 20)).shape == (5, 3)
    with pytest.raises(TypeError, match=r"^in_shape must be the shape of one input"):
        build_model("mlp", "abc", 3)
