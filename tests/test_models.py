import pytest
import torch

from losslab.models import MODELS, build_model, model_options


SIGNAL_ONLY = {"cnn1d"}  # 1-D signals (C x L); every other model takes images


@pytest.mark.parametrize("name", sorted(set(MODELS) - SIGNAL_ONLY))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_every_model_runs_on_every_input_size(name, shape):
    torch.manual_seed(0)
    m = build_model({"name": name, "width": 0.5, "dropout": 0.1, "batchnorm": name != "transformer"}, shape, 10)
    out = m(torch.randn(4, *shape))
    assert out.shape == (4, 10)


@pytest.mark.parametrize("name", ["cnn1d", "mlp", "transformer"])
@pytest.mark.parametrize("shape", [(1, 40), (2, 16)])
def test_signal_models_run_on_1d_signals(name, shape):
    torch.manual_seed(0)
    m = build_model({"name": name, "width": 0.5, "dropout": 0.1, "batchnorm": name != "transformer"}, shape, 10)
    assert m(torch.randn(4, *shape)).shape == (4, 10)


def test_cnn1d_is_the_mnist1d_papers_kind_and_refuses_images():
    m = build_model({"name": "cnn1d"}, (1, 40), 10)
    convs = [l for l in m.modules() if isinstance(l, torch.nn.Conv1d)]
    assert [c.out_channels for c in convs] == [25, 25, 25]
    assert [c.kernel_size for c in convs] == [(5,), (3,), (3,)] and all(c.stride == (2,) for c in convs)
    assert m.head.in_features == 25 * 5  # 40 -> 19 -> 10 -> 5
    from losslab.catalog import ModelSpecError

    with pytest.raises(ModelSpecError, match="1-D signals"):
        build_model({"name": "cnn1d"}, (1, 8, 8), 10)
    with pytest.raises(ModelSpecError, match="kernel = 45 does not fit"):
        build_model({"name": "cnn1d", "options": {"kernel": 45}}, (1, 40), 10)


def test_simplecnn_is_the_papers_architecture():
    m = build_model({"name": "simplecnn"}, (3, 32, 32), 10)
    convs = [l for l in m.modules() if isinstance(l, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert m.head.in_features == 32 * 4 * 4
    assert sum(isinstance(l, torch.nn.MaxPool2d) for l in m.modules()) == 3


def test_width_dropout_and_batchnorm_switches():
    base = build_model({"name": "simplecnn"}, (1, 8, 8), 10)
    wide = build_model({"name": "simplecnn", "width": 2.0}, (1, 8, 8), 10)
    bn = build_model({"name": "simplecnn", "batchnorm": True}, (1, 8, 8), 10)
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(wide) > 3 * n(base)
    assert any(isinstance(l, torch.nn.BatchNorm2d) for l in bn.modules())
    assert not any(isinstance(l, torch.nn.BatchNorm2d) for l in base.modules())
    drop = build_model({"name": "mlp", "dropout": 0.5}, (1, 8, 8), 10)
    assert any(isinstance(l, torch.nn.Dropout) and l.p == 0.5 for l in drop.modules())


def test_resnet20_skip_switch_changes_the_function_not_the_layout():
    torch.manual_seed(0)
    a = build_model({"name": "resnet20", "options": {"skip": True}}, (3, 32, 32), 10)
    torch.manual_seed(0)
    b = build_model({"name": "resnet20", "options": {"skip": False}}, (3, 32, 32), 10)
    convs = [l for l in a.modules() if isinstance(l, torch.nn.Conv2d) and l.kernel_size == (3, 3)]
    assert len(convs) == 19  # 1 stem + 9 blocks x 2 (+ linear head = 20 layers)
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(a(x), b(x))


def test_unknown_model_and_option_errors_list_the_known_ones():
    with pytest.raises(ValueError, match="known models: simplecnn, mlp, resnet20, vgg_small"):
        build_model({"name": "alexnet"}, (1, 8, 8), 10)
    with pytest.raises(ValueError, match="allowed options: skip"):
        build_model({"name": "resnet20", "options": {"skipp": False}}, (3, 32, 32), 10)
    assert set(model_options("mlp")) == {"hidden", "depth", "activation"}


def test_catalogue_matches_the_model_constructors():
    """Config validation reads the torch-free catalogue; it must list exactly the real options."""
    from losslab import catalog

    assert set(catalog.MODEL_OPTIONS) == set(MODELS)
    for name in MODELS:
        assert set(catalog.MODEL_OPTIONS[name]) == set(model_options(name)), name


def test_config_validation_does_not_import_torch():
    """Every parse of the workflow (dry runs, each SLURM job step) validates the config."""
    import subprocess
    import sys

    code = "import sys, losslab.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(__import__("conftest").REPO / "src")}).stdout
    assert out.strip() == "False"
