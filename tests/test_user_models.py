"""The researcher's own models: factories from a file, a package and torchvision; the parse-time
inspection on the meta device; typed options of the built-in models."""
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import REPO
from losslab import catalog, models
from losslab.models import ModelSpecError, build_model, inspect_model

NET1D = '''
import torch
from torch import nn


def build(input_shape, num_outputs, hidden=8, pool=True):
    """A 1-D convolutional network for inputs of shape (channels, length)."""
    channels, length = input_shape
    layers = [nn.Conv1d(channels, hidden, 3, padding=1), nn.ReLU()]
    if pool:
        layers.append(nn.AdaptiveAvgPool1d(1))
        length = 1
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(hidden * length, num_outputs))


def pooled(input_shape, num_outputs):
    """Reads only the channel count: an input of another rank fails in the forward."""
    return nn.Sequential(nn.Conv1d(input_shape[0], 4, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, num_outputs))


def not_a_module(input_shape, num_outputs):
    return 42


def failing(input_shape, num_outputs):
    raise RuntimeError("my factory cannot build this")


def wrong_outputs(input_shape, num_outputs):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_outputs + 2))


class DataDependent(nn.Module):
    """A forward that reads a value (``.item()``), which the meta device cannot do."""

    def __init__(self, input_shape, num_outputs):
        super().__init__()
        self.lin = nn.Linear(input_shape[0] * input_shape[1], num_outputs)

    def forward(self, x):
        scale = 1.0 if x.abs().sum().item() >= 0 else 2.0
        return self.lin(x.flatten(1)) * scale
'''


def _write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_factory_from_a_file_builds_and_inspects(tmp_path, monkeypatch):
    _write(tmp_path, "net1d.py", NET1D)
    monkeypatch.chdir(tmp_path)
    spec = {"name": "net1d.py:build", "options": {"hidden": 6}}
    torch.manual_seed(0)
    module = build_model(spec, (2, 16), 3)
    assert isinstance(module[0], torch.nn.Conv1d) and module[0].out_channels == 6
    assert module(torch.randn(5, 2, 16)).shape == (5, 3)
    info = inspect_model(spec, (2, 16), 3)
    assert info.num_params == _count(module) == (2 * 3 * 6 + 6) + (6 * 3 + 3)
    assert info.param_bytes == 4 * info.num_params and info.buffer_bytes == 0
    assert info.output_shape == (2, 3) and not info.has_batchnorm


def test_file_paths_resolve_against_the_workflow_folder_and_files_never_collide(tmp_path, monkeypatch):
    _write(tmp_path / "a", "model.py", "from torch import nn\ndef make(s, n):\n    return nn.Linear(s[0], n)\n")
    _write(tmp_path / "b", "model.py", "from torch import nn\ndef make(s, n):\n    return nn.Sequential(nn.Linear(s[0], 7), nn.Linear(7, n))\n")
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(catalog.WORKFLOW_DIR_ENV, str(tmp_path))
    a = build_model({"name": "a/model.py:make"}, (4,), 2)
    b = build_model({"name": "b/model.py:make"}, (4,), 2)
    assert isinstance(a, torch.nn.Linear) and isinstance(b, torch.nn.Sequential)
    # the working directory wins over the workflow folder
    _write(elsewhere / "a", "model.py", "from torch import nn\ndef make(s, n):\n    return nn.Bilinear(s[0], s[0], n)\n")
    assert isinstance(build_model({"name": "a/model.py:make"}, (4,), 2), torch.nn.Bilinear)


def test_factory_from_a_package_on_sys_path_and_beside_the_config(tmp_path, monkeypatch):
    _write(tmp_path / "pkg_on_path" / "userpkg_one", "__init__.py", "")
    _write(tmp_path / "pkg_on_path" / "userpkg_one", "nets.py", NET1D)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg_on_path"))
    assert _count(build_model({"name": "userpkg_one.nets:build"}, (1, 10), 4)) == (3 * 8 + 8) + (8 * 4 + 4)
    # a package folder in the working directory imports without being on sys.path
    _write(tmp_path / "cwd" / "userpkg_two", "__init__.py", NET1D)
    monkeypatch.chdir(tmp_path / "cwd")
    info = inspect_model({"name": "userpkg_two:build", "options": {"pool": False}}, (1, 10), 4)
    assert info.num_params == (3 * 8 + 8) + (8 * 10 * 4 + 4)
    assert str(tmp_path / "cwd") not in sys.path


