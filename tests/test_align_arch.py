"""Alignment on the networks researchers write: normalisation layers (GroupNorm with 1, g and C
groups, LayerNorm, InstanceNorm, BatchNorm), Python control flow on shapes, attention
(``nn.MultiheadAttention``, attention from Linear layers, ``F.scaled_dot_product_attention``), the
built-in models, the example model and randomly composed networks of these blocks.

For every network :func:`check_exact` checks the three facts of an exact alignment: a random
function-preserving permutation keeps the outputs within 1e-5; weight matching (and activation
matching) bring the permuted copy back to weights identical to the original's; the aligned line
between the network and its permuted copy has zero loss barrier (the naive line has a positive
one)."""
import importlib.util
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO
from test_plan import USER, plan_of, refused, user_files  # noqa: F401 - user_files is a fixture
from losslab import align
from losslab.flat import FlatModel
from losslab.models import build_model


def _x(shape, n=16, seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def _close(a, b, tol=1e-5):
    return torch.allclose(a, b, rtol=tol, atol=tol * float(b.abs().max().clamp_min(1)))


def _line_barrier(fm, va, vb, x, y, bufs=None, alphas=(0.0, 0.25, 0.5, 0.75, 1.0)):
    loss = [float(F.cross_entropy(fm.outputs(align.interpolate(va, vb, a), x, bufs), y)) for a in alphas]
    return max(loss) - 0.5 * (loss[0] + loss[-1])


def _randomise_norms(m, seed=0):
    """Non-trivial affine parameters and running statistics, so that a wrongly permuted one shows."""
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                for name in ("weight", "bias"):
                    p = getattr(mod, name, None)
                    if p is not None:
                        p.copy_((name == "weight") + 0.3 * torch.randn(p.shape, generator=g))
                if getattr(mod, "running_mean", None) is not None:
                    mod.running_mean.copy_(0.5 * torch.randn(mod.running_mean.shape, generator=g))
                    mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
    return m


def check_exact(m, x, seed=1, activation=True):
    """The spec of ``m`` after checking the three facts of an exact alignment (module docstring)."""
    m.eval()
    fm = FlatModel(m)
    spec = align.permutation_spec(m, x[:4])
    assert spec.groups, "nothing to permute"
    vec = fm.flatten()
    bufs = fm.buffers() if fm.has_bn else None
    pvec, pbufs = align.permute(spec, fm, vec, bufs, spec.random(seed))
    assert (pvec - vec).norm() > 1e-3
    ref = fm.outputs(vec, x, bufs)
    assert _close(fm.outputs(pvec, x, pbufs), ref)
    wm = align.weight_matching(spec, fm, vec, pvec)
    back, back_bufs = align.permute(spec, fm, pvec, pbufs, wm.perms)
    assert torch.equal(back, vec)
    if bufs:
        assert all(torch.equal(back_bufs[k], bufs[k]) for k in bufs)
    if activation:
        am = align.activation_matching(spec, fm, vec, pvec, x, bufs, pbufs)
        assert torch.allclose(align.permute(spec, fm, pvec, None, am.perms)[0], vec)
    y = ref.argmax(1).roll(1)  # labels that make the loss non-trivial
    assert abs(_line_barrier(fm, vec, back, x, y, bufs)) < 1e-6
    mid = fm.outputs(align.interpolate(vec, pvec, 0.5), x, bufs if bufs is None else fm.recompute_bn(
        align.interpolate(vec, pvec, 0.5), x))
    assert not _close(mid, ref, 1e-3)  # while the unaligned line is another function
    return spec


# ----- normalisation layers and control flow --------------------------------------------------
def _norm(kind: str, c: int) -> nn.Module:
    return {"gn1": lambda: nn.GroupNorm(1, c), "gnC": lambda: nn.GroupNorm(c, c), "gn4": lambda: nn.GroupNorm(4, c),
            "in": lambda: nn.InstanceNorm2d(c, affine=True), "bn": lambda: nn.BatchNorm2d(c),
            "ln": lambda: ChannelLast(nn.LayerNorm(c)), "lnchw": lambda: nn.LayerNorm([c, 6, 6]),
            "none": nn.Identity}[kind]()


class ChannelLast(nn.Module):
    """A LayerNorm over the channels of a feature map (channels moved last and back)."""

    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class NormBlock(nn.Module):
    def __init__(self, c, kind):
        super().__init__()
        self.conv1, self.norm, self.conv2 = nn.Conv2d(c, c, 3, padding=1), _norm(kind, c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.norm(self.conv1(x))))


