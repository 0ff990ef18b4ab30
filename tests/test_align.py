"""Permutation alignment: derived specs, function preservation, matching, REPAIR and line barriers."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab import align, data
from losslab.flat import FlatModel
from losslab.models import build_model
from losslab.train import TrainSettings, train_endpoint

# (name, options, groups expected): every built-in model
BUILTIN = [
    ("simplecnn", {}, 3),
    ("mlp", {"hidden": 12, "depth": 2}, 2),
    ("resnet20", {"skip": True}, 12),   # 3 residual streams + 9 inner block units
    ("resnet20", {"skip": False}, 19),  # every conv is its own group
    ("vgg_small", {}, 6),
]
CASES = [pytest.param(name, opts, bn, shape, 10, n, id=f"{name}-{opts}-bn{int(bn)}-{'x'.join(map(str, shape))}")
         for name, opts, n in BUILTIN for bn in (False, True) for shape in ((1, 8, 8), (3, 32, 32))]
CASES += [pytest.param("mlp", {"hidden": 12, "depth": 2, "activation": "tanh"}, bn, (1,), 1, 2,
                       id=f"mlp-regression1d-bn{int(bn)}") for bn in (False, True)]


def _model(name, opts, bn, shape, outputs, seed=0, width=0.25):
    """A seeded built-in model whose BatchNorm layers carry non-trivial affine parameters and
    running statistics (so that a wrongly permuted buffer changes the outputs)."""
    torch.manual_seed(seed)
    m = build_model({"name": name, "width": width, "dropout": 0.0, "batchnorm": bn, "options": opts}, shape, outputs)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.weight.copy_(1 + 0.3 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.3 * torch.randn(mod.bias.shape, generator=g))
                mod.running_mean.copy_(0.5 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
    return m


def _x(shape, n=16, seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def _close(a, b, tol=1e-5):
    return torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max().clamp_min(1)))


def _spec_of_preserving(m, x, seed=0):
    """The spec of ``m``, after checking that a random permutation moves its weights and keeps its outputs."""
    fm = FlatModel(m)
    spec = align.permutation_spec(m, x)
    pvec, _ = align.permute(spec, fm, fm.flatten(), None, spec.random(seed))
    assert not torch.equal(pvec, fm.flatten())
    assert _close(fm.outputs(pvec, x), fm.outputs(fm.flatten(), x))
    return spec


# ----- function preservation ------------------------------------------------------------------
@pytest.mark.parametrize("name,opts,bn,shape,outputs,n_groups", CASES)
def test_random_permutation_preserves_the_function(name, opts, bn, shape, outputs, n_groups):
    m = _model(name, opts, bn, shape, outputs)
    fm = FlatModel(m)
    x, bn_x = _x(shape), _x(shape, 64, seed=1)
    spec = align.permutation_spec(m, x)
    assert len(spec.groups) == n_groups
    head = [n for n, mod in m.named_modules() if isinstance(mod, nn.Linear)][-1]
    assert not any(a.name.startswith(head + ".") and a.axis == 0 for g in spec.groups for a in g.axes)
    assert not any(a.name.endswith("num_batches_tracked") for g in spec.groups for a in g.axes)

    vec, bufs = fm.flatten(), fm.buffers()
    pvec, pbufs = align.permute(spec, fm, vec, bufs, spec.random(1))
    assert not torch.equal(pvec, vec)
    assert torch.equal(pvec.sort().values, vec.sort().values)  # only moved, never changed
    ref = fm.outputs(vec, x, bufs)
    assert _close(fm.outputs(pvec, x, pbufs), ref)
    if bn:  # the buffers must move with their units
        assert not _close(fm.outputs(pvec, x, bufs), ref, 1e-3)
    assert _close(fm.outputs(pvec, x, fm.recompute_bn(pvec, bn_x)), fm.outputs(vec, x, fm.recompute_bn(vec, bn_x)))
    back = {k: torch.argsort(p) for k, p in spec.random(1).items()}  # the inverse permutation
    assert torch.equal(align.permute(spec, fm, pvec, None, back)[0], vec)


def test_resnet_stages_share_one_group_and_flatten_expands_into_blocks():
    m = _model("resnet20", {}, True, (1, 8, 8), 10)
    spec = align.permutation_spec(m, _x((1, 8, 8)))
    groups = {g.name: g for g in spec.groups}
    stem = set(groups["stem.0"].axes)
    assert {align.Axis("stem.1.running_var", 0, 1, True), align.Axis("layers.2.conv2.weight", 0),
            align.Axis("layers.2.bn2.running_mean", 0, 1, True), align.Axis("layers.3.conv1.weight", 1),
            align.Axis("layers.3.shortcut.0.weight", 1)} <= stem
    stage2 = set(groups["layers.3.conv2"].axes)
    assert {align.Axis("layers.3.shortcut.0.weight", 0), align.Axis("layers.3.shortcut.1.bias", 0),
            align.Axis("layers.5.conv2.weight", 0), align.Axis("layers.6.shortcut.0.weight", 1)} <= stage2
    assert len(groups["stem.0"].taps) == 4  # the stem output and the three block outputs of stage 1
    assert spec.repair_layers == ()  # every hidden layer feeds a BatchNorm

    cnn = _model("simplecnn", {}, False, (3, 32, 32), 10)
    spec = align.permutation_spec(cnn, _x((3, 32, 32)))
    last = [g for g in spec.groups if g.name == "features.8"][0]
    assert align.Axis("head.weight", 1, 16) in last.axes  # 4x4 positions per channel
    assert spec.repair_layers == ("features.0", "features.4", "features.8")


class Conv1dNet(nn.Module):
    """A user network of the brief: Conv1d/BatchNorm1d/ReLU/AdaptiveAvgPool1d/Linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(2, 6, 3, padding=1), nn.BatchNorm1d(6)
        self.conv2, self.bn2 = nn.Conv1d(6, 5, 3, padding=1), nn.BatchNorm1d(5)
        self.pool, self.head = nn.AdaptiveAvgPool1d(1), nn.Linear(5, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool1d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.head(self.pool(x).flatten(1))


def test_user_conv1d_network():
    torch.manual_seed(0)
    m = Conv1dNet()
    fm = FlatModel(m)
    x = _x((2, 12), 64)
    spec = align.permutation_spec(m, x)
    assert [(g.name, g.size) for g in spec.groups] == [("conv1", 6), ("conv2", 5)]
    vec = fm.flatten()
    bufs = fm.recompute_bn(vec, x)
    pvec, pbufs = align.permute(spec, fm, vec, bufs, spec.random(3))
    assert _close(fm.outputs(pvec, x, pbufs), fm.outputs(vec, x, bufs))
    for al in (align.weight_matching(spec, fm, vec, pvec),
               align.activation_matching(spec, fm, vec, pvec, x, bufs, pbufs)):
        back, back_bufs = align.permute(spec, fm, pvec, pbufs, al.perms)
        assert torch.equal(back, vec) and all(torch.equal(back_bufs[k], bufs[k]) for k in bufs)


class Separable(nn.Module):
    """A depthwise-separable network without BatchNorm: the depthwise conv passes its group through."""

    def __init__(self):
        super().__init__()
        self.conv, self.dw, self.pw = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1, groups=6), nn.Conv2d(6, 4, 1)
        self.head = nn.Linear(4 * 16, 3)

    def forward(self, x):
        x = F.relu(self.dw(F.relu(self.conv(x))))
        return self.head(torch.flatten(F.avg_pool2d(F.relu(self.pw(x)), 2), 1))


