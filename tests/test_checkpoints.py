"""Networks trained outside losslab: state-dict .pt and .safetensors files as weight-space points."""
import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from losslab import catalog, checkpoints
from losslab.checkpoints import CheckpointError, check_external, load_external
from losslab.flat import FlatModel
from losslab.models import build_model, spec_json

SPEC = {"name": "simplecnn", "width": 0.25, "batchnorm": True}
SHAPE = (1, 8, 8)
KEY = "endpoints.external.mine[0]"


def _trained(seed=0):
    """A model with weights and BatchNorm statistics that differ from a fresh one's."""
    torch.manual_seed(seed)
    module = build_model(SPEC, SHAPE, 10)
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(16, *SHAPE) * 2 + 1)  # running statistics move away from 0 / 1
    return module.eval()


def _fresh(device=None):
    torch.manual_seed(99)
    return build_model(SPEC, SHAPE, 10, device=device)


def _save(state, path):
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("suffix, wrap", [(".pt", None), (".pt", "state_dict"), (".pth", "model"), (".safetensors", None)])
def test_external_checkpoint_evaluates_exactly_like_its_module(tmp_path, suffix, wrap):
    module = _trained()
    state = {f"module.{k}": v for k, v in module.state_dict().items()}
    path = _save({wrap: state} if wrap else state, tmp_path / f"net{suffix}")
    point = load_external(path, _fresh(), "module.", model_spec=SPEC, key=KEY, seed=7)
    fm = FlatModel(_fresh())
    x = torch.randn(5, *SHAPE)
    fm.module.eval()
    with torch.no_grad():
        assert torch.equal(fm.forward(point.flat, x, point.buffers), module(x))
    assert point.flat.dtype == torch.float32 and point.flat.numel() == fm.numel
    assert set(point.buffers) == {k for k, _ in module.named_buffers()}
    assert point.meta["status"] == "ok" and point.meta["layout"] == fm.layout and point.meta["seed"] == 7
    assert point.meta["source"] == str(path) and point.model_spec == json.loads(spec_json(SPEC))
    assert point.meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_meta_model_is_enough_to_load_a_point(tmp_path):
    module = _trained()
    path = _save(module.state_dict(), tmp_path / "net.safetensors")
    on_meta = load_external(path, _fresh("meta"), model_spec=SPEC)
    on_cpu = load_external(path, _fresh(), model_spec=SPEC)
    assert torch.equal(on_meta.flat, on_cpu.flat) and not on_meta.flat.is_meta
    assert all(torch.equal(on_meta.buffers[k], on_cpu.buffers[k]) for k in on_cpu.buffers)


def test_absent_batch_counters_are_allowed_and_taken_as_zero(tmp_path):
    state = {k: v for k, v in _trained().state_dict().items() if not k.endswith("num_batches_tracked")}
    path = _save(state, tmp_path / "net.pt")
    check_external(path, _fresh("meta"))
    point = load_external(path, _fresh(), model_spec=SPEC)
    counters = [k for k in point.buffers if k.endswith("num_batches_tracked")]
    assert counters and all(point.buffers[k].item() == 0 for k in counters)


def test_half_precision_weights_are_cast_to_the_models_dtype(tmp_path):
    module = _trained()
    path = _save({k: v.half() if v.is_floating_point() else v for k, v in module.state_dict().items()}, tmp_path / "h.safetensors")
    point = load_external(path, _fresh(), model_spec=SPEC)
    assert point.flat.dtype == torch.float32
    assert torch.equal(point.flat, FlatModel(module).flatten().half().float())


def _broken_state():
    state = dict(_trained().state_dict())
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(3)
    state["features.0.weight"] = torch.zeros(9, 1, 3, 3)
    return {f"module.{k}": v for k, v in state.items()}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_missing_unexpected_and_mismatched_keys_are_listed_by_name(tmp_path, suffix):
    path = _save(_broken_state(), tmp_path / f"bad{suffix}")
    for check in (lambda: check_external(path, _fresh("meta"), "module.", key=KEY),
                  lambda: load_external(path, _fresh(), "module.", model_spec=SPEC, key=KEY)):
        with pytest.raises(CheckpointError) as err:
            check()
        msg = str(err.value)
        assert msg.startswith(f"{KEY} ({path}): does not match the model")
        assert "1 keys of the model are missing from the file: head.bias" in msg
        assert "1 keys of the file are not in the model: extra.weight" in msg
        assert "1 shapes differ: features.0.weight (file [9, 1, 3, 3], model [4, 1, 3, 3])" in msg


