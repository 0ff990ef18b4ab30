"""Datasets as preloaded tensors: the built-ins and the researcher's own data.

``digits`` (scikit-learn's bundled 8x8 handwritten digits) needs no network and is the
embedded default. ``regression1d`` is a synthetic 1-D regression problem. ``mnist1d`` is the
MNIST-1D benchmark (Greydanus 2020), made by the ``mnist1d`` package's procedural generator
(``make_dataset``, never its download path) from ``dataset.mnist1d``'s arguments and cached in
``data_dir/mnist1d/`` as an ``.npz`` named by a hash of those arguments. The torchvision
image datasets load from ``data_dir`` and download only when asked to.

A researcher's own data (``dataset.name``):

- ``file``: ``dataset.path`` names a ``.npz`` (arrays ``x_train, y_train, x_test, y_test``, or
  ``x, y`` split by the seeded ``test_fraction``), a ``.pt`` holding a dict of the same tensors
  (read with ``weights_only=True``), or a ``.parquet`` table (feature columns, a label column and
  optionally a ``split`` column of ``train``/``test``);
- ``folder``: an image folder with one sub-folder per class (torchvision ``ImageFolder``
  layout), split into ``train/`` and ``test/`` sub-folders when both exist (so a two-class
  folder cannot name its classes ``train`` and ``test``), else by the seeded split. Images are
  resized to ``image_size`` [H, W] (default: their common size) and read as RGB, or as one
  channel when every image is single-channel (grey); ``channels: 1|3`` forces either;
- ``package.module:function`` or ``path/to/file.py:function``: ``function(**options)`` returns a
  dict with those keys, or a tuple ``(x_train, y_train, x_test, y_test)`` or ``(x, y)``, of tensors
  or arrays, the same on every call.

``task: auto`` reads classification from integer labels and regression from floating ones.
Inputs are cast to float32 (no other rescaling) and, with ``standardize``, standardised per
channel (images) or per feature with the training split's mean and std, as the built-ins are.
:func:`dataset_info` reads and validates all of it cheaply at parse time; every refusal is a
:class:`DatasetError` naming the key and the file.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import catalog
from .seeds import derive_seed
from .catalog import DATASETS, EMBEDDED, TORCHVISION, DataMissingError, DatasetError  # noqa: F401 (re-exported)
from .catalog import check_dataset as check_available  # noqa: F401 (re-exported)
from .catalog import mnist1d_args

TASKS = ("auto", "classification", "regression")
FILE_SUFFIXES = (".npz", ".pt", ".parquet")
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
WHOLE_KEYS = ("x", "y")
SPLIT_COLUMN = "split"
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes read as one channel
CACHE_VERSION = 1


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


def mnist1d_arrays(options: dict | None = None) -> dict[str, np.ndarray]:
    """MNIST-1D from the package's procedural generator (``make_dataset``; no network), with the
    global NumPy and ``random`` states it seeds restored afterwards."""
    import random

    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    args = mnist1d_args(options)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x_train": d["x"].astype(np.float32), "y_train": d["y"].astype(np.int64),
            "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}


def mnist1d_cache(data_dir: str | Path, options: dict | None) -> Path:
    """The cached generation of these arguments: ``data_dir/mnist1d/mnist1d-<hash>.npz``."""
    key = json.dumps(mnist1d_args(options), sort_keys=True)
    return Path(data_dir) / "mnist1d" / f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _mnist1d(data_dir: str | Path, options: dict | None) -> Dataset:
    path = mnist1d_cache(data_dir, options)
    arrays = None
    if path.exists():
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in SPLIT_KEYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            arrays = None  # a truncated or foreign file is generated again and replaced
    if arrays is None:
        arrays = mnist1d_arrays(options)
        from .io import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return Dataset("mnist1d", t["x_train"][:, None], t["y_train"], t["x_test"][:, None], t["y_test"],
                   "classification", 10)


def _torchvision(name: str, data_dir: str | Path, download: bool, augment: bool) -> Dataset:
    import torchvision

    check_available(name, data_dir, download)
    cls_name, folder = TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(root=str(data_dir), train=True, download=download)
        test = cls(root=str(data_dir), train=False, download=download)
    except Exception as exc:  # no network: URLError/OSError; missing or damaged files: RuntimeError
        if download:
            raise DataMissingError(
                f"dataset {name!r}: downloading into data_dir {str(data_dir)!r} failed ({type(exc).__name__}: {exc}); "
                f"this machine may have no network. Get the files by hand: on a machine with network run "
                f"python -c \"import torchvision; torchvision.datasets.{cls_name}('data', train=True, download=True); "
                f"torchvision.datasets.{cls_name}('data', train=False, download=True)\" and copy data/{folder} "
                f"into {data_dir}"
            ) from exc
        raise DataMissingError(
            f"dataset {name!r}: could not load it from data_dir {str(data_dir)!r} ({exc}); copy the torchvision "
            f"files for {cls_name} there (folder {folder}), or set 'dataset.download: true' where the network "
            f"is reachable"
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


# ----- the researcher's own data ------------------------------------------------------------

@dataclass(frozen=True)
class DataSpec:
    """The ``dataset`` section of the config, with its defaults. Keys that only user data reads:
    ``path, task, label_column, feature_columns, image_size, channels, num_classes,
    standardize, options``."""

    name: str = "digits"
    data_dir: str = "data"
    download: bool = False
    split_seed: int = 0
    test_fraction: float = 0.25
    augment: bool = False
    path: str | None = None
    task: str = "auto"
    label_column: str = "label"
    feature_columns: list | None = None
    image_size: list | None = None
    channels: int | None = None
    num_classes: int | None = None
    standardize: bool = True
    options: dict = field(default_factory=dict)
    mnist1d: dict | None = None  # generator arguments of the built-in mnist1d (null: the package's standard ones)
    label: str | None = None  # the folder name under results_dir (read by the run plan only)

    @classmethod
    def of(cls, cfg: dict) -> "DataSpec":
        """The spec of a config section; raise :class:`DatasetError` for an unknown key."""
        known = cls.__dataclass_fields__
        extra = sorted(set(cfg) - set(known))
        if extra:
            raise DatasetError(f"unknown key {', '.join('dataset.' + k for k in extra)}; allowed keys: {', '.join(known)}")
        spec = cls(**{k: v for k, v in cfg.items() if v is not None})  # null: the default
        if spec.task not in TASKS:
            raise DatasetError(f"dataset.task = {spec.task!r} is not allowed; allowed values: {', '.join(TASKS)}")
        return spec

    @property
    def kind(self) -> str:
        return catalog.dataset_kind(self.name)

    @property
    def where(self) -> str:
        """How messages name the data: the file or folder, or the dataset function."""
        if self.kind in catalog.USER_DATASETS:
            return f"dataset.path = {self.path!r}"
        return f"dataset.name = {self.name!r}"


class DatasetInfo(NamedTuple):
    """What the run plan needs to know about a dataset before any job runs."""

    in_shape: tuple[int, ...]
    num_outputs: int
    task: str
    n_train: int
    n_test: int
    label: str  # a short name for result paths


def _user_path(spec: DataSpec) -> Path:
    if not spec.path:
        raise DatasetError(f"dataset.name = {spec.name!r} needs dataset.path: the {spec.name} to read")
    path = catalog.resolve_path(spec.path, "dataset.path")
    if spec.kind == "file":
        if not path.is_file() or path.suffix not in FILE_SUFFIXES:
            raise DatasetError(f"{spec.where} ({path}): dataset.name: file needs a {', '.join(FILE_SUFFIXES)} file")
    elif not path.is_dir():
        raise DatasetError(f"{spec.where} ({path}): dataset.name: folder needs a folder of class sub-folders")
    return path


def _tensor(value, name: str, where: str) -> torch.Tensor:
    """``value`` (tensor, array or nested list) as a CPU tensor; refuse non-numeric data."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.is_complex():
            raise DatasetError(f"{where}: {name} holds complex numbers ({t.dtype}); only real numbers are allowed")
        return t.long() if t.dtype == torch.bool else t
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: {name} holds {arr.dtype} values, not real numbers")
    if arr.dtype.kind == "b" or (arr.dtype.kind == "u" and arr.dtype.itemsize > 1):
        arr = arr.astype(np.int64)  # torch lacks most ops on wide unsigned integers
    if not arr.flags.writeable:  # read-only buffers (Arrow columns): torch wants its own memory
        arr = arr.copy()
    return torch.from_numpy(np.ascontiguousarray(arr))