def test_depthwise_convolution_and_torchvision_resnet():
    torch.manual_seed(0)
    spec = _spec_of_preserving(Separable(), _x((1, 8, 8)))
    assert [(g.name, g.size) for g in spec.groups] == [("conv", 6), ("pw", 4)]
    assert {align.Axis("dw.weight", 0), align.Axis("dw.bias", 0), align.Axis("pw.weight", 1)} <= set(spec.groups[0].axes)
    assert align.Axis("head.weight", 1, 16) in spec.groups[1].axes
    assert spec.repair_layers == ("conv", "dw", "pw")

    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    fm = FlatModel(net)
    x = _x((3, 32, 32), 4)
    spec = align.permutation_spec(net, x)
    assert len(spec.groups) == 12  # 4 residual streams + 8 inner block units
    pvec, pbufs = align.permute(spec, fm, fm.flatten(), fm.buffers(), spec.random(0))
    ref = fm.outputs(fm.flatten(), x, fm.buffers())
    assert not torch.equal(pvec, fm.flatten()) and ref.abs().max() > 0.1
    assert _close(fm.outputs(pvec, x, pbufs), ref)


# ----- matching ----------------------------------------------------------------------------------
SELF = [("simplecnn", {}, False, (1, 8, 8)), ("mlp", {"hidden": 24}, True, (1, 8, 8)),
        ("resnet20", {}, True, (1, 8, 8)), ("vgg_small", {}, True, (3, 32, 32))]


