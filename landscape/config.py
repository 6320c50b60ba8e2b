r"""Typed configs: defaults in one dataclass, TOML files hold only overrides.

The CLI flags are generated from the dataclass fields (their ``metadata`` holds
the help text), so a default lives in exactly one place.  Unknown keys and
wrong types are errors.  The resolved config is stored as JSON in the run file.

Example:
    >>> cfg = TrainConfig().replace(epochs=10, swa_start=8)
    >>> cfg.epochs, cfg.swa_budget
    (10, 10)
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landscape._errors import UserError, arg


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    """Everything `landscape train` needs; each field is a CLI flag."""

    # data
    data: str = _f("mnist1d", "dataset name (mnist1d, mnist, kaggle-digits, svhn, "
                   "cifar10, cifar100)")
    data_root: str = _f("data", "folder with the dataset files (and the mnist1d cache)")
    download: bool = _f(False, "download mnist/cifar files where a network exists")
    num_samples: int = _f(5000, "mnist1d: number of sequences generated (80/20 split)")
    train_samples: int | None = _f(None, "use a seeded subset of this many train samples")
    test_samples: int | None = _f(None, "use a seeded subset of this many test samples")
    label_noise: float = _f(0.0, "fraction of train labels replaced by another random "
                            "class (seeded by --data-seed; test labels are never changed)")
    data_seed: int | None = _f(None, "seed of the data: mnist1d's generated set, the "
                               "--train-samples/--test-samples subsets and the "
                               "--label-noise labels (default: --seed); give runs of "
                               "different --seed one --data-seed to train them on the "
                               "same data, as align, merge and connect need")
    # model
    model: str | None = _f(None, "model name (default: picked for the dataset)")
    model_width: int | None = _f(None, "model width: channels of mnist1d-cnn, hidden units "
                                 "of mlp (default: the model's)")
    # optimisation
    epochs: int = _f(40, "epochs of the plain-SGD baseline (its budget)")
    batch_size: int = _f(128, "minibatch size")
    lr: float = _f(0.05, "initial learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    wd: float = _f(5e-4, "weight decay")
    sgd_schedule: str = _f("swa-paper", "baseline schedule: swa-paper (constant for the "
                           "first half, linear decay to 1%% by 90%%), const, cosine",
                           choices=("swa-paper", "const", "cosine"))
    # swa
    swa: bool = _f(True, "also train the SWA run (disable with --no-swa)")
    swa_epochs: int | None = _f(None, "epochs of the SWA run (default: --epochs)")
    swa_start: int = _f(30, "epoch from which SWA averages")
    swa_lr: float = _f(0.01, "SWA learning rate (alpha2 for cyclic)")
    swa_lr_max: float | None = _f(None, "cyclic schedule's alpha1 (default: --lr)")
    schedule: str = _f("const", "SWA-phase schedule: const or cyclic",
                       choices=("const", "cyclic"))
    cycle: int = _f(1, "averaging cycle in epochs (cyclic: alpha1->alpha2 over it)")
    average_epochs: str | None = _f(None, "post-hoc average of the recorded epochs A:B "
                                    "(completed epochs, inclusive) of --average-run")
    average_run: str = _f("sgd", "run whose checkpoints --average-epochs averages",
                          choices=("sgd", "swa"))
    swag: bool = _f(False, "collect SWA-Gaussian moments during the SWA run (Maddox et "
                    "al. 2019): mean, second moment and the last --swag-rank deviations "
                    "of the averaged iterates, stored in /swag")
    swag_rank: int = _f(20, "SWAG: deviations kept (K; 0: diagonal only)")
    # recording
    record_every: int = _f(1, "record the weights every N epochs (0: off)")
    record_steps: int = _f(0, "also record every N steps (0: off)")
    eval_every: int = _f(1, "evaluate train/test metrics every N epochs (0: end only)")
    # run
    seed: int = _f(0, "seed of initialisation and shuffling, and of the data unless "
                   "--data-seed is given")
    init_jitter: float = _f(0.0, "relative Gaussian jitter of the initial weights (e.g. "
                            "1e-7, one float32 ulp: what another machine's rounding "
                            "does to a run; 0: off)")
    device: str = _f("cpu", "cpu or cuda")
    threads: int | None = _f(None, "torch intra-op threads (default: torch's)")

    # ------------------------------------------------------------------
    @property
    def data_rng_seed(self) -> int:
        """The seed of the data (``data_seed``, else ``seed``)."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def swa_budget(self) -> int:
        """Epochs of the SWA run."""
        return self.swa_epochs if self.swa_epochs is not None else self.epochs

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied and checked."""
        return from_dict({**self.to_dict(), **changes}, type(self))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON of :meth:`to_dict` (what the run file stores)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @staticmethod
    def with_defaults(stored: Mapping[str, Any] | str) -> dict[str, Any]:
        """A stored config (a mapping or its JSON) with the fields added since it was
        written at their defaults, so a new field does not make old files another
        config."""
        if isinstance(stored, str):
            stored = json.loads(stored)
        return {**TrainConfig().to_dict(), **stored}

    def validate(self) -> TrainConfig:
        """Check ranges that types cannot express; return ``self``.

        Raises:
            UserError: Naming the field, its flag and the valid range.
        """
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise UserError(msg)

        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # TrainConfig(epochs="3") from Python
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        def at_least(name: str, low: float, strict: bool = False) -> None:
            v = getattr(self, name)
            need(v is None or (v > low if strict else v >= low),
                 f"{arg(name)} must be {'>' if strict else '>='} {low:g}, got {v}")

        for name in ("epochs", "batch_size", "model_width", "cycle"):
            at_least(name, 1)
        for name in ("wd", "init_jitter", "record_every", "record_steps", "swag_rank"):
            at_least(name, 0)
        at_least("lr", 0, strict=True)
        need(0 <= self.momentum < 1,
             f"{arg('momentum')} must be in [0, 1), got {self.momentum}")
        need(0 <= self.label_noise < 1,
             f"{arg('label_noise')} must lie in [0, 1), got {self.label_noise}")
        if self.swa:
            at_least("swa_lr", 0, strict=True)
            need(0 < self.swa_start < self.swa_budget,
                 f"{arg('swa_start', self.swa_start)} must lie in 1..{self.swa_budget - 1} "
                 f"(before the SWA run ends); lower it or raise {arg('swa_epochs')}")
        need(not self.swag or self.swa,
             "swag=True (--swag) collects its moments during the SWA run, and swa=False "
             "(--no-swa) turns that run off; drop swa=False (--no-swa) or swag=True "
             "(--swag)")
        if self.average_epochs is not None:
            parse_range(self.average_epochs)
        return self


@dataclass(frozen=True)
class ConnectConfig:
    """Everything a mode-connecting curve needs (`landscape connect`, :func:`landscape.connect`).

    The defaults live here once; the CLI flags are generated from the fields.
    """

    curve: str = _f("bezier", "curve family: bezier (quadratic Bezier, one bend; K bends: "
                    "degree K+1) or polychain (polygonal chain, K bends at knots "
                    "i/(K+1))", choices=("bezier", "polychain"))
    bends: int = _f(1, "number K of trainable bends (>= 1)")
    epochs: int = _f(20, "epochs of curve training (one t ~ U[0, 1] per minibatch)")
    batch_size: int = _f(128, "minibatch size of curve training")
    lr: float = _f(0.05, "initial learning rate of SGD on the bends")
    schedule: str = _f("swa-paper", "learning-rate schedule per epoch: swa-paper "
                       "(constant for the first half, linear to 1%% by 90%%, as "
                       "Garipov et al. train curves) or const",
                       choices=("swa-paper", "const"))
    momentum: float = _f(0.9, "SGD momentum")
    wd: float | None = _f(None, "weight decay: wd/2 ||phi(t)||^2 is added to the "
                          "objective and to the reported train loss (default: the "
                          "endpoints' run's wd; 0 in the Python API)")
    points: int = _f(31, "values of t in [0, 1] (equally spaced, both ends included) at "
                     "which the curve and the line are evaluated (>= 3)")
    seed: int = _f(0, "seed of the minibatch order and the sampled t")
    eval_batch_size: int = _f(4096, "samples per forward pass of the evaluation")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ConnectConfig:
        """A copy with ``changes`` applied and checked."""
        return from_dict({**self.to_dict(), **changes}, type(self))

    def validate(self) -> ConnectConfig:
        """Check ranges that types cannot express; return ``self``.

        Raises:
            UserError: Naming the field, its flag and the valid range.
        """
        if self.bends < 1:
            raise UserError(f"{arg('bends')} must be >= 1, got {self.bends}: a curve needs at "
                            "least one trainable bend (the straight line is evaluated "
                            "beside it anyway)")
        for ok, msg in (
            (self.epochs >= 1, f"{arg('epochs')} must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"{arg('batch_size')} must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"{arg('lr')} must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"{arg('momentum')} must be in [0, 1), got {self.momentum}"),
            (self.wd is None or self.wd >= 0, f"{arg('wd')} must be >= 0, got {self.wd}"),
            (self.points >= 3, f"{arg('points')} must be >= 3, got {self.points}"),
            (self.eval_batch_size >= 1,
             f"{arg('eval_batch_size')} must be >= 1, got {self.eval_batch_size}"),
        ):
            if not ok:
                raise UserError(msg)
        return self


@dataclass(frozen=True)
class FGEConfig:
    """Everything Fast Geometric Ensembling needs (`landscape fge`, :func:`landscape.fge`).

    The defaults live here once; the CLI flags are generated from the fields.
    """

    snapshots: int = _f(8, "number of cycles; one snapshot at each cycle's lowest "
                        "learning rate")
    cycle: int = _f(2, "epochs per cycle (Garipov et al. use 2-4)")
    alpha1: float = _f(0.05, "highest learning rate, at the start and end of each cycle")
    alpha2: float = _f(0.0005, "lowest learning rate, at the middle of each cycle "
                       "(where the snapshot is taken)")
    momentum: float = _f(0.9, "SGD momentum")
    wd: float | None = _f(None, "weight decay (default: the run's wd; 0 in the Python "
                          "API)")
    batch_size: int = _f(128, "minibatch size")
    seed: int = _f(0, "seed of the minibatch order")
    bins: int = _f(20, "equal-width confidence bins of the expected calibration error")
    eval_batch_size: int = _f(4096, "samples per forward pass of the evaluation")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> FGEConfig:
        """A copy with ``changes`` applied and checked."""
        return from_dict({**self.to_dict(), **changes}, type(self))

    def validate(self) -> FGEConfig:
        """Check ranges that types cannot express; return ``self``.

        Raises:
            UserError: Naming the field, its flag and the valid range.
        """
        for ok, msg in (
            (self.snapshots >= 1, f"{arg('snapshots')} must be >= 1, got {self.snapshots}"),
            (self.cycle >= 1, f"{arg('cycle')} must be >= 1 epoch, got {self.cycle}"),
            (self.alpha2 > 0, f"{arg('alpha2')} must be > 0, got {self.alpha2}"),
            (self.alpha1 >= self.alpha2, f"{arg('alpha1', self.alpha1)} must be >= "
             f"{arg('alpha2', self.alpha2)}: the cycle runs from alpha1 down to alpha2 and back"),
            (0 <= self.momentum < 1, f"{arg('momentum')} must be in [0, 1), got {self.momentum}"),
            (self.wd is None or self.wd >= 0, f"{arg('wd')} must be >= 0, got {self.wd}"),
            (self.batch_size >= 1, f"{arg('batch_size')} must be >= 1, got {self.batch_size}"),
            (self.bins >= 1, f"{arg('bins')} must be >= 1, got {self.bins}"),
            (self.eval_batch_size >= 1,
             f"{arg('eval_batch_size')} must be >= 1, got {self.eval_batch_size}"),
        ):
            if not ok:
                raise UserError(msg)
        return self


def load_data(cfg: TrainConfig) -> Any:
    """The dataset a config names, seeded subsets applied.

    Returns:
        The :class:`landscape.data.TensorData`.
    """
    from landscape.data.registry import dataset_options, load_dataset

    takes = dataset_options(cfg.data)  # download for real data, num_samples for mnist1d
    opts = {k: v for k, v in (("download", cfg.download), ("num_samples", cfg.num_samples))
            if k in takes}
    return load_dataset(cfg.data, cfg.data_root, train_samples=cfg.train_samples,
                        test_samples=cfg.test_samples, seed=cfg.data_rng_seed, **opts)


def training_data(cfg: TrainConfig, data: Any = None) -> tuple[Any, Any]:
    """The data a run of ``cfg`` trains on: ``data`` (or the config's), label noise applied.

    Only the train labels are corrupted (``cfg.label_noise``, seeded by
    ``cfg.data_rng_seed``); the test split is returned unchanged.

    Every path that trains, or evaluates what a run trained on, goes through
    this: ``landscape train``, the budget and CV fits of the experiments, and
    :func:`landscape.jobs.load_run_model` (the measures of a noisy run see its
    noisy train labels).

    Returns:
        The :class:`~landscape.data.TensorData` and the
        :class:`~landscape.data.LabelNoise` record (``None`` without noise).
    """
    import dataclasses

    from landscape.data import corrupt_labels

    if data is None:
        data = load_data(cfg)
    if not cfg.label_noise:
        return data, None
    y, noise = corrupt_labels(data.y_train, data.n_classes, cfg.label_noise,
                              cfg.data_rng_seed)
    meta = {**data.meta, "label_noise": cfg.label_noise,
            "label_noise_seed": cfg.data_rng_seed,
            "label_noise_changed": int(noise.indices.numel())}
    return dataclasses.replace(data, y_train=y, meta=meta), noise




def parse_range(text: str) -> tuple[int, int]:
    """Parse ``A:B`` (inclusive integers, ``A <= B``).

    Raises:
        UserError: If the text is not of that form.
    """
    try:
        a, b = (int(s) for s in text.split(":"))
    except ValueError:
        raise UserError(f"range {text!r} must look like A:B, e.g. 11:20") from None
    if a > b or a < 0:
        raise UserError(f"range {text!r} must have 0 <= A <= B")
    return a, b


def _check_type(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(name, value, inner[0])
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(f"config key {name!r} must be {hint.__name__}, "
                        f"got {value!r} ({type(value).__name__})")
    return value


def from_dict(values: dict[str, Any], cls: type = TrainConfig) -> Any:
    """Build a config from a dict, rejecting unknown keys and wrong types.

    Raises:
        UserError: For an unknown key, a wrong type or a bad choice.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown config key(s) {unknown}; valid keys: {sorted(fields)}")
    checked = {}
    for k, v in values.items():
        checked[k] = _check_type(k, v, hints[k])
        choices = fields[k].metadata.get("choices")
        if choices and checked[k] not in choices:
            raise UserError(f"{k} must be one of {list(choices)}, got {checked[k]!r}")
    cfg = cls(**checked)
    check = getattr(cfg, "validate", None)
    if check is not None:
        check()
    return cfg


def _configs_dir() -> Path:
    """Where the experiment configs are: the copy an installed wheel ships inside the
    package (``landscape/_experiments``, written by ``setup.py``'s ``build_py``), else
    the top-level ``experiments/`` of the checkout this package runs from."""
    here = Path(__file__).resolve().parent
    shipped = here / "_experiments"
    return shipped if shipped.is_dir() else here.parent / "experiments"


#: The experiment configs (``landscape reproduce NAME``): top-level ``experiments/``.
CONFIGS_DIR = _configs_dir()


def config_path(name: str | Path) -> Path:
    """A TOML path, or the shipped experiment config of that name (``paper``, ...).

    Returns:
        The path (not checked to exist).
    """
    p = Path(name)
    if p.suffix != ".toml" and not p.exists() and (CONFIGS_DIR / f"{p}.toml").is_file():
        return CONFIGS_DIR / f"{p}.toml"
    return p


def load_toml(path: str | Path, cls: type = TrainConfig, section: str | None = None,
              ) -> dict[str, Any]:
    """Read override values from a TOML file (optionally one ``[section]`` of it).

    ``path`` may also name a shipped experiment (``paper``, ``seed004``, ...); the
    ``[experiment]`` table of an experiment config is skipped, so
    ``landscape train --config paper`` trains that experiment's config.

    Returns:
        The ``{field: value}`` overrides.

    Raises:
        UserError: If the file is missing or not valid TOML.
    """
    p = config_path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {p} is not valid TOML: {e}") from None
    if section is not None:
        raw = raw.get(section, {})
    else:  # an experiment config: its [experiment] table is for `landscape reproduce`
        raw.pop("experiment", None)
    return {k.replace("-", "_"): v for k, v in raw.items()}