def _layout(arrays: dict, where: str, what: str = "arrays") -> dict:
    """The arrays of one of the two layouts, by name; refuse a mixture or missing ones."""
    found = ", ".join(sorted(arrays)) or "(none)"
    has_split = [k for k in SPLIT_KEYS if k in arrays]
    has_whole = [k for k in WHOLE_KEYS if k in arrays]
    if has_split and has_whole:
        raise DatasetError(f"{where}: has both {what} {', '.join(has_split)} and {', '.join(has_whole)}; keep one layout")
    keys = SPLIT_KEYS if has_split else WHOLE_KEYS
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise DatasetError(
            f"{where}: {what} {', '.join(missing)} missing; expected x_train, y_train, x_test, y_test "
            f"or x, y; found: {found}"
        )
    return {k: arrays[k] for k in keys}


def _read_npz(path: Path, where: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            chosen = _layout({k: None for k in names}, where)
            out = {}
            for k in chosen:
                try:
                    out[k] = z[k]
                except ValueError as exc:  # object arrays need pickle
                    raise DatasetError(f"{where}: array {k!r} cannot be read without pickle ({exc}); store numbers") from exc
            return out
    except DatasetError:
        raise
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{where}: cannot be read as a .npz file ({type(exc).__name__}: {exc})") from exc


def _read_pt(path: Path, where: str) -> dict:
    from .checkpoints import load_weights_only

    obj = load_weights_only(path, where, DatasetError)
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: holds a {type(obj).__name__}; expected a dict of tensors x_train, y_train, x_test, y_test or x, y")
    return _layout(obj, where, "tensors")


def _read_parquet(path: Path, spec: DataSpec, where: str) -> dict:
    import pyarrow.parquet as pq
    import pyarrow as pa

    try:
        names = pq.read_schema(path).names
    except Exception as exc:
        raise DatasetError(f"{where}: cannot be read as a Parquet file ({type(exc).__name__}: {exc})") from exc
    if spec.label_column not in names:
        raise DatasetError(
            f"{where}: dataset.label_column = {spec.label_column!r} is not a column of the file; its columns: {', '.join(names)}"
        )
    features = spec.feature_columns
    if features is None:
        features = [c for c in names if c not in (spec.label_column, SPLIT_COLUMN)]
    else:
        unknown = [c for c in features if c not in names]
        if unknown:
            raise DatasetError(f"{where}: dataset.feature_columns {', '.join(map(repr, unknown))} not in the file; its columns: {', '.join(names)}")
    if not features:
        raise DatasetError(f"{where}: no feature columns: the file has only {', '.join(names)}")
    has_split = SPLIT_COLUMN in names
    table = pq.read_table(path, columns=list(features) + [spec.label_column] + ([SPLIT_COLUMN] if has_split else []))

    def column(name: str, role: str) -> np.ndarray:
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
            raise DatasetError(
                f"{where}: {role} column {name!r} holds {col.type}, not numbers"
                + ("; list the feature columns in dataset.feature_columns" if role == "feature" else "")
            )
        if col.null_count:
            raise DatasetError(f"{where}: {role} column {name!r} has {col.null_count} missing values")
        return col.to_numpy()

    x = np.stack([column(c, "feature") for c in features], axis=1)
    y = column(spec.label_column, "label")
    if not has_split:
        return {"x": x, "y": y}
    split = np.asarray(table.column(SPLIT_COLUMN).to_pylist(), dtype=object)
    other = sorted({str(v) for v in split} - {"train", "test"})
    if other:
        raise DatasetError(f"{where}: column {SPLIT_COLUMN!r} may hold only train and test; it also holds {', '.join(other)}")
    tr, te = split == "train", split == "test"
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}