@pytest.mark.parametrize("name,opts,bn,shape", SELF)
def test_permuted_copy_is_aligned_back_to_zero_distance(name, opts, bn, shape):
    m = _model(name, opts, bn, shape, 10, width=0.5)
    fm = FlatModel(m)
    x = _x(shape, 128, seed=2)
    spec = align.permutation_spec(m, x[:4])
    vec = fm.flatten()
    bufs = fm.recompute_bn(vec, x) if bn else {}
    pvec, pbufs = align.permute(spec, fm, vec, bufs, spec.random(7))
    assert (pvec - vec).norm() > 1
    wm = align.weight_matching(spec, fm, vec, pvec, seed=0)
    am = align.activation_matching(spec, fm, vec, pvec, x, bufs or None, pbufs or None)
    for al in (wm, am):
        back, back_bufs = align.permute(spec, fm, pvec, pbufs, al.perms)
        assert float((back - vec).norm()) == 0.0
        assert all(torch.equal(back_bufs[k], bufs[k]) for k in bufs)
    assert wm.converged and am.history[1] > 0.9 and am.history[0] < 0.5


class ResMLP(nn.Module):
    """Residual MLP: each hidden Linear reads and writes the one residual stream, so its weight has
    both axes in the same group (the weight matching step is then not an exact maximisation)."""

    def __init__(self, width=16):
        super().__init__()
        self.inp, self.fc1, self.fc2 = nn.Linear(4, width), nn.Linear(width, width), nn.Linear(width, width)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = self.inp(x)
        h = h + self.fc1(torch.relu(h))
        return self.head(h + self.fc2(torch.relu(h)))


def test_residual_mlp_one_stream_with_square_weights():
    torch.manual_seed(0)
    spec = _spec_of_preserving(ResMLP(), _x((4,)), seed=2)
    assert len(spec.groups) == 1
    assert {align.Axis("fc1.weight", 0), align.Axis("fc1.weight", 1), align.Axis("head.weight", 1)} <= set(spec.groups[0].axes)


def _net(kind, seed):
    if kind == "resmlp":
        torch.manual_seed(seed)
        return ResMLP(), (4,)
    return _model(kind[0], kind[1], False, (1, 8, 8), 10, seed=seed, width=0.5), (1, 8, 8)