class NormNet(nn.Module):
    """A residual conv network with one normalisation kind; grey images may come without their
    channel axis (shape-dependent control flow that torch.fx alone cannot trace)."""

    def __init__(self, kind, c=8, classes=3):
        super().__init__()
        self.stem, self.block, self.head = nn.Conv2d(1, c, 3, padding=1), NormBlock(c, kind), nn.Linear(c, classes)

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.head(self.block(F.relu(self.stem(x))).mean((2, 3)))


@pytest.mark.parametrize("kind", ["gn1", "gnC", "gn4", "in", "ln", "lnchw", "bn"])
def test_normalisation_layers_align_exactly(kind):
    torch.manual_seed(0)
    # (activation matching is left out with BatchNorm: shifted running statistics kill some ReLUs)
    spec = check_exact(_randomise_norms(NormNet(kind)), _x((1, 6, 6), 32), activation=kind != "bn")
    assert spec.capture == "example"  # the `if x.dim() == 3` branch was specialised
    names = {g.name: g for g in spec.groups}
    assert set(names) == {"stem", "block.conv1"}
    norm = names["block.conv1"]
    assert (norm.blocks, norm.layout[1]) == ((4, (2,)) if kind == "gn4" else (1, (8,)))
    prefix = "block.norm.norm." if kind == "ln" else "block.norm."
    if kind != "none":
        assert align.Axis(prefix + "weight", 0) in norm.axes
    # REPAIR skips the layer whose statistics the norm resets; LayerNorm/GroupNorm(g < C) outputs are corrected
    assert ("block.conv1" in spec.repair_layers) == (kind not in ("in", "bn", "gnC"))
    assert ("block.norm" in spec.repair_layers or "block.norm.norm" in spec.repair_layers) == (kind in ("gn1", "gn4", "ln"))


def test_group_norm_with_g_groups_permutes_within_groups_only():
    torch.manual_seed(0)
    m = _randomise_norms(NormNet("gn4")).eval()
    fm, x = FlatModel(m), _x((1, 6, 6), 16)
    spec = align.permutation_spec(m, x)
    vec = fm.flatten()
    across = {**spec.identity(), "block.conv1": torch.tensor([2, 1, 0, 3, 4, 5, 6, 7])}  # swaps units of two groups
    with pytest.raises(ValueError, match="mixes units of different blocks"):
        align.permute(spec, fm, vec, None, across)
    fake = align.PermutationSpec(tuple(align.Group(g.name, g.size, g.axes, g.taps) for g in spec.groups),
                                 spec.repair_layers, spec.graph)
    moved = align.permute(fake, fm, vec, None, across)[0]  # what an unrestricted permutation would do
    assert not _close(fm.outputs(moved, x), fm.outputs(vec, x), 1e-3)
    swap_groups = {**spec.identity(), "block.conv1": torch.tensor([2, 3, 0, 1, 5, 4, 6, 7])}  # whole groups + within
    assert _close(fm.outputs(align.permute(spec, fm, vec, None, swap_groups)[0], x), fm.outputs(vec, x))
    # two different networks: the matching still returns layout-keeping permutations
    other = FlatModel(_randomise_norms(NormNet("gn4"), seed=5))
    wm = align.weight_matching(spec, fm, vec, other.flatten())
    spec.check(wm.perms)


# ----- attention --------------------------------------------------------------------------------
def _transformer(attention, shape, width=0.5, seed=0):
    torch.manual_seed(seed)
    m = build_model({"name": "transformer", "width": width, "dropout": 0.0, "batchnorm": False,
                     "options": {"attention": attention, "depth": 2, "heads": 2}}, shape, 3)
    return _randomise_norms(m, seed)


