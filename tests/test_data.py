import pytest
import torch

from losslab import data


def test_digits_split_is_fixed_and_shaped():
    a = data.load_dataset("digits", split_seed=0)
    b = data.load_dataset("digits", split_seed=0)
    c = data.load_dataset("digits", split_seed=1)
    assert a.train_x.shape[1:] == (1, 8, 8) and a.in_shape == (1, 8, 8)
    assert a.train_x.shape[0] + a.test_x.shape[0] == 1797
    assert a.test_x.shape[0] == round(1797 * 0.25)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.test_y, c.test_y)
    assert a.num_outputs == 10 and a.task == "classification"
    assert abs(a.train_x.mean().item()) < 1e-4  # standardised on the training split


def test_digits_are_exactly_scikit_learns_load_digits():
    import numpy as np
    from sklearn.datasets import load_digits

    images, target = data.digits_arrays()
    bunch = load_digits()
    assert images.shape == (1797, 8, 8)
    assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)


def test_regression1d_has_gap_and_dense_test_grid():
    ds = data.load_dataset("regression1d")
    x = ds.train_x[:, 0]
    assert ds.task == "regression" and ds.num_outputs == 1
    assert not ((x > -1.0) & (x < 1.0)).any()  # the gap where functions may differ
    assert ds.test_x.shape == (200, 1)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError, match="known datasets: digits"):
        data.load_dataset("imagenet")


def test_missing_torchvision_data_names_folder_and_option(tmp_path):
    with pytest.raises(data.DataMissingError) as err:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and "dataset.download: true" in msg


def test_eval_subsets_are_seeded_and_sized():
    ds = data.load_dataset("digits")
    e1 = data.eval_data(ds, 100, 50, 32, seed=3)
    e2 = data.eval_data(ds, 100, 50, 32, seed=3)
    assert e1.train_x.shape[0] == 100 and e1.test_x.shape[0] == 50 and e1.bn_x.shape[0] == 32
    assert torch.equal(e1.train_x, e2.train_x)
    full = data.eval_data(ds, 10**6, 10**6, 10, seed=0)
    assert full.test_x.shape[0] == ds.test_x.shape[0]


def test_crop_flip_augmentation_keeps_shape_and_changes_pixels():
    x = torch.randn(8, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    y = data.augment_batch(x, "crop_flip", g)
    assert y.shape == x.shape and not torch.equal(x, y)
    assert torch.equal(data.augment_batch(x, "none", g), x)


def _write_idx(path, array):
    import struct

    import numpy as np

    codes = {np.dtype("uint8"): 0x08}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.tobytes())


def test_torchvision_mnist_loads_from_data_dir(tmp_path):
    """The real torchvision loading path, on tiny MNIST idx files written here (no network)."""
    import numpy as np

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    data.check_available("mnist", tmp_path, download=False)
    ds = data.load_dataset("mnist", data_dir=tmp_path, download=False)
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.test_x.shape == (10, 1, 28, 28)
    assert ds.num_outputs == 10 and ds.train_y.tolist()[:3] == [0, 1, 2]
    assert abs(ds.train_x.mean().item()) < 1e-4


def test_built_in_dataset_info_is_static_and_matches_the_loaded_data():
    for cfg in ({"name": "digits", "test_fraction": 0.3}, {"name": "regression1d"}):
        info, ds = data.dataset_info(cfg), data.load_dataset(**cfg)
        assert (info.in_shape, info.num_outputs, info.task) == (ds.in_shape, ds.num_outputs, ds.task)
        assert (info.n_train, info.n_test, info.label) == (len(ds.train_y), len(ds.test_y), cfg["name"])
    assert data.dataset_info({"name": "cifar100", "download": True}) == data.DatasetInfo((3, 32, 32), 100, "classification", 50000, 10000, "cifar100")
    assert data.dataset_info({"name": "mnist", "download": True}).in_shape == (1, 28, 28)


def test_built_in_dataset_info_checks_torchvision_files(tmp_path):
    with pytest.raises(data.DataMissingError, match="dataset.download: true"):
        data.dataset_info({"name": "cifar10", "data_dir": str(tmp_path), "download": False})


def test_a_failed_download_does_not_advise_download_true(tmp_path, monkeypatch):
    import urllib.error

    import torchvision

    def offline(self):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(data.DataMissingError) as err:
        data.load_dataset("cifar10", data_dir=tmp_path, download=True)
    msg = str(err.value)
    assert "downloading into data_dir" in msg and "failed" in msg and "name resolution" in msg
    assert "download: true" not in msg and "copy data/cifar-10-batches-py" in msg
