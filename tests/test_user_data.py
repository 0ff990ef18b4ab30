"""The researcher's own data: .npz, .pt, Parquet, image folders and dataset functions; the
parse-time checks of dataset_info and its cache."""
import json
import os
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from losslab import catalog, data
from losslab.data import DatasetError, DatasetInfo, dataset_info, load_dataset


def _rng(seed=0):
    return np.random.default_rng(seed)


def _info_matches(info: DatasetInfo, ds: data.Dataset):
    assert info.in_shape == ds.in_shape and info.num_outputs == ds.num_outputs and info.task == ds.task
    assert (info.n_train, info.n_test) == (len(ds.train_y), len(ds.test_y))


def test_npz_with_both_splits_round_trips(tmp_path):
    rng = _rng()
    arrays = dict(x_train=rng.normal(size=(12, 2, 4, 4)).astype(np.float32), y_train=rng.integers(0, 4, 12),
                  x_test=rng.normal(size=(5, 2, 4, 4)).astype(np.float32), y_test=np.array([0, 1, 2, 3, 3]))
    np.savez(tmp_path / "imgs.npz", **arrays)
    cfg = {"name": "file", "path": str(tmp_path / "imgs.npz"), "standardize": False}
    ds = load_dataset(**cfg)
    assert torch.equal(ds.train_x, torch.from_numpy(arrays["x_train"])) and torch.equal(ds.test_x, torch.from_numpy(arrays["x_test"]))
    assert ds.train_y.dtype == torch.long and ds.train_y.tolist() == arrays["y_train"].tolist()
    assert ds.task == "classification" and ds.num_outputs == 4 and ds.name == "imgs"
    info = dataset_info(cfg)
    _info_matches(info, ds)
    assert info.label == "imgs"


def test_npz_x_y_layout_is_split_by_the_seeded_test_fraction(tmp_path):
    rng = _rng(1)
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = rng.normal(size=20)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    cfg = {"name": "file", "path": str(tmp_path / "xy.npz"), "standardize": False, "test_fraction": 0.3}
    a, b = load_dataset(**cfg, split_seed=4), load_dataset(**cfg, split_seed=4)
    c = load_dataset(**cfg, split_seed=5)
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.test_x, c.test_x)
    assert a.test_x.shape == (6, 2) and a.train_x.shape == (14, 2)
    rows = sorted(map(tuple, torch.cat([a.train_x, a.test_x]).tolist()))
    assert rows == sorted(map(tuple, x.tolist()))  # every sample once, in one split
    assert a.task == "regression" and a.num_outputs == 1 and a.train_y.shape == (14, 1)
    first = int(a.train_x[0, 0]) // 2  # targets travel with their inputs
    assert a.train_y[0, 0].item() == pytest.approx(y[first])
    _info_matches(dataset_info(cfg | {"split_seed": 4}), a)