def _call_function(spec: DataSpec) -> dict:
    fn = catalog.load_callable(spec.name, "dataset.name", DatasetError)
    options = catalog.call_options(fn, spec.options or {}, "dataset.options", DatasetError)
    try:
        out = fn(**options)
    except Exception as exc:
        raise DatasetError(f"{spec.where}: the function failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(out, (tuple, list)) and len(out) in (2, 4):
        return dict(zip(WHOLE_KEYS if len(out) == 2 else SPLIT_KEYS, out))
    if isinstance(out, dict):
        return _layout(out, spec.where, "keys")
    raise DatasetError(
        f"{spec.where}: the function returned {type(out).__name__}; expected a dict with x_train, y_train, "
        f"x_test, y_test (or x, y), or a tuple (x_train, y_train, x_test, y_test) or (x, y)"
    )


def _user_arrays(spec: DataSpec) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """The four split tensors of a ``file`` or function dataset (seeded split of an x, y
    layout), how messages name each of them, and how they name the source. Refuses NaN/inf."""
    if spec.kind == "file":
        path = _user_path(spec)
        where = f"{spec.where} ({path})"
        read = {".npz": _read_npz, ".pt": _read_pt}.get(path.suffix)
        raw = read(path, where) if read else _read_parquet(path, spec, where)
    else:
        where = spec.where
        raw = _call_function(spec)
    arrays = {k: _tensor(v, repr(k), where) for k, v in raw.items()}
    for k, t in arrays.items():
        bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
        if bad:
            raise DatasetError(f"{where}: {k!r} has {bad} NaN or infinite values")
    if "x" not in arrays:
        return arrays, {k: repr(k) for k in SPLIT_KEYS}, where
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"{where}: 'x' and 'y' need one row per sample; got shapes {list(x.shape)} and {list(y.shape)}")
    tr, te = _split(x.shape[0], spec.test_fraction, spec.split_seed)
    if len(tr) == 0 or len(te) == 0:
        raise DatasetError(
            f"{where}: {x.shape[0]} samples split by dataset.test_fraction = {spec.test_fraction} leave "
            f"{len(tr)} for training and {len(te)} for testing; both need at least one"
        )
    tr, te = torch.from_numpy(tr), torch.from_numpy(te)
    names = {f"{v}_{s}": f"{v!r} ({s} part)" for v in WHOLE_KEYS for s in ("train", "test")}
    return {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}, names, where


