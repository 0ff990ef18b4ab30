"""Models: the built-in registry and the researcher's own networks.

A model spec is ``{name, width, dropout, batchnorm, options, weights}``. ``name`` is a built-in
model (every one takes a width multiplier, a dropout rate and a BatchNorm switch), or one of
the researcher's own:

- ``package.module:function`` or ``path/to/file.py:function``, called as
  ``function(input_shape, num_outputs, **options)`` and returning an ``nn.Module``;
- ``torchvision:<name>``: ``torchvision.models.get_model(name, weights=None,
  num_classes=num_outputs, **options)``, optionally initialised from a local ``weights`` file.

Builders take the input shape and number of outputs from the dataset, so one name works for
8x8 digits, 28x28 MNIST and 32x32 CIFAR. :func:`inspect_model` builds any spec on the ``meta``
device (no memory allocated) and runs one forward, so a spec that cannot work is refused at
parse time with a :class:`ModelSpecError` naming the key.
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import catalog
from .catalog import ModelSpecError


class _OptionError(ValueError):
    """Raised by a built-in constructor when one of its options does not fit the input."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def _ch(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def _norm2d(c: int, batchnorm: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if batchnorm else nn.Identity()


def _image_shape(in_shape, model: str) -> tuple[int, int, int]:
    """``in_shape`` as (C, H, W); raise a ValueError saying the model needs image inputs."""
    if len(in_shape) != 3:
        raise ValueError(f"{model} needs image inputs of shape C x H x W; the data's input shape is {tuple(in_shape)}")
    return tuple(in_shape)


def _check_pooling(in_shape, stages: int, model: str) -> None:
    """Refuse more 2x2 pooling stages (one per ``channels`` entry) than the image size allows."""
    _, h, w = _image_shape(in_shape, model)
    most = min(h, w).bit_length() - 1
    if stages > most:
        raise _OptionError(
            "channels",
            f"{stages} entries mean {stages} stages of 2x2 pooling, which need an input of at least "
            f"{2 ** stages}x{2 ** stages}; the input is {h}x{w}, so give at most {most} entries",
        )


class SimpleCNN(nn.Module):
    """The paper's SimpleCNN: 3x3 convs with 16/32/32 channels, each followed by 2x2 pooling
    and a ReLU, then a linear head."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, channels=(16, 32, 32)):
        super().__init__()
        _check_pooling(in_shape, len(channels), "simplecnn")
        layers, c_in = [], in_shape[0]
        for c in channels:
            c_out = _ch(c, width)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), _norm2d(c_out, batchnorm), nn.MaxPool2d(2), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        _, h, w = in_shape  # each stage keeps the size (3x3, padding 1), then halves it (floor)
        self.head = nn.Linear(c_in * (h >> len(channels)) * (w >> len(channels)), num_outputs)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


class CNN1D(nn.Module):
    """A small 1-D CNN of the kind the MNIST-1D paper uses (Greydanus 2020): strided
    convolutions (the first of length ``kernel``, then 3; stride 2, padding 1), each followed by
    an optional BatchNorm and a ReLU, then a linear head on the flattened features."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, channels=(25, 25, 25), kernel=5):
        super().__init__()
        if len(in_shape) != 2:
            raise ValueError(f"cnn1d needs 1-D signals of shape C x L; the data's input shape is {tuple(in_shape)}")
        c_in, length = in_shape
        layers: list[nn.Module] = []
        for i, c in enumerate(channels):
            k = kernel if i == 0 else 3
            new = (length + 2 - k) // 2 + 1
            if new < 1:
                raise _OptionError("kernel", f"a first convolution of length {k} does not fit a signal of length "
                                             f"{in_shape[1]} (with padding 1); use a kernel of at most {in_shape[1] + 2}")
            c_out = _ch(c, width)
            layers += [nn.Conv1d(c_in, c_out, k, stride=2, padding=1),
                       nn.BatchNorm1d(c_out) if batchnorm else nn.Identity(), nn.ReLU()]
            c_in, length = c_out, new
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in * length, num_outputs)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