def test_standardize_uses_the_training_split_per_feature(tmp_path):
    rng = _rng(2)
    np.savez(tmp_path / "s.npz", x=rng.normal(5.0, 3.0, size=(50, 3)), y=rng.integers(0, 2, 50))
    ds = load_dataset("file", path=str(tmp_path / "s.npz"))
    assert torch.allclose(ds.train_x.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(ds.train_x.std(0), torch.ones(3), atol=1e-5)
    assert ds.train_x.dtype == torch.float32


def test_pt_file_with_regression_targets(tmp_path):
    torch.manual_seed(0)
    tensors = {"x_train": torch.randn(9, 3), "y_train": torch.randn(9, 2), "x_test": torch.randn(4, 3), "y_test": torch.randn(4, 2)}
    torch.save(tensors, tmp_path / "reg.pt")
    cfg = {"name": "file", "path": str(tmp_path / "reg.pt"), "standardize": False}
    ds = load_dataset(**cfg)
    assert ds.task == "regression" and ds.num_outputs == 2
    assert torch.equal(ds.train_y, tensors["y_train"]) and torch.equal(ds.test_x, tensors["x_test"])
    _info_matches(dataset_info(cfg), ds)


def test_integer_targets_of_a_regression_become_floats(tmp_path):
    torch.save({"x": torch.randn(10, 2), "y": torch.arange(10)}, tmp_path / "counts.pt")
    ds = load_dataset("file", path=str(tmp_path / "counts.pt"), task="regression")
    assert ds.task == "regression" and ds.train_y.dtype == torch.float32 and ds.train_y.shape == (8, 1)


def test_float_labels_with_task_classification_are_converted_when_integral(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.zeros((8, 2)), y=np.array([0.0, 1.0, 2.0, 1.0, 0.0, 2.0, 1.0, 0.0]))
    assert dataset_info({"name": "file", "path": str(tmp_path / "f.npz")}).task == "regression"  # auto: floats
    ds = load_dataset("file", path=str(tmp_path / "f.npz"), task="classification")
    assert ds.task == "classification" and ds.num_outputs == 3 and ds.train_y.dtype == torch.long


def _table(n=20, seed=3):
    rng = _rng(seed)
    return pd.DataFrame({"b": rng.normal(size=n), "label": rng.integers(0, 3, n), "a": rng.normal(size=n)})


def test_parquet_with_a_split_column(tmp_path):
    df = _table()
    df["split"] = ["test" if i % 4 == 0 else "train" for i in range(len(df))]
    df.to_parquet(tmp_path / "t.parquet")
    cfg = {"name": "file", "path": str(tmp_path / "t.parquet"), "standardize": False, "feature_columns": ["a", "b"]}
    ds = load_dataset(**cfg)
    train = df[df.split == "train"]
    assert torch.allclose(ds.train_x, torch.tensor(train[["a", "b"]].to_numpy().tolist()))
    assert ds.train_y.tolist() == train.label.tolist() and len(ds.test_y) == 5
    _info_matches(dataset_info(cfg), ds)


def test_parquet_without_split_column_takes_every_other_column_in_file_order(tmp_path):
    df = _table()
    df.rename(columns={"label": "target"}).to_parquet(tmp_path / "t.parquet")
    ds = load_dataset("file", path=str(tmp_path / "t.parquet"), label_column="target", standardize=False, test_fraction=0.25)
    assert ds.in_shape == (2,) and len(ds.test_y) == 5
    all_x = torch.cat([ds.train_x, ds.test_x])
    expected = torch.tensor(df[["b", "a"]].to_numpy().tolist())  # b comes first in the file
    assert sorted(map(tuple, all_x.tolist())) == sorted(map(tuple, expected.tolist()))


def test_parquet_refusals_name_the_column(tmp_path):
    df = _table()
    df["name"] = "x"
    df.to_parquet(tmp_path / "t.parquet")
    path = str(tmp_path / "t.parquet")
    with pytest.raises(DatasetError, match=r"feature column 'name' holds \w*string, not numbers; list the feature columns in dataset.feature_columns"):
        dataset_info({"name": "file", "path": path})
    with pytest.raises(DatasetError, match=r"dataset.label_column = 'y' is not a column of the file; its columns: b, label, a, name"):
        dataset_info({"name": "file", "path": path, "label_column": "y"})
    with pytest.raises(DatasetError, match=r"dataset.feature_columns 'c' not in the file"):
        dataset_info({"name": "file", "path": path, "feature_columns": ["a", "c"]})
    df = _table()
    df["split"] = ["train"] * 18 + ["val", "test"]
    df.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(DatasetError, match=r"column 'split' may hold only train and test; it also holds val"):
        dataset_info({"name": "file", "path": str(tmp_path / "s.parquet")})
    df = _table()
    df["label"] = df["label"].astype("Int64")
    df.loc[3, "label"] = None
    df.to_parquet(tmp_path / "n.parquet")
    with pytest.raises(DatasetError, match=r"label column 'label' has 1 missing values"):
        dataset_info({"name": "file", "path": str(tmp_path / "n.parquet")})


def _png(path, size, color, mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_with_seeded_split_reads_rgb_pixels_and_class_labels(tmp_path):
    for i in range(6):
        _png(tmp_path / "imgs" / "cat" / f"{i}.png", (6, 4), (10 * i, 0, 255))
        _png(tmp_path / "imgs" / "dog" / f"{i}.png", (6, 4), (0, 20 * i, 0))
    (tmp_path / "imgs" / "dog" / "notes.txt").write_text("not an image")
    cfg = {"name": "folder", "path": str(tmp_path / "imgs"), "standardize": False, "test_fraction": 0.25}
    ds = load_dataset(**cfg)
    assert ds.in_shape == (3, 4, 6) and ds.num_outputs == 2 and ds.task == "classification"
    assert len(ds.train_y) == 9 and len(ds.test_y) == 3
    x, y = torch.cat([ds.train_x, ds.test_x]), torch.cat([ds.train_y, ds.test_y])
    assert torch.all(x[y == 0][:, 2] == 1.0) and torch.all(x[y == 1][:, 2] == 0.0)  # cats are blue, dogs are not
    assert sorted(x[y == 0][:, 0, 0, 0].mul(255).round().tolist()) == [0, 10, 20, 30, 40, 50]
    info = dataset_info(cfg)
    _info_matches(info, ds)
    assert info.label == "imgs"


def test_image_folder_with_train_and_test_folders_of_grey_images_resized(tmp_path):
    root = tmp_path / "digits_png"
    for split, n in (("train", 3), ("test", 2)):
        for c in ("zero", "one", "two"):
            for i in range(n):
                _png(root / split / c / f"{i}.png", (8, 8) if i else (10, 6), 128, mode="L")
    with pytest.raises(DatasetError, match=r"images have 2 different sizes .*set dataset.image_size: \[H, W\]"):
        dataset_info({"name": "folder", "path": str(root)})
    cfg = {"name": "folder", "path": str(root), "image_size": [4, 4], "standardize": False}
    ds = load_dataset(**cfg)
    assert ds.in_shape == (1, 4, 4) and len(ds.train_y) == 9 and len(ds.test_y) == 6
    assert torch.allclose(ds.train_x, torch.full_like(ds.train_x, 128 / 255))
    assert sorted(ds.test_y.tolist()) == [0, 0, 1, 1, 2, 2]  # classes one, two, zero in sorted order
    _info_matches(dataset_info(cfg), ds)
    assert load_dataset(**cfg, channels=3).in_shape == (3, 4, 4)


def test_image_folder_refusals(tmp_path):
    _png(tmp_path / "one" / "a" / "0.png", (4, 4), 0, mode="L")
    with pytest.raises(DatasetError, match=r"needs at least 2 class sub-folders; found a"):
        dataset_info({"name": "folder", "path": str(tmp_path / "one")})
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"dataset.path = .*empty.*not an image folder with one sub-folder per class .*no valid file"):
        dataset_info({"name": "folder", "path": str(tmp_path / "empty")})
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetError, match=r"not an image folder with one sub-folder per class .*find any class folder"):
        dataset_info({"name": "folder", "path": str(tmp_path / "flat")})
    for split, c in (("train", "a"), ("train", "b"), ("test", "a"), ("test", "c")):
        _png(tmp_path / "split" / split / c / "0.png", (4, 4), 0, mode="L")
    with pytest.raises(DatasetError, match=r"test/ has classes that train/ lacks: c"):
        dataset_info({"name": "folder", "path": str(tmp_path / "split")})
    (tmp_path / "broken" / "a").mkdir(parents=True)
    _png(tmp_path / "broken" / "b" / "0.png", (4, 4), 0, mode="L")
    _png(tmp_path / "broken" / "b" / "1.png", (4, 4), 0, mode="L")
    (tmp_path / "broken" / "a" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"image .*0.png cannot be read"):
        dataset_info({"name": "folder", "path": str(tmp_path / "broken")})
    with pytest.raises(DatasetError, match=r"dataset.task = 'regression': .* is an image folder"):
        dataset_info({"name": "folder", "path": str(tmp_path / "split"), "task": "regression"})