@pytest.mark.parametrize("attention", ["mha", "manual"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 16), (5,)], ids=["image", "signal", "vector"])
def test_transformer_aligns_exactly(attention, shape):
    spec = check_exact(_transformer(attention, shape), _x(shape, 24))
    heads = [g for g in spec.groups if g.blocks > 1]
    assert len(heads) == 2 and all(g.layout == (2, (8, 8)) for g in heads)  # 2 heads x (query/key 8, value/out 8)
    residual = spec.groups[0]
    assert residual.name == "embed" and align.Axis("pos", 2) in residual.axes
    assert align.Axis("blocks.0.norm1.weight", 0) in residual.axes and align.Axis("head.weight", 1) in residual.axes
    assert spec.capture == "example"  # forward's `if x.dim() == 2` (flat inputs) stops torch.fx alone


class SDPANet(nn.Module):
    """A ViT-like net with a class token, one fused-free attention through
    F.scaled_dot_product_attention, heads split by reshape/permute and merged by flatten."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.embed, self.cls = nn.Linear(4, d), nn.Parameter(torch.randn(1, 1, d))
        self.norm = nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        t = self.embed(x)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        b, n, d = t.shape
        h = self.norm(t)
        q, k, v = (lin(h).reshape(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)
                   for lin in (self.q, self.k, self.v))
        t = t + self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
        return self.head(t[:, 0])


def test_scaled_dot_product_attention_with_a_class_token():
    torch.manual_seed(0)
    spec = check_exact(_randomise_norms(SDPANet()), _x((5, 4), 16))
    names = {g.name: g for g in spec.groups}
    assert align.Axis("cls", 2) in names["embed"].axes and names["q"].layout == (2, (4, 4))


class FusedQKV(nn.Module):
    """One Linear for query, key and value, cut by ``chunk``; a gated MLP cut by ``split``."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.embed, self.qkv, self.o = nn.Linear(4, d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.gate, self.down, self.head = nn.Linear(d, 2 * 6), nn.Linear(6, d), nn.Linear(d, 3)

    def forward(self, x):
        t = self.embed(x)
        b, n, d = t.shape
        q, k, v = (z.view(b, n, self.heads, -1).transpose(1, 2) for z in self.qkv(t).chunk(3, dim=-1))
        t = t + self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        a, g = torch.split(self.gate(t), 6, dim=-1)
        t = t + self.down(a * F.silu(g))
        return self.head(t.mean(1))


class FusedReshape(nn.Module):
    """A fused query/key/value projection cut by a reshape into (3, heads, dims), as timm does."""

    def __init__(self):
        super().__init__()
        self.qkv, self.o = nn.Linear(4, 12), nn.Linear(4, 2)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, 2, 2).permute(2, 0, 3, 1, 4).unbind(0)
        return self.o((torch.softmax(q @ k.transpose(-2, -1), -1) @ v).transpose(1, 2).flatten(2)).mean(1)


def test_fused_projection_cut_by_reshape_into_pieces_heads_and_dims():
    torch.manual_seed(0)
    spec = check_exact(FusedReshape(), _x((5, 4), 16))
    assert [(g.name, g.layout) for g in spec.groups] == [("qkv[0:4]", (2, (2, 2)))]


class Stacked(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.stack([torch.relu(self.a(x)), torch.tanh(self.b(x))], dim=1).sum(1))


def test_stack_ties_its_operands():
    torch.manual_seed(0)
    assert [(g.name, g.size) for g in check_exact(Stacked(), _x((4,), 16)).groups] == [("a", 6)]


def test_fused_projections_cut_by_chunk_or_split():
    torch.manual_seed(0)
    spec = check_exact(FusedQKV(), _x((5, 4), 16))
    names = {g.name: g for g in spec.groups}
    assert names["qkv[0:8]"].layout == (2, (4, 4))  # the query piece leads the attention group
    assert align.Axis("qkv.weight", 0, 1, False, 8, names["qkv[0:8]"].axes[0].units) in names["qkv[0:8]"].axes
    assert names["gate[0:6]"].size == 6  # the two halves of the gated MLP are one group