class MLP(nn.Module):
    """Fully connected ReLU network on the flattened input."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, hidden=100, depth=2, activation="relu"):
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
        if activation not in acts:
            raise _OptionError("activation", f"allowed: {', '.join(acts)}")
        d_in = 1
        for s in in_shape:
            d_in *= s
        layers: list[nn.Module] = [nn.Flatten()]
        h = _ch(hidden, width)
        for _ in range(depth):
            layers += [nn.Linear(d_in, h)]
            if batchnorm:
                layers += [nn.BatchNorm1d(h)]
            layers += [acts[activation](), nn.Dropout(dropout)]
            d_in = h
        layers += [nn.Linear(d_in, num_outputs)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, batchnorm, skip):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not batchnorm)
        self.bn1 = _norm2d(c_out, batchnorm)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not batchnorm)
        self.bn2 = _norm2d(c_out, batchnorm)
        self.skip = skip
        self.shortcut = nn.Identity()
        if skip and (stride != 1 or c_in != c_out):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=not batchnorm), _norm2d(c_out, batchnorm))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.skip:
            out = out + self.shortcut(x)
        return torch.relu(out)


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (3 stages of 3 basic blocks). ``skip=False`` removes every skip
    connection, as in the blog's pictures."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, skip=True, blocks=3):
        super().__init__()
        _image_shape(in_shape, "resnet20")
        c = [_ch(16, width), _ch(32, width), _ch(64, width)]
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], c[0], 3, 1, 1, bias=not batchnorm), _norm2d(c[0], batchnorm), nn.ReLU())
        layers, c_in = [], c[0]
        for stage, c_out in enumerate(c):
            for b in range(blocks):
                layers.append(BasicBlock(c_in, c_out, 2 if (stage > 0 and b == 0) else 1, batchnorm, skip))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_outputs)

    def forward(self, x):
        return self.head(self.dropout(self.pool(self.layers(self.stem(x)))))


class VGGSmall(nn.Module):
    """A small VGG-style network: conv-conv-pool blocks then a linear head."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, channels=(32, 64, 128)):
        super().__init__()
        _check_pooling(in_shape, len(channels), "vgg_small")
        layers, c_in = [], in_shape[0]
        for c in channels:
            c_out = _ch(c, width)
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), _norm2d(c_out, batchnorm), nn.ReLU()]
                c_in = c_out
            layers += [nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_outputs)

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention written by hand from four Linear layers, as researchers often do."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, e = x.shape
        q = self.q(x).view(b, t, self.heads, e // self.heads).transpose(1, 2)
        k = self.k(x).view(b, t, self.heads, e // self.heads).transpose(1, 2)
        v = self.v(x).view(b, t, self.heads, e // self.heads).transpose(1, 2)
        att = self.drop(torch.softmax((q @ k.transpose(-2, -1)) * (e // self.heads) ** -0.5, dim=-1))
        return self.o((att @ v).transpose(1, 2).reshape(b, t, e))


class MHA(nn.Module):
    """``nn.MultiheadAttention`` as self-attention on ``[batch, tokens, features]``.

    It is called with ``need_weights=True`` (weights dropped): that path computes the attention
    with ``bmm`` and ``softmax``, which forward-mode AD can differentiate (the Hessian-vector
    products of the short-directions probes); ``need_weights=False`` goes through CPU flash
    attention, which it cannot (torch 2.x)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=True)[0]


class TransformerBlock(nn.Module):
    """Pre-LayerNorm encoder block: x + attention(LN(x)), then x + MLP(LN(x)) with a GELU."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float, attention: str):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = (MHA if attention == "mha" else SelfAttention)(dim, heads, dropout)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm2(x))))))


class Transformer(nn.Module):
    """A small transformer encoder classifier for images and 1-D sequences (no BatchNorm).

    Images ``C x H x W`` are cut into ``patch x patch`` patches (ViT); 1-D signals ``C x L``
    into windows of ``patch`` steps; a flat input of ``D`` features is one channel of length
    ``D``. Patches are embedded by a strided convolution, a learned position embedding is added,
    ``depth`` pre-LayerNorm blocks (``heads`` heads, an MLP of ``mlp_ratio`` times the width)
    follow, then a final LayerNorm, the mean over tokens and a linear head. ``attention``:
    ``mha`` (``nn.MultiheadAttention``) or ``manual`` (four Linear layers). ``width`` scales
    ``dim``, rounded to a multiple of ``heads``."""

    def __init__(self, in_shape, num_outputs, width=1.0, dropout=0.0, batchnorm=False, dim=32, depth=2, heads=4,
                 mlp_ratio=2.0, patch=0, attention="mha"):
        super().__init__()
        if batchnorm:
            raise ValueError("transformer has no BatchNorm layers (it uses LayerNorm); set model.batchnorm: false")
        if attention not in ("mha", "manual"):
            raise _OptionError("attention", "allowed: mha, manual")
        shape = tuple(in_shape) if len(in_shape) > 1 else (1, in_shape[0])
        if len(shape) not in (2, 3):
            raise ValueError(f"transformer needs inputs of shape C x H x W, C x L or D; got {tuple(in_shape)}")
        sizes = shape[1:]
        p = patch or max(1, min(sizes) // 4)
        if any(n % p for n in sizes):
            raise _OptionError("patch", f"a patch of {p} does not divide the input size {'x'.join(map(str, sizes))}")
        e = heads * max(1, round(dim * width / heads))
        conv = nn.Conv2d if len(shape) == 3 else nn.Conv1d
        self.embed = conv(shape[0], e, p, stride=p)
        self.pos = nn.Parameter(torch.zeros(1, math.prod(n // p for n in sizes), e))
        nn.init.uniform_(self.pos, -0.03, 0.03)  # (normal_ on the meta device imports torch._dynamo: seconds)
        self.blocks = nn.Sequential(*[TransformerBlock(e, heads, max(1, round(e * mlp_ratio)), dropout, attention)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(e)
        self.head = nn.Linear(e, num_outputs)

    def forward(self, x):
        if x.dim() == 2:  # flat features: one channel of a 1-D sequence
            x = x.unsqueeze(1)
        tokens = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(tokens)).mean(1))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "simplecnn": SimpleCNN,
    "mlp": MLP,
    "cnn1d": CNN1D,
    "resnet20": ResNet20,
    "vgg_small": VGGSmall,
    "transformer": Transformer,
}
COMMON = ("in_shape", "num_outputs", "width", "dropout", "batchnorm")
# inspect_model runs its forward check on a real CPU build of models up to this many bytes of
# parameters and buffers (fast, and errors are torch's own), and on the meta build above it.
CPU_CHECK_BYTES = 64 << 20


def model_options(name: str) -> dict:
    """The model-specific options of a registered model and their defaults."""
    if name not in MODELS:
        raise catalog.unknown_model(name)
    sig = inspect.signature(MODELS[name].__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in COMMON and k != "self"}


def _torchvision_factory(name: str, options: dict, key: str) -> Callable[[tuple, int], nn.Module]:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ModelSpecError(
            f"{key}.name = 'torchvision:{name}': torchvision has no classification model {name!r}{hint}; "
            f"the {len(known)} names are listed by torchvision.models.list_models(torchvision.models)"
        )
    return lambda in_shape, n: torchvision.models.get_model(name, weights=None, num_classes=n, **options)


def _factory(spec: dict, key: str) -> Callable[[tuple, int], nn.Module]:
    """A function ``(in_shape, num_outputs) -> nn.Module`` for a checked spec."""
    name, options = spec["name"], dict(spec.get("options") or {})
    kind = catalog.model_kind(name)
    if kind == "builtin":
        opts = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        common = {k: spec[k] for k in ("width", "dropout", "batchnorm") if spec.get(k) is not None}
        return lambda in_shape, n: MODELS[name](in_shape, n, **common, **opts)
    if kind == "torchvision":
        return _torchvision_factory(name.split(":", 1)[1], options, key)
    fn = catalog.load_callable(name, f"{key}.name", ModelSpecError)
    opts = catalog.call_options(fn, options, f"{key}.options", ModelSpecError, skip=2)
    return lambda in_shape, n: fn(in_shape, n, **opts)


def _failed(where: str, what: str, exc: Exception) -> ModelSpecError:
    """The error for user code that raised: where, what failed, and the exception's own text."""
    return ModelSpecError(f"{where}: {what}: {type(exc).__name__}: {exc}")


def _construct(spec: dict, in_shape, num_outputs: int, key: str) -> nn.Module:
    """Build ``spec`` (in the current default device); wrap every failure in ModelSpecError."""
    spec = catalog.check_model_spec(spec, key)
    if spec.get("weights") and catalog.model_kind(spec["name"]) != "torchvision":
        raise ModelSpecError(
            f"{key}.weights = {spec['weights']!r}: a weights file is read for torchvision: models only; "
            f"load weights inside your own factory, or declare trained networks under endpoints.external"
        )
    factory = _factory(spec, key)
    where = f"{key}.name = {spec['name']!r} with options {spec.get('options') or {}}"
    try:
        module = factory(tuple(in_shape), int(num_outputs))
    except _OptionError as exc:
        value = spec["options"].get(exc.option, model_options(spec["name"]).get(exc.option))
        raise ModelSpecError(
            f"{key}.options.{exc.option} = {value!r} does not fit input shape {tuple(in_shape)}: {exc}"
        ) from exc
    except Exception as exc:
        raise _failed(where, f"building it for input shape {tuple(in_shape)} and {num_outputs} outputs failed", exc) from exc
    if not isinstance(module, nn.Module):
        raise ModelSpecError(f"{where}: the factory returned {type(module).__name__}, not an nn.Module")
    return module


def build_model(spec: dict, in_shape, num_outputs: int, key: str = "model", device=None) -> nn.Module:
    """Build the model of ``spec`` for inputs of shape ``in_shape`` and ``num_outputs`` outputs.

    Returns a fresh ``nn.Module`` (in train mode) with its parameters on ``device`` (the default
    device when None; ``"meta"`` allocates nothing). Lazy modules (``nn.LazyLinear``, ...) are
    materialised by one forward of a batch of zeros. A torchvision model with ``weights`` is
    initialised from that file (read with ``weights_only=True``; on ``meta`` only its keys and
    shapes are checked). Raise :class:`ModelSpecError` naming ``<key>.name``,
    ``<key>.options.<option>`` or ``<key>.weights`` when the spec cannot be built.
    """
    from . import checkpoints

    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = _construct(spec, in_shape, num_outputs, key)
    if any(nn.parameter.is_lazy(t) for t in _tensors(module)):
        _forward_check(module, in_shape, num_outputs, f"{key}.name = {spec['name']!r}")  # materialises them
    if spec.get("weights"):
        path = catalog.resolve_path(spec["weights"], f"{key}.weights")
        try:
            if module_on_meta(module):
                checkpoints.check_external(path, module, key=f"{key}.weights")
            else:
                checkpoints.load_weights(path, module, key=f"{key}.weights")
        except checkpoints.CheckpointError as exc:
            raise ModelSpecError(str(exc)) from exc
    return module


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    return [*module.parameters(), *module.buffers()]


def module_on_meta(module: nn.Module) -> bool:
    """True when ``module`` has a tensor on the ``meta`` device (built without memory)."""
    return any(t.is_meta for t in _tensors(module))


@dataclass(frozen=True)
class ModelInfo:
    """What :func:`inspect_model` learned about a spec, without allocating its weights."""

    num_params: int
    param_bytes: int
    buffer_bytes: int
    has_batchnorm: bool
    output_shape: tuple[int, ...]
    bn_min_values: int = 0  # fewest values per channel per sample that a BatchNorm layer sees (0: none)


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _forward_check(module: nn.Module, in_shape, num_outputs: int, where: str) -> tuple[tuple[int, ...], int]:
    """Run one batch of 2 through ``module`` in train and eval mode; return the output shape and
    the fewest values per channel per sample that a BatchNorm layer sees (0 without BatchNorm;
    1 means a batch of one sample cannot be normalised).

    Raise :class:`ModelSpecError` with torch's own message when the forward fails on this input
    shape, or when the output is not a tensor of shape (2, num_outputs). Leaves it in train mode.
    """
    device = next((t.device for t in _tensors(module)), torch.device("cpu"))
    x = torch.zeros(2, *in_shape, device=device)
    seen: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(math.prod(i[0].shape[2:])))
             for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        out_shape = _forward_modes(module, x, in_shape, num_outputs, where)
    finally:
        for h in hooks:
            h.remove()
    return out_shape, min(seen, default=0)


def _forward_modes(module: nn.Module, x: torch.Tensor, in_shape, num_outputs: int, where: str) -> tuple[int, ...]:
    for mode in ("train", "eval"):
        module.train(mode == "train")
        with torch.no_grad():
            try:
                out = module(x)
            except Exception as exc:
                raise _failed(where, f"its forward fails on a batch of input shape {tuple(in_shape)} ({mode} mode)", exc) from exc
        if not isinstance(out, torch.Tensor):
            what = f"returned {type(out).__name__} in {mode} mode, not a tensor of shape (N, {num_outputs})"
        elif tuple(out.shape) != (2, num_outputs):
            what = (f"output has shape {tuple(out.shape)} for a batch of 2 inputs of shape {tuple(in_shape)}; "
                    f"expected (2, {num_outputs}): one row of {num_outputs} outputs per sample")
        else:
            continue
        raise ModelSpecError(f"{where}: its {what}")
    module.train()
    return tuple(out.shape)


def inspect_model(spec: dict, in_shape, num_outputs: int, max_bytes: int | None = None, key: str = "model") -> ModelInfo:
    """Check at parse time that ``spec`` builds and runs on this data, allocating nothing.

    Builds the model on the ``meta`` device and refuses it when its parameters and buffers take
    more than ``max_bytes`` (message with parameter count and memory). Then runs one forward of a
    batch of 2 inputs of shape ``in_shape`` in train and eval mode and checks the output is
    (2, num_outputs): on a CPU build when the model has at most :data:`CPU_CHECK_BYTES` (a few
    milliseconds; errors are torch's own, and data-dependent code such as ``.item()`` works), on
    the meta build above that (the first meta forward in a process imports ``torch._dynamo``, about
    a second). The caller's random state is left as it was. Returns a :class:`ModelInfo`; raises
    :class:`ModelSpecError` naming the key.
    """
    module = build_model(spec, in_shape, num_outputs, key=key, device="meta")
    params = list(module.parameters())
    info = dict(
        num_params=sum(p.numel() for p in params),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in module.buffers()),
        has_batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()),
    )
    total = info["param_bytes"] + info["buffer_bytes"]
    where = f"{key}.name = {spec['name']!r}"
    if max_bytes is not None and total > max_bytes:
        builtin = catalog.model_kind(spec["name"]) == "builtin"
        knobs = f"width {spec.get('width', 1.0)}, " if builtin else ""
        raise ModelSpecError(
            f"{where} ({knobs}options {spec.get('options') or {}}) has {info['num_params']:,} parameters, "
            f"{_bytes(total)} of parameters and buffers, more than the {_bytes(max_bytes)} allowed; make it "
            f"smaller ({'width, ' if builtin else ''}options) or allow more memory"
        )
    if total <= CPU_CHECK_BYTES:  # cheap to build for real: torch's own messages, no meta limits
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            module = build_model({**spec, "weights": None}, in_shape, num_outputs, key=key, device="cpu")
    out_shape, bn_min = _forward_check(module, in_shape, num_outputs, where)
    return ModelInfo(output_shape=out_shape, bn_min_values=bn_min, **info)


def spec_json(spec: dict) -> str:
    """Canonical JSON of a model spec, stored in checkpoints to detect mismatches."""
    keep = {k: spec.get(k) for k in ("name", "width", "dropout", "batchnorm", "options")}
    return json.dumps(keep, sort_keys=True)
