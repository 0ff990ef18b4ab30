"""Facts the plan needs from outside the config: data shapes, every network, external checkpoints.

* Built-in datasets are described from the catalogue (no torch); the researcher's own files are
  read and validated by :func:`losslab.data.dataset_info` (cached by file size and time).
* Every network is built on the ``meta`` device and run once on a small batch
  (:func:`losslab.models.inspect_model`): a model that does not fit its data, or whose
  parameters alone exceed the memory budget, is refused before any job.
* External checkpoints are checked key by key against the network, reading names and shapes
  only (:func:`losslab.checkpoints.check_external`).

Network and checkpoint results are cached in a small JSON file, keyed by the model spec, the
data shape, the source of the model code (the user's file included) and the checkpoint file's
size and time, so a dry run whose inputs were checked before does not import torch at all.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from .. import catalog
from .core import PlanError

PACKAGE = Path(__file__).resolve().parents[1]


class Probe:
    """Cached facts (``cache_dir`` None: no cache)."""

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.file = self.cache_dir / "networks.json" if self.cache_dir else None
        self.cache: dict = {}
        if self.file and self.file.exists():
            try:
                self.cache = json.loads(self.file.read_text())
            except (OSError, ValueError):
                self.cache = {}
        self.dirty = False

    # ---- datasets ----------------------------------------------------------------------------
    def dataset(self, cfg: dict) -> dict:
        """in_shape, num_outputs, task, n_train, n_test of a dataset section (files checked)."""
        name = cfg["name"]
        try:
            if catalog.dataset_kind(name) in ("embedded", "torchvision"):
                catalog.check_dataset(name, cfg["data_dir"], cfg["download"])
                info = catalog.builtin_info(name, cfg["test_fraction"], cfg.get("mnist1d"))
            else:
                from ..data import dataset_info

                info = dataset_info(cfg, self.cache_dir)[:5]
        except (ValueError, FileNotFoundError) as exc:
            text = str(exc)
            raise PlanError(text if text.startswith("dataset.") else f"dataset.name = {name!r}: {text}") from None
        return dict(zip(("in_shape", "num_outputs", "task", "n_train", "n_test"), info))

    # ---- networks ----------------------------------------------------------------------------
    def _code_hash(self, spec: dict) -> str | None:
        """Hash of the code that builds ``spec`` (losslab's and the user's); None: do not cache."""
        h = hashlib.sha256()
        for m in ("models.py", "catalog.py"):
            h.update((PACKAGE / m).read_bytes())
        kind = catalog.model_kind(spec["name"])
        target = spec["name"].rsplit(":", 1)[0]
        if kind == "file":
            h.update(catalog.resolve_path(target, "model.name", spec["name"]).read_bytes())
        elif kind == "package":
            with catalog._on_sys_path(catalog.search_roots()):
                try:
                    found = importlib.util.find_spec(target)
                except (ImportError, ValueError):
                    found = None
            if found is None or not found.origin or not Path(found.origin).is_file():
                return None
            h.update(Path(found.origin).read_bytes())
        return h.hexdigest()[:16]

    def _cached(self, key_obj, compute):
        key = hashlib.sha256(json.dumps(key_obj, sort_keys=True, default=str).encode()).hexdigest()[:24]
        if key not in self.cache:
            self.cache[key] = compute()
            self.dirty = True
        return self.cache[key]

    def network(self, spec: dict, in_shape, num_outputs: int, max_bytes: int) -> dict:
        """n_params, param_bytes, has_bn, bn_min_values of a model on an input shape.

        Raises the model code's own error (:class:`losslab.catalog.ModelSpecError`)."""
        def compute():
            from ..models import inspect_model

            info = inspect_model(spec, tuple(in_shape), num_outputs, max_bytes=max_bytes)
            return {"n_params": info.num_params, "param_bytes": info.param_bytes, "has_bn": info.has_batchnorm,
                    "bn_min_values": info.bn_min_values}

        code = self._code_hash(spec)
        if code is None:
            return compute()
        return self._cached(["network", spec, list(in_shape), num_outputs, max_bytes, code], compute)

    def external(self, spec: dict, in_shape, num_outputs: int, path: Path, strip_prefix, key: str) -> None:
        """Check one external checkpoint's keys and shapes against the network (cached)."""
        def compute():
            from ..checkpoints import check_external
            from ..models import build_model

            module = build_model(spec, tuple(in_shape), num_outputs, device="meta")
            check_external(path, module, strip_prefix, key=key)
            return True

        st = path.stat()
        self._cached(["external", spec, list(in_shape), num_outputs, str(path.resolve()), st.st_size,
                      st.st_mtime_ns, strip_prefix, self._code_hash(spec)], compute)

    def align_spec(self, plan, exp, setting: str, key: str) -> int:
        """The number of hidden-unit groups of a setting's network (losslab.align derives them from
        its graph); a network whose graph cannot be aligned soundly is refused with the reason."""
        spec = exp.setting_model(setting)
        shape = tuple(exp.info["in_shape"])

        def compute():
            import torch

            from ..align import permutation_spec
            from ..models import build_model

            with torch.random.fork_rng(devices=[]):
                module = build_model(spec, shape, exp.info["num_outputs"])
            return len(permutation_spec(module, torch.zeros(2, *shape)).groups)

        code = self._code_hash(spec)
        try:
            return self._cached(["align", spec, list(shape), code,
                                 hashlib.sha256((PACKAGE / "align.py").read_bytes()).hexdigest()[:16]], compute)
        except ValueError as exc:
            raise PlanError(f"{key} = {setting!r}: the hidden units of model.name = {spec['name']!r} cannot be aligned: "
                            f"{exc}. Ways out: switch the align stage off (align.enabled: false) for this model, or "
                            "build the network from layers that have permutation rules (the table in docs/stages.md, "
                            "section Alignment)") from None

    def save(self) -> None:
        if self.file and self.dirty:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_name(f"{self.file.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self.cache, indent=1, sort_keys=True))
            os.replace(tmp, self.file)