def _checked(arrays: dict[str, torch.Tensor], names: dict[str, str], where: str, spec: DataSpec
             ) -> tuple[dict[str, torch.Tensor], str, int]:
    """Validate the four split tensors (named in messages by ``names``); return them converted
    (x float32; y int64 class indices of shape [N] or float32 targets of shape [N, K]), the task
    and the output count."""
    a = dict(arrays)
    for split in ("train", "test"):
        x, y = a[f"x_{split}"], a[f"y_{split}"]
        nx, ny = names[f"x_{split}"], names[f"y_{split}"]
        if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
            raise DatasetError(f"{where}: {nx} and {ny} need one row per sample; got shapes {list(x.shape)} and {list(y.shape)}")
        if x.shape[0] == 0:
            raise DatasetError(f"{where}: the {split} split is empty ({nx} has no samples)")
        if x.ndim == 1:
            a[f"x_{split}"] = x[:, None]
    if a["x_train"].shape[1:] != a["x_test"].shape[1:]:
        raise DatasetError(
            f"{where}: train and test samples differ in shape: {names['x_train']} {list(a['x_train'].shape[1:])}, "
            f"{names['x_test']} {list(a['x_test'].shape[1:])}"
        )
    task = spec.task
    if task == "auto":
        task = "regression" if a["y_train"].is_floating_point() or a["y_test"].is_floating_point() else "classification"
    if task == "regression":
        if spec.num_classes is not None:
            raise DatasetError(f"dataset.num_classes = {spec.num_classes} applies to classification; {where} is a regression task")
        for k in ("y_train", "y_test"):
            y = a[k].float()  # integer targets of a regression are converted
            if y.ndim > 2:
                raise DatasetError(f"{where}: regression targets {names[k]} must have shape [N] or [N, K]; got {list(y.shape)}")
            a[k] = y[:, None] if y.ndim == 1 else y
        if a["y_train"].shape[1] != a["y_test"].shape[1]:
            raise DatasetError(
                f"{where}: {names['y_train']} has {a['y_train'].shape[1]} targets per sample but "
                f"{names['y_test']} has {a['y_test'].shape[1]}"
            )
        num_outputs = a["y_train"].shape[1]
    else:
        for k in ("y_train", "y_test"):
            a[k] = _class_labels(a[k], names[k], where)
        top = int(max(a["y_train"].max(), a["y_test"].max()))
        num_outputs = spec.num_classes if spec.num_classes is not None else top + 1
        if top >= num_outputs:
            raise DatasetError(f"{where}: labels go up to {top}, but dataset.num_classes = {spec.num_classes}; labels must lie in [0, {num_outputs})")
        if num_outputs < 2:
            raise DatasetError(f"{where}: every label is 0; classification needs at least 2 classes (or set dataset.task: regression)")
    for split in ("train", "test"):
        a[f"x_{split}"] = a[f"x_{split}"].float()
    if spec.augment and a["x_train"].ndim != 4:
        raise DatasetError(
            f"dataset.augment: true crops and flips images (N x C x H x W); {where} has samples of shape "
            f"{list(a['x_train'].shape[1:])}; set dataset.augment: false"
        )
    return a, task, num_outputs


