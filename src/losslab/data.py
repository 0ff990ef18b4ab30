"""Datasets as preloaded tensors.

``digits`` (scikit-learn's bundled 8x8 handwritten digits) needs no network and is the
embedded default. ``regression1d`` is a synthetic 1-D regression problem. The torchvision
image datasets load from ``data_dir`` and download only when asked to.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .catalog import DATASETS, EMBEDDED, TORCHVISION, DataMissingError  # noqa: F401 (re-exported)
from .catalog import check_dataset as check_available  # noqa: F401 (re-exported)
from .catalog import unknown_dataset as _unknown


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    task: str  # "classification" or "regression"
    num_outputs: int
    augment: str = "none"  # "none" or "crop_flip"

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def to(self, device) -> "Dataset":
        return Dataset(
            self.name,
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.task,
            self.num_outputs,
            self.augment,
        )


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dims = [0] + list(range(2, train.ndim))  # per channel
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled handwritten digits: images (1797, 8, 8) with values 0..16, labels.

    Read straight from the CSV file that ``sklearn.datasets.load_digits`` reads, which skips the
    ~1.4 s import of ``sklearn.datasets`` in every job that loads the data; where that file is not
    found (another scikit-learn layout) ``load_digits`` itself is used.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    csv = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if csv is not None and csv.exists():
        table = np.loadtxt(csv, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def _digits(split_seed: int, test_fraction: float) -> Dataset:
    images, target = digits_arrays()
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(target, dtype=torch.long)
    tr, te = _split(len(y), test_fraction, split_seed)
    trx, tex = _standardise(x[tr], x[te])
    return Dataset("digits", trx, y[tr], tex, y[te], "classification", 10)


def regression_function(x: torch.Tensor) -> torch.Tensor:
    """The noiseless target of ``regression1d``."""
    return torch.sin(3.0 * x) + 0.3 * x


def _regression1d(split_seed: int, n_train: int = 120, noise: float = 0.1) -> Dataset:
    """Two clusters of noisy samples of a smooth function with a gap between them, so that
    different networks agree on the data and disagree in the gap (blog Figure 7)."""
    g = torch.Generator().manual_seed(split_seed)
    half = n_train // 2
    x = torch.cat([torch.rand(half, generator=g) * 1.5 - 2.5, torch.rand(n_train - half, generator=g) * 1.5 + 1.0])
    y = regression_function(x) + noise * torch.randn(n_train, generator=g)
    xt = torch.linspace(-3.0, 3.0, 200)
    yt = regression_function(xt)
    return Dataset("regression1d", x[:, None], y[:, None], xt[:, None], yt[:, None], "regression", 1)


def _torchvision(name: str, data_dir: str | Path, download: bool, augment: bool) -> Dataset:
    import torchvision

    check_available(name, data_dir, download)
    cls = getattr(torchvision.datasets, TORCHVISION[name][0])
    try:
        train = cls(root=str(data_dir), train=True, download=download)
        test = cls(root=str(data_dir), train=False, download=download)
    except RuntimeError as exc:
        raise DataMissingError(
            f"could not load {name!r} from {data_dir!r}: {exc}. Set 'dataset.download: true' "
            "in the config to fetch it."
        ) from exc

    def tensors(ds):
        data = torch.as_tensor(np.asarray(ds.data))
        data = data.float() / 255.0
        data = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
        return data.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)

    trx, try_ = tensors(train)
    tex, tey = tensors(test)
    trx, tex = _standardise(trx, tex)
    classes = int(try_.max()) + 1
    mode = "crop_flip" if augment and name.startswith("cifar") else ("crop" if augment else "none")
    return Dataset(name, trx, try_, tex, tey, "classification", classes, mode)


def load_dataset(
    name: str,
    data_dir: str | Path = "data",
    download: bool = False,
    split_seed: int = 0,
    test_fraction: float = 0.25,
    augment: bool = False,
) -> Dataset:
    if name == "digits":
        return _digits(split_seed, test_fraction)
    if name == "regression1d":
        return _regression1d(split_seed)
    if name in TORCHVISION:
        return _torchvision(name, data_dir, download, augment)
    raise _unknown(name)


def load_from_config(cfg: dict) -> Dataset:
    """Load the dataset named in the validated config's ``dataset`` section."""
    d = cfg["dataset"]
    return load_dataset(d["name"], d["data_dir"], d["download"], d["split_seed"], d["test_fraction"], d["augment"])


def subset(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded subset (the whole set when ``size`` is at least its length)."""
    n = x.shape[0]
    if size >= n:
        return x, y
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values
    return x[idx.to(x.device)], y[idx.to(y.device)]


@dataclass
class EvalData:
    """Fixed evaluation subsets, preloaded on one device, shared by every landscape point."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    bn_x: torch.Tensor  # un-augmented training subset for BatchNorm statistics

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.train_x, self.train_y) if name == "train" else (self.test_x, self.test_y)


def eval_data(ds: Dataset, n_train: int, n_test: int, n_bn: int, seed: int, device="cpu") -> EvalData:
    trx, try_ = subset(ds.train_x, ds.train_y, n_train, seed)
    tex, tey = subset(ds.test_x, ds.test_y, n_test, seed + 1)
    bnx, _ = subset(ds.train_x, ds.train_y, n_bn, seed + 2)
    dev = torch.device(device)
    return EvalData(trx.to(dev), try_.to(dev), tex.to(dev), tey.to(dev), bnx.to(dev))


def eval_from_config(ds: Dataset, cfg: dict, device="cpu") -> EvalData:
    e = cfg["evaluation"]
    return eval_data(ds, e["train_size"], e["test_size"], e["bn_size"], e["seed"], device)


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random crop (pad 4) and, for ``crop_flip``, horizontal flip, on a batch of tensors."""
    if mode == "none":
        return x
    n, _, h, w = x.shape
    pad = 4
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)
    out = xp[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    if mode == "crop_flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out
