"""The glibc malloc settings applied at import (issue #12) change no result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from landscape import _malloc

# A few SGD steps and an evaluation of the seed-004 SmallCNN: its batch-128
# activations (32 MiB) are the buffers glibc would otherwise mmap and unmap.
_CHILD = """
import hashlib, json, torch
import landscape._malloc as m
from landscape.evaluate import Evaluator
from landscape.models import build_model
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
x, y = torch.rand(320, 3, 32, 32, generator=g), torch.randint(0, 10, (320,), generator=g)
torch.manual_seed(0)
net = build_model("seed004-cnn", (3, 32, 32), 10)
opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
for i in range(0, 256, 128):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x[i:i + 128]), y[i:i + 128]).backward()
    opt.step()
ev = Evaluator(net, (x[:256], y[:256]), (x[256:], y[256:]), batch_size=128)
w = ev.layout.read(net)
met = ev.evaluate(w)
print(json.dumps({"state": m.STATE, "weights": hashlib.sha256(w.numpy().tobytes()).hexdigest(),
                  "metrics": {k: [v.loss, v.acc, v.loss_sem] for k, v in met.items()}}))
"""


def _children(*envs: dict[str, str]) -> list[dict]:
    """Run :data:`_CHILD` once per environment, in parallel (one thread each)."""
    base = {k: v for k, v in os.environ.items() if k != _malloc.ENV}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=base | e) for e in envs]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def test_tuned_malloc_gives_identical_weights_and_metrics() -> None:
    tuned, default = _children({}, {_malloc.ENV: "default"})
    assert default["state"] == "default"
    assert tuned["state"] in ("tuned", "tuned-no-mmap", "unsupported", "user")
    assert tuned["weights"] == default["weights"]
    assert tuned["metrics"] == default["metrics"]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """``configure`` not yet called, no malloc variables in the environment."""
    monkeypatch.setattr(_malloc, "STATE", None)
    for v in (*_malloc._USER_VARS, "GLIBC_TUNABLES", _malloc.ENV):
        monkeypatch.delenv(v, raising=False)
    return monkeypatch


def test_opt_out_and_user_settings_are_left_alone(fresh: pytest.MonkeyPatch) -> None:
    fresh.setattr(_malloc, "_glibc", lambda: pytest.fail("mallopt must not be called"))
    fresh.setenv(_malloc.ENV, "default")
    assert _malloc.configure() == "default"
    assert _malloc.configure() == "default"  # once per process
    fresh.setattr(_malloc, "STATE", None)
    fresh.delenv(_malloc.ENV)
    fresh.setenv("MALLOC_TRIM_THRESHOLD_", "1000")
    assert _malloc.configure() == "user"
    fresh.setattr(_malloc, "STATE", None)
    fresh.delenv("MALLOC_TRIM_THRESHOLD_")
    fresh.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=4096")
    assert _malloc.configure() == "user"
    fresh.setattr(_malloc, "STATE", None)
    fresh.delenv("GLIBC_TUNABLES")
    fresh.setenv(_malloc.ENV, "fast")
    with pytest.warns(UserWarning, match="not understood"):
        assert _malloc.configure() == "default"


def test_no_op_without_glibc(fresh: pytest.MonkeyPatch) -> None:
    fresh.setattr(_malloc, "_glibc", lambda: None)
    assert _malloc.configure() == "unsupported"


def test_old_glibc_that_caps_the_mmap_threshold(fresh: pytest.MonkeyPatch) -> None:
    class Libc:
        def __init__(self) -> None:
            self.calls: list[tuple[int, int]] = []

        def mallopt(self, param: int, value: int) -> int:
            self.calls.append((param, value))
            return int(param != _malloc._M_MMAP_THRESHOLD)

    libc = Libc()
    fresh.setattr(_malloc, "_glibc", lambda: libc)
    assert _malloc.configure() == "tuned-no-mmap"
    assert libc.calls == [(_malloc._M_TRIM_THRESHOLD, -1), (_malloc._M_MMAP_THRESHOLD, -1),
                          (_malloc._M_MMAP_MAX, 0)]