def test_a_long_list_is_cut_short_with_counts(tmp_path):
    path = _save({f"layer{i}.weight": torch.zeros(1) for i in range(20)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError) as err:
        check_external(path, _fresh("meta"), key=KEY)
    msg = str(err.value)
    assert "20 keys of the file are not in the model" in msg and "and 12 more (20 in all)" in msg
    n_model = len(_fresh().state_dict()) - 3  # three BN counters may be absent
    assert f"{n_model} keys of the model are missing from the file" in msg


def test_a_prefix_that_is_not_stripped_is_pointed_out(tmp_path):
    path = _save({f"module.{k}": v for k, v in _trained().state_dict().items()}, tmp_path / "dp.pt")
    with pytest.raises(CheckpointError, match=r"every key of the file begins with 'module.': set strip_prefix: 'module.'"):
        check_external(path, _fresh("meta"), key=KEY)
    with pytest.raises(CheckpointError, match=r"strip_prefix 'model.' matches no key of the file; its keys begin module.features"):
        check_external(path, _fresh("meta"), "model.", key=KEY)


def test_unsafe_and_unreadable_files_are_refused_naming_key_and_file(tmp_path, monkeypatch):
    torch.save(_trained(), tmp_path / "whole.pt")  # a pickled nn.Module: loading it would run code
    with pytest.raises(CheckpointError, match=r"endpoints.external.mine\[0\] \(.*whole.pt\): refused, it holds pickled Python objects, not only tensors \(losslab.models.SimpleCNN\).*model.state_dict"):
        check_external(tmp_path / "whole.pt", _fresh("meta"), key=KEY)
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"junk.safetensors\): cannot be read as a safetensors file"):
        check_external(tmp_path / "junk.safetensors", _fresh("meta"), key=KEY)
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"junk.pt\): cannot be read as a torch file \(unpickling failed: Unsupported operand"):
        load_external(tmp_path / "junk.pt", _fresh(), model_spec=SPEC, key=KEY)
    torch.save({"weights": torch.zeros(2), "epoch": 3}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"entries that are not tensors: epoch \(int\)"):
        check_external(tmp_path / "mixed.pt", _fresh("meta"), key=KEY)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"holds a list, not a state dict"):
        check_external(tmp_path / "list.pt", _fresh("meta"), key=KEY)
    (tmp_path / "net.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"unknown checkpoint format '.onnx'; allowed: .pt, .pth, .ckpt, .bin .* or .safetensors"):
        check_external(tmp_path / "net.onnx", _fresh("meta"), key=KEY)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(catalog.InputNotFoundError, match=r"endpoints.external.mine\[0\] = 'ckpt/a.pt' not found"):
        check_external("ckpt/a.pt", _fresh("meta"), key=KEY)


def test_the_parse_time_check_reads_names_and_shapes_only(tmp_path, monkeypatch):
    state = _trained().state_dict()
    st, pt = _save(state, tmp_path / "n.safetensors"), _save(state, tmp_path / "n.pt")
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("mmap"))
        return real_load(*args, **kwargs)

    def no_full_read(*args, **kwargs):
        raise AssertionError("read every weight")

    monkeypatch.setattr("safetensors.torch.load_file", no_full_read)
    monkeypatch.setattr(torch, "load", recording_load)
    check_external(st, _fresh("meta"))
    check_external(pt, _fresh("meta"))
    assert calls == [True]


def test_torchvision_style_weights_load_into_a_module(tmp_path):
    module = _trained()
    path = _save({f"model.{k}": v for k, v in module.state_dict().items()}, tmp_path / "w.ckpt")
    target = checkpoints.load_weights(path, _fresh(), key="model.weights", strip_prefix="model.")
    for (k, a), b in zip(module.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), k