def test_command_line_strings_take_the_type_of_the_factorys_defaults(tmp_path, monkeypatch):
    _write(tmp_path, "net1d.py", NET1D)
    monkeypatch.chdir(tmp_path)
    strings = build_model({"name": "net1d.py:build", "options": {"hidden": "5", "pool": "false"}}, (1, 4), 2)
    typed = build_model({"name": "net1d.py:build", "options": {"hidden": 5, "pool": False}}, (1, 4), 2)
    assert [p.shape for p in strings.parameters()] == [p.shape for p in typed.parameters()]
    assert strings[-1].in_features == 5 * 4  # no pooling: "false" was read as False


@pytest.mark.parametrize(
    "name, options, shape, expected",
    [
        ("net1d.py:failing", {}, (1, 4), ["model.name = 'net1d.py:failing'", "my factory cannot build this"]),
        ("net1d.py:not_a_module", {}, (1, 4), ["model.name = 'net1d.py:not_a_module'", "returned int, not an nn.Module"]),
        ("net1d.py:wrong_outputs", {}, (1, 4), ["output has shape (2, 5)", "expected (2, 3)"]),
        ("net1d.py:build", {}, (1, 4, 4), ["building it for input shape (1, 4, 4)", "too many values to unpack"]),
        ("net1d.py:pooled", {}, (1, 4, 4), ["forward fails on a batch of input shape (1, 4, 4)", "conv1d"]),
        ("net1d.py:build", {"hiden": 3}, (1, 4), ["unknown option model.options.hiden", "hidden, pool"]),
        ("net1d.py:nothing", {}, (1, 4), ["model.name = 'net1d.py:nothing'", "no function 'nothing'", "build"]),
        ("no_such_pkg_xyz.nets:build", {}, (1, 4), ["model.name = 'no_such_pkg_xyz.nets:build'", "cannot import"]),
        ("alexnet", {}, (1, 4), ["model.name = 'alexnet'", "known models: simplecnn", "torchvision:<name>"]),
    ],
)
def test_user_model_refusals_name_the_key_and_the_cause(tmp_path, monkeypatch, name, options, shape, expected):
    _write(tmp_path, "net1d.py", NET1D)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelSpecError) as err:
        inspect_model({"name": name, "options": options}, shape, 3)
    for text in expected:
        assert text in str(err.value)


def test_missing_model_file_names_the_key_and_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(catalog.WORKFLOW_DIR_ENV, str(tmp_path / "wf"))
    with pytest.raises(catalog.InputNotFoundError) as err:
        inspect_model({"name": "nets/mine.py:build"}, (1, 4), 3)
    msg = str(err.value)
    assert "model.name = 'nets/mine.py:build'" in msg
    assert str(tmp_path / "nets" / "mine.py") in msg and str(tmp_path / "wf" / "nets" / "mine.py") in msg


def test_a_forward_the_meta_device_cannot_run_is_checked_on_the_cpu(tmp_path, monkeypatch):
    _write(tmp_path, "net1d.py", NET1D)
    monkeypatch.chdir(tmp_path)
    info = inspect_model({"name": "net1d.py:DataDependent"}, (2, 3), 4)
    assert info.output_shape == (2, 4) and info.num_params == 6 * 4 + 4


def test_big_models_run_their_forward_check_on_the_meta_device(tmp_path, monkeypatch):
    _write(tmp_path, "net1d.py", NET1D)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "CPU_CHECK_BYTES", 0)  # every model counts as big
    info = inspect_model({"name": "mlp", "options": {"hidden": 16, "depth": 1}}, (1, 8, 8), 10)
    assert info.num_params == 64 * 16 + 16 + 16 * 10 + 10 and info.output_shape == (2, 10)
    with pytest.raises(ModelSpecError, match=r"forward fails on a batch of input shape \(1, 4, 4\)"):
        inspect_model({"name": "net1d.py:pooled"}, (1, 4, 4), 3)
    with pytest.raises(ModelSpecError, match="meta"):  # proves the forward ran on meta tensors
        inspect_model({"name": "net1d.py:DataDependent"}, (2, 3), 4)