@pytest.mark.parametrize("kind", [("simplecnn", {}), ("resnet20", {"skip": False}), ("resnet20", {}), "resmlp"], ids=str)
def test_weight_matching_never_lowers_similarity_and_stops_at_a_fixed_point(kind):
    (ma, shape), (mb, _) = _net(kind, 0), _net(kind, 1)
    a, b = FlatModel(ma), FlatModel(mb)
    spec = align.permutation_spec(ma, _x(shape))
    va, vb = a.flatten(), b.flatten()
    res = align.weight_matching(spec, a, va, vb, seed=3)
    h = np.array(res.history)
    assert res.converged and len(h) >= 3
    assert (np.diff(h) >= -1e-9 * np.abs(h[:-1])).all()
    assert h[-1] > h[0] + 1.0 and h[-1] == pytest.approx(h[-2])
    aligned = align.permute(spec, a, vb, None, res.perms)[0]
    assert float(torch.dot(va.double(), aligned.double())) == pytest.approx(h[-1])
    assert (va - aligned).norm() < (va - vb).norm()
    again = align.weight_matching(spec, a, va, vb, seed=4, init=res.perms)
    assert len(again.history) == 2 and all(torch.equal(again.perms[k], res.perms[k]) for k in res.perms)
    short = align.weight_matching(spec, a, va, vb, seed=3, max_iter=1)
    assert not short.converged and len(short.history) == 2


# ----- refusals and bad input --------------------------------------------------------------------
class Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1))


class Reuse(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.fc(torch.relu(self.fc(x))))


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.head(self.b(torch.relu(self.a(x))))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:
            h = -h
        return self.head(h)


class ChannelSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(4, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.head(torch.softmax(self.fc(x), dim=1))


class Transposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv1d(2, 3, 1), nn.Linear(15, 2)

    def forward(self, x):  # [B, 3, 5] -> [B, 5, 3] -> [B, 15]: the channels end up strided, not in blocks
        return self.head(self.conv(x).transpose(1, 2).flatten(1))


class DirectRead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.relu(self.fc(x))) + F.linear(x, self.fc.weight).sum(1, keepdim=True)


@pytest.mark.parametrize("cls,words", [
    (Cat, ["'cat'", "function cat", "joining tensors"]),
    (Reuse, ["'fc_1'", "'fc' is called more than once"]),
    (Shared, ["'b.weight'", "same tensor as 'a.weight'"]),
    (Branchy, ["could not trace Branchy"]),
    (ChannelSoftmax, ["'softmax'", "reads the hidden units of group 'fc'"]),
    (Transposed, ["'flatten'", "tensor method .flatten()", "group 'conv'"]),
    (DirectRead, ["'fc_weight'", "read directly"]),
])
def test_graphs_that_cannot_be_followed_are_refused_with_the_reason(cls, words):
    torch.manual_seed(0)
    x = _x((2, 5)) if cls is Transposed else _x((4,))
    with pytest.raises(ValueError) as err:
        align.permutation_spec(cls(), x)
    for w in words:
        assert w in str(err.value)