def test_torchvision_vision_transformer():
    import torchvision

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(image_size=8, patch_size=2, num_layers=2, num_heads=2, hidden_dim=8,
                                               mlp_dim=16, num_classes=3)
    nn.init.normal_(vit.heads.head.weight)  # (zero at initialisation: every weight setting would look alike)
    spec = check_exact(_randomise_norms(vit), _x((3, 8, 8), 16))
    assert [g.layout for g in spec.groups] == [(1, (8,)), (2, (4, 4)), (1, (16,)), (2, (4, 4)), (1, (16,))]
    assert align.Axis("class_token", 2) in spec.groups[0].axes


# ----- built-ins, the example model, randomly composed networks --------------------------------
@pytest.mark.parametrize("name,opts,bn,shape", [
    ("simplecnn", {}, False, (1, 8, 8)), ("mlp", {"hidden": 12}, True, (1, 8, 8)), ("resnet20", {}, True, (1, 8, 8)),
    ("resnet20", {"skip": False}, False, (1, 8, 8)), ("vgg_small", {}, False, (1, 8, 8)),
    ("cnn1d", {}, False, (1, 40)), ("cnn1d", {"channels": [8, 12]}, True, (1, 40)),
])
def test_builtin_models_align_exactly(name, opts, bn, shape):
    torch.manual_seed(0)
    m = build_model({"name": name, "width": 0.25, "dropout": 0.0, "batchnorm": bn, "options": opts}, shape, 10)
    check_exact(_randomise_norms(m), _x(shape, 32), activation=False)  # (test_align.py: activation matching)


def test_example_conv1d_model_aligns_exactly():
    spec_ = importlib.util.spec_from_file_location("conv1d_example", REPO / "examples/conv1d/model.py")
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    torch.manual_seed(0)
    spec = check_exact(mod.conv1d_net((2, 32), 3, channels=6), _x((2, 32), 16))
    assert [g.size for g in spec.groups] == [6, 6]


class RandomNet(nn.Module):
    """A network composed at random (seeded) of supported blocks: conv + norm + ReLU, residual
    norm blocks, depthwise-separable convs; then either pooling and an MLP head, or tokens through
    a transformer block (either attention) and a mean over tokens."""

    def __init__(self, seed: int, c: int = 8):
        super().__init__()
        rng = random.Random(seed)
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.kinds, blocks = [], []
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["plain", "residual", "separable"])
            norm = rng.choice(["gn1", "gnC", "gn4", "in", "ln", "bn", "none"])
            if kind == "plain":
                blocks.append(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), _norm(norm, c), nn.ReLU()))
            elif kind == "residual":
                blocks.append(NormBlock(c, norm))
            else:
                blocks.append(nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.ReLU(), nn.Conv2d(c, c, 1)))
            self.kinds.append(kind)
        self.blocks = nn.ModuleList(blocks)
        self.tokens = rng.random() < 0.5
        if self.tokens:
            from losslab.models import TransformerBlock

            self.mixer = TransformerBlock(c, 2, 2 * c, 0.0, rng.choice(["mha", "manual"]))
        else:
            self.mixer = nn.Sequential(nn.Flatten(), nn.Linear(c * 4, 12), nn.Tanh())
        self.head = nn.Linear(c if self.tokens else 12, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        if self.tokens:
            return self.head(self.mixer(x.flatten(2).transpose(1, 2)).mean(1))
        return self.head(self.mixer(F.adaptive_avg_pool2d(x, 2)))


@pytest.mark.parametrize("seed", range(6))
def test_randomly_composed_networks_align_exactly(seed):
    torch.manual_seed(seed)
    net = _randomise_norms(RandomNet(seed), seed)
    check_exact(net, _x((1, 6, 6), 24, seed), activation=not FlatModel(net).has_bn)


# ----- refusals -----------------------------------------------------------------------------------
class DataBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Gate()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.inner(x))


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc(x)
        if x.dim() == 2 and h.mean() > 0:  # the first test is on a shape, the second on data
            h = -h
        return h