def test_inspection_leaves_the_random_state_alone():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    inspect_model({"name": "simplecnn", "batchnorm": True}, (1, 8, 8), 10)
    assert torch.equal(torch.get_rng_state(), before)


def test_torchvision_model_with_the_right_class_count():
    import torchvision

    info = inspect_model({"name": "torchvision:resnet18"}, (3, 32, 32), 10)
    reference = torchvision.models.resnet18(num_classes=10)
    assert info.num_params == _count(reference) and info.output_shape == (2, 10) and info.has_batchnorm
    module = build_model({"name": "torchvision:resnet18"}, (3, 32, 32), 10)
    assert module.fc.out_features == 10


def test_torchvision_model_that_does_not_fit_the_input_is_refused_with_torchs_message():
    with pytest.raises(ModelSpecError) as err:
        inspect_model({"name": "torchvision:resnet18"}, (1, 8, 8), 10)
    msg = str(err.value)
    assert "model.name = 'torchvision:resnet18'" in msg and "input shape (1, 8, 8)" in msg
    assert "expected input[2, 1, 8, 8] to have 3 channels, but got 1 channels instead" in msg


def test_unknown_torchvision_name_suggests_close_ones():
    with pytest.raises(ModelSpecError, match=r"no classification model 'resnet81'; close names: .*resnet18"):
        inspect_model({"name": "torchvision:resnet81"}, (3, 32, 32), 10)


def test_torchvision_weights_file_is_loaded_and_its_keys_checked(tmp_path):
    import torchvision

    torch.manual_seed(1)
    trained = torchvision.models.get_model("resnet18", num_classes=10)
    torch.save(trained.state_dict(), tmp_path / "r18.pt")
    spec = {"name": "torchvision:resnet18", "weights": str(tmp_path / "r18.pt")}
    module = build_model(spec, (3, 32, 32), 10)
    for (name, a), b in zip(trained.state_dict().items(), module.state_dict().values()):
        assert torch.equal(a, b), name
    assert inspect_model(spec, (3, 32, 32), 10).num_params == _count(trained)
    with pytest.raises(ModelSpecError) as err:  # the file is for 10 classes
        inspect_model(spec, (3, 32, 32), 7)
    msg = str(err.value)
    assert "model.weights" in msg and "fc.weight (file [10, 512], model [7, 512])" in msg and "fc.bias" in msg


def test_weights_are_refused_for_models_other_than_torchvision():
    with pytest.raises(ModelSpecError, match="model.weights = 'w.pt': a weights file is read for torchvision: models only"):
        inspect_model({"name": "mlp", "weights": "w.pt"}, (1, 8, 8), 10)


def test_an_absurdly_wide_model_is_refused_with_its_size_without_allocating_it():
    spec = {"name": "simplecnn", "width": 1e5}
    count = inspect_model(spec, (3, 32, 32), 10).num_params  # 553 TB of float32: only meta survives this
    assert count > 10**14
    with pytest.raises(ModelSpecError) as err:
        inspect_model(spec, (3, 32, 32), 10, max_bytes=1 << 30)
    msg = str(err.value)
    assert f"{count:,} parameters" in msg and "TiB of parameters and buffers" in msg and "1.0 GiB allowed" in msg
    assert "model.name = 'simplecnn' (width 100000.0" in msg


def test_built_in_inspection_does_not_import_torchvision():
    code = ("import sys; from losslab.models import inspect_model; "
            "[inspect_model({'name': n}, (3, 32, 32), 10) for n in ('simplecnn', 'mlp', 'resnet20', 'vgg_small')]; "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "src")}).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    "name, options, typed",
    [
        ("resnet20", {"skip": "false", "blocks": "2"}, {"skip": False, "blocks": 2}),
        ("resnet20", {"skip": "True"}, {"skip": True}),
        ("mlp", {"hidden": "32", "depth": 3.0, "activation": "tanh"}, {"hidden": 32, "depth": 3, "activation": "tanh"}),
        ("simplecnn", {"channels": ["8", 16]}, {"channels": [8, 16]}),
    ],
)
def test_built_in_options_are_typed_and_command_line_strings_converted(name, options, typed):
    assert catalog.check_model_spec({"name": name, "options": options})["options"] == typed