class SafeExtras(nn.Module):
    """Unknown operations only where nothing is permuted: on the input and after the output layer."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(8, 6), nn.Linear(6, 3)

    def forward(self, x):
        x = torch.cat([x, x * x], 1)
        return F.log_softmax(self.head(torch.tanh(self.fc(x))), dim=1)


def test_unknown_operations_are_accepted_where_no_channel_is_permuted():
    torch.manual_seed(0)
    spec = _spec_of_preserving(SafeExtras(), _x((4,)))
    assert [(g.name, g.size) for g in spec.groups] == [("fc", 6)]


def test_bad_input_is_refused_before_work():
    m = _model("simplecnn", {}, True, (1, 8, 8), 10)
    fm = FlatModel(m)
    with pytest.raises(ValueError, match="at least 2 samples"):
        align.permutation_spec(m, _x((1, 8, 8), 1))
    spec = align.permutation_spec(m, _x((1, 8, 8)))
    perms = spec.identity()
    with pytest.raises(ValueError, match=r"missing \['features.8'\], unknown \['nope'\]"):
        align.permute(spec, fm, fm.flatten(), None, {**{k: v for k, v in perms.items() if k != "features.8"}, "nope": 0})
    with pytest.raises(ValueError, match="group 'features.0' must be a permutation of 0..3"):
        align.permute(spec, fm, fm.flatten(), None, {**perms, "features.0": torch.tensor([0, 0, 1, 2])})
    with pytest.raises(ValueError, match="buffers lack 'features.1.running_mean'"):
        align.permute(spec, fm, fm.flatten(), {}, perms)
    a = fm.point()
    with pytest.raises(ValueError, match="unknown alignment method 'greedy'; allowed: weight_matching, activation_matching"):
        align.align(spec, fm, a, a, "greedy")
    with pytest.raises(ValueError, match="activation_matching needs a data tensor"):
        align.align(spec, fm, a, a, "activation_matching")
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        align.weight_matching(spec, fm, a.flat, a.flat, max_iter=0)
    nobias = _model("resnet20", {}, False, (1, 8, 8), 10)
    nobias.stem[0].bias = None
    nfm = FlatModel(nobias)
    nspec = align.permutation_spec(nobias, _x((1, 8, 8)))
    with pytest.raises(ValueError, match="REPAIR needs a bias in layer 'stem.0'"):
        align.Repair(nspec, nfm, nfm.flatten(), nfm.flatten(), _x((1, 8, 8)))


# ----- REPAIR and the line ------------------------------------------------------------------------
@pytest.mark.parametrize("name,opts", [("simplecnn", {}), ("mlp", {"hidden": 16}), ("resnet20", {})])
def test_repair_sets_the_unit_statistics_to_the_interpolated_targets(name, opts):
    a = FlatModel(_model(name, opts, False, (1, 8, 8), 10, seed=0, width=0.5))
    b = FlatModel(_model(name, opts, False, (1, 8, 8), 10, seed=1, width=0.5))
    x = _x((1, 8, 8), 128, seed=5)
    spec = align.permutation_spec(a.module, x[:4])
    va, vb = a.flatten(), b.flatten()
    vb = align.permute(spec, a, vb, None, align.weight_matching(spec, a, va, vb).perms)[0]
    fix = align.Repair(spec, a, va, vb, x)
    assert set(fix.targets(0.3)) == set(spec.repair_layers) and len(spec.repair_layers) >= 2
    mid = align.interpolate(va, vb, 0.3)
    before = align.unit_statistics(spec, a, mid, x)
    repaired = fix(mid, 0.3)
    after = align.unit_statistics(spec, a, repaired, x)
    for layer, (mean, std) in fix.targets(0.3).items():
        assert not torch.allclose(before[layer][1], std, rtol=1e-2)  # interpolation shrank the variance
        assert torch.allclose(after[layer][0], mean, atol=1e-4 * float(std.max()))
        assert torch.allclose(after[layer][1], std, rtol=1e-4)
    assert _close(fix(va, 0.0), va)  # at an endpoint there is nothing to correct


@pytest.fixture(scope="module")
def trained_pair():
    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 300, 300, 256, seed=0)
    spec_m = {"name": "simplecnn", "width": 0.5, "dropout": 0.0, "batchnorm": False, "options": {}}
    a, b = (train_endpoint(spec_m, TrainSettings(epochs=4, lr=3e-3), ds, ev, seed=s).point for s in (0, 1))
    model = build_model(spec_m, ds.in_shape, ds.num_outputs)
    return ev, FlatModel(model), align.permutation_spec(model, ev.bn_x[:4]), a, b


def test_aligned_and_repaired_lines_of_trained_networks(trained_pair):
    ev, fm, spec, a, b = trained_pair
    wm = align.align(spec, fm, a, b, "weight_matching")
    am = align.align(spec, fm, a, b, "activation_matching", ev.bn_x)
    assert wm.seconds > 0 and am.history[1] > am.history[0]
    rows = align.compare_lines(spec, fm, a, b, ev, "classification", [0.0, 0.5, 1.0],
                               {"weight_matching": align.permute(spec, fm, b.flat, None, wm.perms)[0],
                                "activation_matching": align.permute(spec, fm, b.flat, None, am.perms)[0]})
    assert set(rows.columns) == {"alignment", "method", "alpha", "split", "loss", "accuracy", "error",
                                 "bn_policy", "correction"}
    assert len(rows) == 5 * 3 * 2
    assert set(zip(rows.alignment, rows.method)) == {
        ("none", "naive"), ("weight_matching", "aligned"), ("weight_matching", "aligned+repair"),
        ("activation_matching", "aligned"), ("activation_matching", "aligned+repair")}
    loss = rows.set_index(["alignment", "method", "split", "alpha"])["loss"]
    for key in [("weight_matching", "aligned"), ("activation_matching", "aligned+repair")]:
        for alpha in (0.0, 1.0):  # the aligned B computes the same function as B
            assert loss[key + ("test", alpha)] == pytest.approx(loss[("none", "naive", "test", alpha)], rel=1e-5)
    for al in ("weight_matching", "activation_matching"):
        assert loss[(al, "aligned", "train", 0.5)] < loss[("none", "naive", "train", 0.5)]
        assert loss[(al, "aligned+repair", "train", 0.5)] <= loss[(al, "aligned", "train", 0.5)]
    summary = align.barriers(rows).set_index(["alignment", "method", "split", "metric"])
    assert summary.loc[("weight_matching", "aligned", "train", "loss"), "midpoint"] == pytest.approx(
        loss[("weight_matching", "aligned", "train", 0.5)]
        - 0.5 * (loss[("weight_matching", "aligned", "train", 0.0)] + loss[("weight_matching", "aligned", "train", 1.0)]))


def test_repair_in_a_batchnorm_network_is_the_statistics_reset():
    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 100, 100, 128, seed=0)
    a, b = (FlatModel(_model("simplecnn", {}, True, (1, 8, 8), 10, seed=s)) for s in (0, 1))
    spec = align.permutation_spec(a.module, ev.bn_x[:4])
    pa, pb = a.point(), a.point(b.module)
    rows = align.compare_lines(spec, a, pa, pb, ev, "classification", [0.0, 0.5, 1.0],
                               {"weight_matching": align.permute(spec, a, pb.flat, None,
                                                                 align.weight_matching(spec, a, pa.flat, pb.flat).perms)[0]})
    assert spec.repair_layers == ()
    plain = rows[rows.method == "aligned"].reset_index(drop=True)
    fixed = rows[rows.method == "aligned+repair"].reset_index(drop=True)
    assert np.array_equal(plain[["loss", "accuracy"]].to_numpy(), fixed[["loss", "accuracy"]].to_numpy())
    assert fixed["correction"].str.contains("BN statistics recomputed").all()
    assert rows["bn_policy"].str.startswith("recomputed at each point").all()


def test_barriers_summary():
    rows = pd.DataFrame({
        "alignment": "none", "method": "naive", "split": "train",
        "alpha": [0.0, 0.5, 1.0, 0.0, 0.3, 0.6, 1.0],
        "loss": [1.0, 3.0, 2.0, 1.0, 2.0, 5.0, 1.0], "error": [0.1, 0.2, 0.1, 0.0, 0.1, 0.4, 0.2],
    })
    rows.loc[3:, "alignment"] = "weight_matching"
    s = align.barriers(rows).set_index(["alignment", "metric"])
    assert s.loc[("none", "loss"), "barrier"] == pytest.approx(1.5)
    assert s.loc[("none", "loss"), "midpoint"] == pytest.approx(1.5)
    assert s.loc[("none", "error"), "barrier"] == pytest.approx(0.1)
    assert s.loc[("weight_matching", "loss"), "barrier"] == pytest.approx(4.0)
    assert math.isnan(s.loc[("weight_matching", "loss"), "midpoint"])
    assert s.loc[("weight_matching", "error"), "endpoint_mean"] == pytest.approx(0.1)