DATA_FUNCTIONS = '''
import numpy as np
import torch


def as_dict(n=10, classes=3):
    g = torch.Generator().manual_seed(n)
    return {"x_train": torch.randn(n, 4, generator=g), "y_train": torch.arange(n) % classes,
            "x_test": torch.randn(3, 4, generator=g), "y_test": torch.arange(3) % classes}


def as_pair(n=12):
    return np.linspace(0, 1, n)[:, None], np.sin(np.linspace(0, 1, n))


def as_four():
    return tuple(as_dict().values())


def broken():
    raise OSError("cannot reach my database")


def strange():
    return "data"
'''


@pytest.fixture
def data_module(tmp_path, monkeypatch):
    (tmp_path / "userdata_mod.py").write_text(textwrap.dedent(DATA_FUNCTIONS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "userdata_mod", raising=False)  # each test imports its own copy
    return "userdata_mod"


def test_dataset_functions_in_each_return_form(data_module):
    ds = load_dataset(f"{data_module}:as_dict", options={"n": "8"}, standardize=False)  # "8": a --config string
    assert ds.train_x.shape == (8, 4) and ds.num_outputs == 3 and ds.task == "classification"
    assert ds.train_y.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    pair = load_dataset(f"{data_module}:as_pair", test_fraction=0.25)
    assert pair.task == "regression" and pair.in_shape == (1,) and len(pair.test_y) == 3
    four = load_dataset(f"{data_module}:as_four", standardize=False)
    assert torch.equal(four.train_x, torch.randn(10, 4, generator=torch.Generator().manual_seed(10)))
    info = dataset_info({"name": f"{data_module}:as_dict", "options": {"n": 8}})
    _info_matches(info, ds)
    assert info.label == "userdata_mod-as_dict"


def test_dataset_function_refusals(data_module):
    with pytest.raises(DatasetError, match=r"dataset.name = 'userdata_mod:broken': the function failed: OSError: cannot reach my database"):
        dataset_info({"name": f"{data_module}:broken"})
    with pytest.raises(DatasetError, match=r"the function returned str; expected a dict"):
        dataset_info({"name": f"{data_module}:strange"})
    with pytest.raises(DatasetError, match=r"unknown option dataset.options.size: as_dict takes n, classes"):
        dataset_info({"name": f"{data_module}:as_dict", "options": {"size": 3}})
    with pytest.raises(DatasetError, match=r"dataset.name = 'userdata_mod:gone': userdata_mod has no function 'gone'"):
        dataset_info({"name": f"{data_module}:gone"})


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


GOOD_X, GOOD_Y = np.zeros((10, 2)), np.arange(10) % 2


@pytest.mark.parametrize(
    "arrays, cfg, expected",
    [
        (dict(x=np.where(np.eye(10, 2) > 0, np.nan, 0.0), y=GOOD_Y), {}, "'x' has 2 NaN or infinite values"),
        (dict(x=GOOD_X, y=np.where(np.arange(10) == 3, np.inf, 0.5)), {}, "'y' has 1 NaN or infinite values"),
        (dict(x=GOOD_X, y=GOOD_Y[:9]), {}, "'x' and 'y' need one row per sample; got shapes [10, 2] and [9]"),
        (dict(x_train=GOOD_X, y_train=GOOD_Y, x_test=np.zeros((3, 3)), y_test=GOOD_Y[:3]), {},
         "train and test samples differ in shape: 'x_train' [2], 'x_test' [3]"),
        (dict(x_train=GOOD_X, y_train=GOOD_Y, x_test=np.zeros((0, 2)), y_test=GOOD_Y[:0]), {}, "the test split is empty"),
        (dict(x=GOOD_X[:1], y=GOOD_Y[:1]), {}, "1 samples split by dataset.test_fraction = 0.25 leave 1 for training and 0 for testing"),
        (dict(x=np.array(["a"] * 10), y=GOOD_Y), {}, "'x' holds <U1 values, not real numbers"),
        (dict(x=GOOD_X, y=GOOD_Y * 5), {"num_classes": 3}, "labels go up to 5, but dataset.num_classes = 3"),
        (dict(x=GOOD_X, y=GOOD_Y - 1), {}, "'y' (train part) holds negative labels (smallest -1)"),
        (dict(x=GOOD_X, y=GOOD_Y * 0.5), {"task": "classification"}, "holds non-integer values such as 0.5, which are not class labels"),
        (dict(x=GOOD_X, y=np.zeros((10, 2), dtype=int)), {"task": "classification"}, "must be one integer per sample (shape [N]); got [8, 2]"),
        (dict(x=GOOD_X, y=GOOD_Y * 0), {}, "every label is 0; classification needs at least 2 classes"),
        (dict(x=GOOD_X, y=GOOD_Y), {"task": "regression", "num_classes": 2}, "dataset.num_classes = 2 applies to classification"),
        (dict(x=GOOD_X, y=GOOD_Y), {"augment": True}, "dataset.augment: true crops and flips images (N x C x H x W)"),
        (dict(x_train=GOOD_X, y_train=GOOD_Y), {}, "arrays x_test, y_test missing; expected x_train, y_train, x_test, y_test or x, y; found: x_train, y_train"),
        (dict(x=GOOD_X, y=GOOD_Y, x_train=GOOD_X), {}, "has both arrays x_train and x, y; keep one layout"),
        (dict(features=GOOD_X, labels=GOOD_Y), {}, "found: features, labels"),
        (dict(x=GOOD_X, y=GOOD_Y), {"task": "segmentation"}, "dataset.task = 'segmentation' is not allowed; allowed values: auto, classification, regression"),
    ],
)
def test_bad_data_files_are_refused_naming_the_file_and_the_key(tmp_path, arrays, cfg, expected):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DatasetError) as err:
        dataset_info({"name": "file", "path": path, **cfg})
    msg = str(err.value)
    assert expected in msg
    if "dataset.task =" not in expected:
        assert path in msg