def test_skip_false_from_the_command_line_really_removes_the_skips():
    module = build_model({"name": "resnet20", "options": {"skip": "false"}}, (3, 8, 8), 10)
    blocks = [m for m in module.modules() if isinstance(m, models.BasicBlock)]
    assert len(blocks) == 9 and not any(b.skip for b in blocks)


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("mlp", {"hidden": "abc"}, "model.options.hidden = 'abc' is not allowed for model 'mlp'; it must be an integer >= 1"),
        ("mlp", {"depth": 0}, "model.options.depth = 0 is not allowed"),
        ("mlp", {"hidden": True}, "model.options.hidden = True is not allowed"),
        ("mlp", {"activation": "sigmoid"}, "it must be one of: relu, tanh"),
        ("resnet20", {"skip": "maybe"}, "model.options.skip = 'maybe' is not allowed for model 'resnet20'; it must be true or false"),
        ("resnet20", {"blocks": 1.5}, "model.options.blocks = 1.5 is not allowed"),
        ("simplecnn", {"channels": []}, "it must be a non-empty list of integers >= 1"),
        ("simplecnn", {"channels": 16}, "model.options.channels = 16 is not allowed"),
        ("vgg_small", {"channels": [8, -1]}, "model.options.channels = [8, -1] is not allowed"),
        ("resnet20", {"skipp": False}, "unknown option model.options.skipp for model 'resnet20'; allowed options: skip, blocks"),
    ],
)
def test_built_in_option_refusals(name, options, expected):
    with pytest.raises(ModelSpecError) as err:
        inspect_model({"name": name, "options": options}, (3, 8, 8), 10)
    assert expected in str(err.value)


def test_options_that_do_not_fit_the_input_are_refused():
    with pytest.raises(ModelSpecError) as err:
        inspect_model({"name": "simplecnn", "options": {"channels": [8, 8, 8, 8]}}, (1, 8, 8), 10)
    msg = str(err.value)
    assert "model.options.channels = [8, 8, 8, 8] does not fit input shape (1, 8, 8)" in msg and "at most 3 entries" in msg
    with pytest.raises(ModelSpecError, match=r"vgg_small needs image inputs of shape C x H x W; the data's input shape is \(1,\)"):
        inspect_model({"name": "vgg_small"}, (1,), 1)


def test_messages_name_the_key_the_caller_gives():
    with pytest.raises(ModelSpecError, match=r"^endpoints.settings.wide.options.hidden = 0 is not allowed"):
        inspect_model({"name": "mlp", "options": {"hidden": 0}}, (1, 8, 8), 10, key="endpoints.settings.wide")


def test_model_forms_and_path_labels():
    assert catalog.model_kind("mlp") == "builtin"
    assert catalog.model_kind("torchvision:resnet18") == "torchvision"
    assert catalog.model_kind("models/net1d.py:build") == "file"
    assert catalog.model_kind("mypkg.nets:build") == "package"
    for bad in ("mypkg.nets", "torchvision:", "a b:c", "x.py:"):
        with pytest.raises(ModelSpecError, match="unknown model"):
            catalog.model_kind(bad)
    assert catalog.model_label("mlp") == "mlp"
    assert catalog.model_label("torchvision:resnet18") == "torchvision-resnet18"
    assert catalog.model_label("models/net1d.py:build") == "net1d-build"
    assert catalog.model_label("mypkg.nets:build") == "mypkg.nets-build"


def test_a_user_model_too_big_for_the_limit_is_refused_naming_its_options(tmp_path, monkeypatch):
    _write(tmp_path, "net1d.py", NET1D)
    monkeypatch.chdir(tmp_path)
    spec = {"name": "net1d.py:build", "options": {"hidden": 10**6}}
    with pytest.raises(ModelSpecError) as err:
        inspect_model(spec, (2, 16), 3, max_bytes=1 << 20)
    msg = str(err.value)
    assert "model.name = 'net1d.py:build' (options {'hidden': 1000000}) has 10,000,003 parameters" in msg
    assert "38.1 MiB of parameters and buffers, more than the 1.0 MiB allowed" in msg and "width" not in msg