def _class_labels(y: torch.Tensor, name: str, where: str) -> torch.Tensor:
    """``y`` as int64 class indices of shape [N]; refuse other shapes, fractions and negatives."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"{where}: class labels {name} must be one integer per sample (shape [N]); got {list(y.shape)}")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        example = y[y != y.round()][0].item()
        raise DatasetError(
            f"{where}: {name} holds non-integer values such as {example}, which are not class labels; "
            f"set dataset.task: regression for real-valued targets"
        )
    if y.min() < 0:
        raise DatasetError(f"{where}: {name} holds negative labels (smallest {int(y.min())}); class labels are 0, 1, ...")
    return y.long()


# ----- image folders ------------------------------------------------------------------------

def _folder_index(root: Path, spec: DataSpec, where: str):
    """(class count, train samples, test samples) of an image folder; samples are (file, class
    index).

    The split is the ``train/`` and ``test/`` sub-folders when both exist, else seeded."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    split = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / "train" if split else root
    try:
        classes, class_to_idx = find_classes(base)
        num_outputs = _folder_classes(classes, spec, where)
        train = make_dataset(base, class_to_idx, extensions=IMG_EXTENSIONS)
        if split:
            test_classes, _ = find_classes(root / "test")
            unknown = [c for c in test_classes if c not in class_to_idx]
            if unknown:
                raise DatasetError(f"{where}: test/ has classes that train/ lacks: {', '.join(unknown)}")
            test = make_dataset(root / "test", {c: class_to_idx[c] for c in test_classes}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise DatasetError(f"{where}: not an image folder with one sub-folder per class ({exc})") from exc
    if not split:
        tr, te = _split(len(train), spec.test_fraction, spec.split_seed)
        if len(tr) == 0 or len(te) == 0:
            raise DatasetError(f"{where}: {len(train)} images split by dataset.test_fraction = {spec.test_fraction} leave an empty split")
        train, test = [train[i] for i in tr], [train[i] for i in te]
    return num_outputs, train, test


def _folder_geometry(samples, spec: DataSpec, where: str) -> tuple[int, int, int]:
    """(channels, H, W) for the images, read from their headers only."""
    from PIL import Image, UnidentifiedImageError

    sizes, grey = set(), True
    for file, _ in samples:
        try:
            with Image.open(file) as im:
                sizes.add((im.height, im.width))
                grey = grey and im.mode in GREY_MODES
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"{where}: image {file} cannot be read ({exc})") from exc
    if spec.channels not in (None, 1, 3):
        raise DatasetError(f"dataset.channels = {spec.channels!r} is not allowed; allowed values: 1, 3 (or null: grey if every image is)")
    channels = spec.channels or (1 if grey else 3)
    if spec.image_size is not None:
        size = tuple(spec.image_size)
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise DatasetError(f"dataset.image_size = {spec.image_size!r} must be [H, W], two positive integers")
    elif len(sizes) == 1:
        size = sizes.pop()
    else:
        shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise DatasetError(f"{where}: images have {len(sizes)} different sizes ({shown}, ...); set dataset.image_size: [H, W]")
    return (channels, *size)


