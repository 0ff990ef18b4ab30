"""Facts the plan needs from torch: dataset shapes and a meta-device build of every network.

Building a network on the ``meta`` device allocates nothing, so even an absurdly wide model is
checked in milliseconds; one forward pass of a meta batch proves the model fits the input shape
and gives the output shape. Results are cached in a small JSON file (keyed by the model spec,
the data shape and the source of the model code), so a dry run whose networks were checked
before does not import torch at all.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from .. import catalog
from .core import PlanError

PACKAGE = Path(__file__).resolve().parents[1]

# Built-in datasets: input shape, outputs, task, split sizes (digits: 1797 images split by
# dataset.test_fraction; the others have fixed splits).
BUILTIN = {
    "digits": {"in_shape": [1, 8, 8], "num_outputs": 10, "task": "classification", "n": 1797},
    "regression1d": {"in_shape": [1], "num_outputs": 1, "task": "regression", "n_train": 120, "n_test": 200},
    "cifar10": {"in_shape": [3, 32, 32], "num_outputs": 10, "task": "classification", "n_train": 50000, "n_test": 10000},
    "cifar100": {"in_shape": [3, 32, 32], "num_outputs": 100, "task": "classification", "n_train": 50000, "n_test": 10000},
    "mnist": {"in_shape": [1, 28, 28], "num_outputs": 10, "task": "classification", "n_train": 60000, "n_test": 10000},
    "fashionmnist": {"in_shape": [1, 28, 28], "num_outputs": 10, "task": "classification", "n_train": 60000, "n_test": 10000},
}


def dataset_facts(cfg: dict) -> dict:
    """in_shape, num_outputs, task, n_train, n_test of a dataset section (files are checked)."""
    name = cfg["name"]
    if name not in BUILTIN:
        raise PlanError(f"dataset.name = {name!r} is not a known dataset; known: {', '.join(BUILTIN)}")
    try:
        catalog.check_dataset(name, cfg["data_dir"], cfg["download"])
    except FileNotFoundError as exc:
        raise PlanError(f"dataset.name = {name!r}: {exc}") from None
    facts = dict(BUILTIN[name])
    if "n" in facts:
        n = facts.pop("n")
        n_test = int(round(n * cfg["test_fraction"]))
        facts.update(n_train=n - n_test, n_test=n_test)
    return facts


class Probe:
    """Network facts with a JSON cache (``cache_dir`` None: no cache)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.file = Path(cache_dir) / "networks.json" if cache_dir else None
        self.cache: dict = {}
        if self.file and self.file.exists():
            try:
                self.cache = json.loads(self.file.read_text())
            except (OSError, ValueError):
                self.cache = {}
        self.dirty = False

    def _code_hash(self) -> str:
        h = hashlib.sha256()
        for m in ("models.py", "catalog.py"):
            h.update((PACKAGE / m).read_bytes())
        return h.hexdigest()[:16]

    def network(self, spec: dict, in_shape, num_outputs: int) -> dict:
        """n_params, param_bytes, has_bn, bn_min_values, out_shape of a model on an input shape.

        Raises ValueError with the builder's or the forward pass's own message."""
        key = hashlib.sha256(json.dumps([spec, list(in_shape), num_outputs, self._code_hash()],
                                        sort_keys=True).encode()).hexdigest()[:24]
        if key not in self.cache:
            self.cache[key] = meta_network_facts(spec, in_shape, num_outputs)
            self.dirty = True
        return self.cache[key]

    def save(self) -> None:
        if self.file and self.dirty:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f"{self.file.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self.cache, indent=1, sort_keys=True))
            os.replace(tmp, self.file)


def meta_network_facts(spec: dict, in_shape, num_outputs: int) -> dict:
    """Build the model on the meta device and run one forward pass of a meta batch of two."""
    import torch

    from ..models import build_model

    bn_values: list[int] = []

    def hook(mod, inp, out):
        bn_values.append(math.prod(inp[0].shape[2:]) if inp[0].ndim > 2 else 1)

    try:
        with torch.device("meta"):
            module = build_model(spec, tuple(in_shape), num_outputs)
        bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        hooks = [m.register_forward_hook(hook) for m in bns]
        module.eval()
        with torch.no_grad():
            out = module(torch.empty(2, *in_shape, device="meta"))
        for h in hooks:
            h.remove()
    except Exception as exc:  # the builder's own error, whatever its type
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{type(exc).__name__}: {text}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_outputs):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model returns outputs of shape {shape} for a batch of 2, "
                         f"expected (2, {num_outputs})")
    params = list(module.parameters())
    return {"n_params": int(sum(p.numel() for p in params)),
            "param_bytes": int(sum(p.numel() * p.element_size() for p in params)),
            "has_bn": bool(bns), "bn_min_values": int(min(bn_values)) if bn_values else 0,
            "out_shape": list(out.shape[1:])}