class NoRule(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.lrn, self.head = nn.Conv2d(1, 4, 3), nn.LocalResponseNorm(2), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.lrn(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("cls,shape,words", [
    (DataBranch, (4,), ["control flow depends on tensor values", "test_align_arch.py:", "h.mean() > 0",
                        "(in 'inner')"]),
    (NoRule, (1, 6, 6), ["'lrn'", "module 'lrn' (LocalResponseNorm): no permutation rule for this layer",
                         "reads the hidden units of group 'conv'"]),
])
def test_what_cannot_be_followed_is_refused_with_the_layer_and_the_reason(cls, shape, words):
    torch.manual_seed(0)
    with pytest.raises(ValueError) as err:
        align.permutation_spec(cls(), _x(shape, 4))
    for w in words:
        assert w in str(err.value), str(err.value)


def test_the_run_plan_aligns_a_transformer_and_refuses_a_layer_without_a_rule(user_files):
    off = {k: {"enabled": False} for k in ("curves", "planes", "wedge", "connectors", "tunnels", "swa", "ensembles")}
    plan = plan_of({"model": {"name": "transformer", "options": {"dim": 8, "heads": 2, "depth": 1}},
                    "align": {"width": {"widths": [0.5, 1.0]}, "instability": {"enabled": False}}, **off})
    assert sum(j.rule == "align_width" for j in plan.jobs.values()) == 2
    (user_files / "lrn.py").write_text(
        "from torch import nn\n"
        "def build(input_shape, num_outputs):\n"
        "    return nn.Sequential(nn.Conv1d(input_shape[0], 4, 3), nn.LocalResponseNorm(2), nn.Flatten(),\n"
        "                         nn.Linear(4 * (input_shape[1] - 2), num_outputs))\n")
    msg = refused(USER, {"model": {"name": "lrn.py:build"}})
    for w in ["align.setting = 'default'", "LocalResponseNorm", "no permutation rule", "align.enabled: false"]:
        assert w in msg, msg


# ----- REPAIR ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["transformer", "gn4", "ln"])
def test_repair_sets_layer_and_norm_statistics_to_the_interpolated_targets(kind):
    if kind == "transformer":
        a, b, shape = _transformer("manual", (1, 8, 8), seed=0), _transformer("manual", (1, 8, 8), seed=1), (1, 8, 8)
    else:
        torch.manual_seed(0)
        a = _randomise_norms(NormNet(kind), 0)
        torch.manual_seed(1)
        b, shape = _randomise_norms(NormNet(kind), 1), (1, 6, 6)
    fa, fb = FlatModel(a), FlatModel(b)
    x = _x(shape, 64, seed=3)
    spec = align.permutation_spec(a, x[:4])
    va = fa.flatten()
    vb = align.permute(spec, fa, fb.flatten(), None, align.weight_matching(spec, fa, va, fb.flatten()).perms)[0]
    fix = align.Repair(spec, fa, va, vb, x)
    assert any(isinstance(a.get_submodule(n), (nn.LayerNorm, nn.GroupNorm)) for n in spec.repair_layers)
    assert "LayerNorm/GroupNorm outputs" in fix.policy
    repaired = fix(align.interpolate(va, vb, 0.4), 0.4)
    after = align.unit_statistics(spec, fa, repaired, x)
    for layer, (mean, std) in fix.targets(0.4).items():
        assert torch.allclose(after[layer][0], mean, atol=1e-4 * float(std.max()))
        assert torch.allclose(after[layer][1], std, rtol=1e-4)


@pytest.mark.parametrize("attention", ["mha", "manual"])
def test_transformer_has_hessian_vector_products(attention):
    """The short-directions probes differentiate twice (forward over reverse): the transformer's
    attention must not go through CPU flash attention, which forward-mode AD cannot do."""
    from torch.func import grad, jvp

    m = _transformer(attention, (1, 8, 8))
    fm, x, y = FlatModel(m), _x((1, 8, 8), 8), torch.arange(8) % 3
    vec = fm.flatten()
    loss = lambda v: F.cross_entropy(fm.forward(v, x), y)  # noqa: E731
    v = torch.randn(vec.shape, generator=torch.Generator().manual_seed(0))
    hv = jvp(grad(loss), (vec,), (v,))[1]
    eps = 1e-3  # against a finite difference of gradients
    fd = (torch.func.grad(loss)(vec + eps * v) - torch.func.grad(loss)(vec - eps * v)) / (2 * eps)
    assert torch.allclose(hv, fd, rtol=1e-2, atol=1e-3 * float(fd.abs().max()))