def test_file_refusals_for_the_path_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"dataset.name = 'file' needs dataset.path"):
        dataset_info({"name": "file"})
    with pytest.raises(catalog.InputNotFoundError, match=r"dataset.path = 'missing.npz' not found \(looked for .*missing.npz\)"):
        dataset_info({"name": "file", "path": "missing.npz"})
    (tmp_path / "d.csv").write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"dataset.path = 'd.csv' .*dataset.name: file needs a .npz, .pt, .parquet file"):
        dataset_info({"name": "file", "path": "d.csv"})
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"dataset.path = 'bad.npz' .*cannot be read as a .npz file"):
        dataset_info({"name": "file", "path": "bad.npz"})
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(DatasetError, match=r"array 'x' cannot be read without pickle"):
        dataset_info({"name": "file", "path": "obj.npz"})
    torch.save({"x": np.zeros((4, 2)), "y": np.arange(4)}, tmp_path / "np.pt")
    with pytest.raises(DatasetError, match=r"dataset.path = 'np.pt' .*refused, it holds pickled Python objects, not only tensors \(numpy.*Save tensors only"):
        dataset_info({"name": "file", "path": "np.pt"})
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    with pytest.raises(DatasetError, match=r"holds a list; expected a dict of tensors"):
        dataset_info({"name": "file", "path": "list.pt"})
    with pytest.raises(DatasetError, match=r"unknown key dataset.lable_column"):
        dataset_info({"name": "file", "path": "np.pt", "lable_column": "y"})
    with pytest.raises(DatasetError, match=r"dataset.name = 'imagenet': unknown dataset; known datasets: digits"):
        dataset_info({"name": "imagenet"})