def _folder_classes(classes: list[str], spec: DataSpec, where: str) -> int:
    if spec.task == "regression":
        raise DatasetError(f"dataset.task = 'regression': {where} is an image folder, whose labels are classes")
    if len(classes) < 2:
        raise DatasetError(f"{where}: needs at least 2 class sub-folders; found {', '.join(classes) or 'none'}")
    if spec.num_classes is not None and spec.num_classes < len(classes):
        raise DatasetError(f"dataset.num_classes = {spec.num_classes}, but {where} has {len(classes)} classes")
    return spec.num_classes or len(classes)


def _folder(spec: DataSpec):
    """(train samples, test samples, (C, H, W), class count) of a checked image folder."""
    root = _user_path(spec)
    where = f"{spec.where} ({root})"
    num_outputs, train, test = _folder_index(root, spec, where)
    return train, test, _folder_geometry(train + test, spec, where), num_outputs


def _read_images(samples, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    c, h, w = shape
    images = []
    for file, _ in samples:
        with Image.open(file) as im:
            im = im.convert("L" if c == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            images.append(np.asarray(im, dtype=np.uint8).reshape(h, w, c))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return x.contiguous(), torch.tensor([label for _, label in samples], dtype=torch.long)


def _user_dataset(spec: DataSpec) -> Dataset:
    label = catalog.dataset_label(spec.name, spec.path)
    if spec.kind == "folder":
        train, test, shape, num_outputs = _folder(spec)
        (trx, try_), (tex, tey) = _read_images(train, shape), _read_images(test, shape)
        task = "classification"
    else:
        a, task, num_outputs = _checked(*_user_arrays(spec), spec)
        trx, try_, tex, tey = (a[k] for k in SPLIT_KEYS)
    if spec.standardize:
        trx, tex = _standardise(trx, tex)
    mode = ("crop_flip" if trx.shape[1] == 3 else "crop") if spec.augment else "none"
    return Dataset(label, trx, try_, tex, tey, task, num_outputs, mode)


def load_dataset(
    name: str,
    data_dir: str | Path = "data",
    download: bool = False,
    split_seed: int = 0,
    test_fraction: float = 0.25,
    augment: bool = False,
    **user,
) -> Dataset:
    """Load the dataset of a config's ``dataset`` section (``load_dataset(**section)``).

    ``user`` holds the keys only user data reads (see :class:`DataSpec`). Built-ins keep their
    fixed preprocessing. Returns a :class:`Dataset` with inputs float32, class labels int64 of
    shape [N] or regression targets float32 of shape [N, K]. Raises :class:`DatasetError` or
    :class:`DataMissingError` naming the key and the file.
    """
    if name == "digits":
        return _digits(split_seed, test_fraction)
    if name == "regression1d":
        return _regression1d(split_seed)
    if name == "mnist1d":
        return _mnist1d(data_dir, user.get("mnist1d"))
    if name in TORCHVISION:
        return _torchvision(name, data_dir, download, augment)
    spec = DataSpec.of(dict(name=name, data_dir=str(data_dir), download=download, split_seed=split_seed,
                            test_fraction=test_fraction, augment=augment, **user))
    return _user_dataset(spec)


def load_from_config(cfg: dict) -> Dataset:
    """Load the dataset named in the validated config's ``dataset`` section."""
    return load_dataset(**cfg["dataset"])


# ----- parse-time information -----------------------------------------------------------------



def _fingerprint(path: Path) -> list:
    """Size and modification time of a file, or of every file under a folder (sorted)."""
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    h = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for f in sorted(files):
            st = os.stat(os.path.join(folder, f))
            h.update(f"{os.path.relpath(os.path.join(folder, f), path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return [h.hexdigest()]


def _user_info(spec: DataSpec) -> DatasetInfo:
    label = catalog.dataset_label(spec.name, spec.path)
    if spec.kind == "folder":
        train, test, shape, num_outputs = _folder(spec)
        return DatasetInfo(shape, num_outputs, "classification", len(train), len(test), label)
    a, task, num_outputs = _checked(*_user_arrays(spec), spec)
    return DatasetInfo(tuple(a["x_train"].shape[1:]), num_outputs, task, len(a["y_train"]), len(a["y_test"]), label)


def dataset_info(dataset_cfg: dict, cache_dir: str | Path | None = None) -> DatasetInfo:
    """Input shape, output count, task, split sizes and a path label of a config's dataset,
    for the run plan, before any job runs.

    Static for the built-ins (torchvision ones are checked to be in ``data_dir`` unless
    ``download``). User files and folders are read and validated: shapes consistent between x
    and y and between splits, real numbers, no NaN/inf, no empty split, class labels integer in
    [0, num_classes). The result for a file or folder is cached in ``cache_dir`` (a folder of
    small JSON files) keyed by its absolute path, size and modification time (every file's, for
    a folder) and the config keys that matter, so repeated dry runs do not read large files
    again. Dataset functions are called every time (their inputs cannot be fingerprinted).
    Raises :class:`DatasetError`, :class:`DataMissingError` or
    :class:`losslab.catalog.InputNotFoundError`, naming the key and the file.
    """
    spec = DataSpec.of(dataset_cfg)
    if spec.kind in ("embedded", "torchvision"):
        check_available(spec.name, spec.data_dir, spec.download)
        return DatasetInfo(*catalog.builtin_info(spec.name, spec.test_fraction, spec.mnist1d), spec.name)
    if spec.kind == "function" or cache_dir is None:
        return _user_info(spec)
    path = _user_path(spec)
    relevant = {k: v for k, v in asdict(spec).items() if k not in ("data_dir", "download", "standardize")}
    key = json.dumps([CACHE_VERSION, str(path), _fingerprint(path), relevant], sort_keys=True, default=str)
    entry = Path(cache_dir) / f"dataset-{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"
    if entry.exists():
        try:
            stored = json.loads(entry.read_text())
            if stored["key"] == key:
                info = stored["info"]
                return DatasetInfo(tuple(info[0]), *info[1:])
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable entry is recomputed and overwritten
    info = _user_info(spec)
    from .io import atomic_path

    with atomic_path(entry) as tmp:
        tmp.write_text(json.dumps({"key": key, "info": list(info)}))
    return info


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

    @property
    def sizes(self) -> dict[str, int]:
        """``{"n_train", "n_test"}``: the subset sizes every table of an evaluation records."""
        return {"n_train": int(self.train_x.shape[0]), "n_test": int(self.test_x.shape[0])}

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.train_x, self.train_y) if name == "train" else (self.test_x, self.test_y)


def eval_data(ds: Dataset, n_train: int, n_test: int, n_bn: int, seed: int, device="cpu") -> EvalData:
    trx, try_ = subset(ds.train_x, ds.train_y, n_train, seed)
    tex, tey = subset(ds.test_x, ds.test_y, n_test, derive_seed(seed, "test subset"))
    bnx, _ = subset(ds.train_x, ds.train_y, n_bn, derive_seed(seed, "batchnorm subset"))
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