def test_relative_data_paths_resolve_against_the_workflow_folder(tmp_path, monkeypatch):
    (tmp_path / "wf" / "data").mkdir(parents=True)
    np.savez(tmp_path / "wf" / "data" / "d.npz", x=GOOD_X, y=GOOD_Y)
    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    monkeypatch.setenv(catalog.WORKFLOW_DIR_ENV, str(tmp_path / "wf"))
    assert dataset_info({"name": "file", "path": "data/d.npz"}).n_train == 8


def test_validation_results_are_cached_by_path_size_mtime_and_config(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((20, 3)), y=np.arange(20) % 4)
    cache = tmp_path / "cache"
    cfg = {"name": "file", "path": str(path)}
    first = dataset_info(cfg, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1
    stored = json.loads(next(cache.iterdir()).read_text())
    assert stored["info"] == [[3], 4, "classification", 15, 5, "d"]

    def must_not_read(spec):
        raise AssertionError("read the file again")

    monkeypatch.setattr(data, "_user_info", must_not_read)
    assert dataset_info(cfg, cache_dir=cache) == first
    assert dataset_info({**cfg, "standardize": False}, cache_dir=cache) == first  # not a key of the info
    with pytest.raises(AssertionError, match="read the file again"):
        dataset_info({**cfg, "test_fraction": 0.5}, cache_dir=cache)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read the file again"):
        dataset_info(cfg, cache_dir=cache)
    monkeypatch.undo()
    np.savez(path, x=np.zeros((20, 3)), y=np.arange(20) % 5)
    assert dataset_info(cfg, cache_dir=cache).num_outputs == 5


def test_folder_cache_notices_a_new_image(tmp_path):
    for c in ("a", "b"):
        for i in range(2):
            _png(tmp_path / "f" / c / f"{i}.png", (4, 4), 0, mode="L")
    cfg = {"name": "folder", "path": str(tmp_path / "f"), "test_fraction": 0.25}
    assert dataset_info(cfg, cache_dir=tmp_path / "c").n_train == 3
    _png(tmp_path / "f" / "b" / "2.png", (4, 4), 0, mode="L")
    assert dataset_info(cfg, cache_dir=tmp_path / "c").n_train == 4
