"""Networks trained outside losslab, read as weight-space points.

A researcher's checkpoint is a state dict saved with ``torch.save`` (``.pt``, ``.pth``, ``.ckpt``,
``.bin``; read with ``weights_only=True``, optionally wrapped as ``{"state_dict": ...}``,
``{"model_state_dict": ...}`` or ``{"model": ...}``) or a ``.safetensors`` file. Reading one never
runs code. A key prefix such as ``module.`` (DataParallel) or ``model.`` (Lightning) can be
stripped.

The file's keys are matched against the model's ``state_dict``: missing keys, unexpected keys
and shape mismatches are all listed by name in one :class:`CheckpointError`. BatchNorm running
statistics in the file become the point's buffers (``num_batches_tracked`` may be absent).

:func:`check_external` reads only names and shapes (the safetensors header, or a memory-mapped
``torch.load``), so the run plan can check every checkpoint against a ``meta``-device model at
parse time; :func:`load_external` reads the weights into a :class:`losslab.io.Point`.
"""
from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import torch
from torch import nn

from . import catalog
from .flat import FlatModel
from .io import Point
from .models import spec_json

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
WRAPPERS = ("state_dict", "model_state_dict", "model")  # common {"state_dict": ...} wrappers
OPTIONAL_SUFFIX = "num_batches_tracked"  # BN step counters: used by no stage, taken as 0 when absent
LIST_LIMIT = 8


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not match the model; the message names the
    config key and the file."""


def _names(items: list[str]) -> str:
    """A short list: every item up to :data:`LIST_LIMIT`, then a count of the rest."""
    shown = ", ".join(items[:LIST_LIMIT])
    return shown if len(items) <= LIST_LIMIT else f"{shown} and {len(items) - LIST_LIMIT} more ({len(items)} in all)"


def _unwrap(obj, where: str) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded ``.pt`` object; refuse anything else by name."""
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[w] for w in WRAPPERS if isinstance(obj.get(w), dict)), None)
        if inner is not None:
            obj = inner
    if not isinstance(obj, dict) or not obj:
        what = "an empty dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise CheckpointError(
            f"{where}: holds {what}, not a state dict "
            f"(a dict of parameter names to tensors; wrappers {', '.join(WRAPPERS)} are unwrapped)"
        )
    bad = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{where}: entries that are not tensors: {_names(bad)}; a checkpoint must be a state dict, "
            f"or a dict with the state dict under one of {', '.join(WRAPPERS)}"
        )
    return obj


def load_weights_only(path: Path, where: str, error: type[Exception], mmap: bool = False):
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped when asked (files in the
    legacy, non-zip format are read whole). A file that holds pickled Python objects, or that
    cannot be read, raises ``error`` with a message that starts with ``where``."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if not (mmap and "mmap" in str(exc)):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:
            raise error(f"{where}: cannot be read as a torch file (unpickling failed: {str(exc).split('error:')[-1].strip()})") from exc
        raise error(
            f"{where}: refused, it holds pickled Python objects, not only tensors ({found.group(1)}); "
            f"loading it would run code. Save tensors only, for a model torch.save(model.state_dict(), path)"
        ) from exc
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise error(f"{where}: cannot be read as a torch file ({type(exc).__name__}: {first})") from exc


def _torch_state(path: Path, where: str, mmap: bool) -> dict[str, torch.Tensor]:
    return _unwrap(load_weights_only(path, where, CheckpointError, mmap), where)


def _safetensors_call(fn, path: Path, where: str):
    try:
        return fn(path)
    except Exception as exc:  # the Rust reader raises SafetensorError, or OSError for I/O
        raise CheckpointError(f"{where}: cannot be read as a safetensors file ({type(exc).__name__}: {exc})") from exc


def _check_suffix(path: Path, where: str) -> None:
    if path.suffix not in TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,):
        raise CheckpointError(
            f"{where}: unknown checkpoint format {path.suffix or '(no suffix)'!r}; allowed: "
            f"{', '.join(TORCH_SUFFIXES)} (torch.save of a state dict) or {SAFETENSORS_SUFFIX}"
        )


def _header(path: Path, where: str) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Name -> (shape, is floating point) of every tensor in the file, without reading weights."""
    _check_suffix(path, where)
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors import safe_open

        def read(p):
            with safe_open(p, framework="pt") as f:
                return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype().startswith(("F", "BF")))
                        for k in f.keys()}

        return _safetensors_call(read, path, where)
    return {k: (tuple(v.shape), v.is_floating_point()) for k, v in _torch_state(path, where, mmap=True).items()}


def _tensors(path: Path, where: str) -> dict[str, torch.Tensor]:
    """Every tensor of the file, read into memory."""
    _check_suffix(path, where)
    if path.suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        return _safetensors_call(load_file, path, where)
    return _torch_state(path, where, mmap=False)


def _strip(state: dict, prefix: str | None, where: str) -> dict:
    """``state`` with ``prefix`` removed from the keys that carry it."""
    if not prefix:
        return state
    if not any(k.startswith(prefix) for k in state):
        raise CheckpointError(
            f"{where}: strip_prefix {prefix!r} matches no key of the file; its keys begin {_names(sorted(state)[:3])}"
        )
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def _prefix_hint(found: dict, expected: dict) -> str:
    """A suggestion of strip_prefix when every key of the file carries one the model lacks."""
    first = next(iter(found), "")
    prefix = first[: first.find(".") + 1] if "." in first else ""
    if prefix and all(k.startswith(prefix) for k in found) and any(k[len(prefix):] in expected for k in found):
        return f"; every key of the file begins with {prefix!r}: set strip_prefix: {prefix!r}"
    return ""


def _match(found: dict[str, tuple[tuple[int, ...], bool]], module: nn.Module, where: str) -> None:
    """Raise one :class:`CheckpointError` listing, by name, every key of ``module``'s state dict
    that the file lacks, every key of the file the model lacks, every shape that differs and
    every parameter stored with a non-floating dtype."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()}
    params = {k for k, _ in module.named_parameters(remove_duplicate=False)}
    missing = [k for k in expected if k not in found and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} (file {list(found[k][0])}, model {list(s)})" for k, s in expected.items() if k in found and found[k][0] != s]
    dtypes = [k for k in params if k in found and not found[k][1]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} keys of the model are missing from the file: {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} keys of the file are not in the model: {_names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shapes differ: {_names(shapes)}")
    if dtypes:
        problems.append(f"{len(dtypes)} parameters are not floating point: {_names(dtypes)}")
    if problems:
        raise CheckpointError(
            f"{where}: does not match the model ({'; '.join(problems)}){_prefix_hint(found, expected)}"
        )


def _where(path, key: str) -> str:
    return f"{key} ({path})"


def check_external(path, module: nn.Module, strip_prefix: str | None = None, key: str = "endpoints.external") -> None:
    """Check at parse time that the checkpoint at ``path`` fits ``module`` (best built on the
    ``meta`` device), reading only names and shapes. Returns None; raises
    :class:`CheckpointError` naming ``key`` (for example ``endpoints.external.mine[0]``) and the
    file, or :class:`losslab.catalog.InputNotFoundError` when the file is not found."""
    path = catalog.resolve_path(path, key)
    where = _where(path, key)
    _match(_strip(_header(path, where), strip_prefix, where), module, where)


def _checked_state(path, module: nn.Module, strip_prefix: str | None, key: str) -> tuple[Path, dict[str, torch.Tensor]]:
    path = catalog.resolve_path(path, key)
    where = _where(path, key)
    state = _strip(_tensors(path, where), strip_prefix, where)
    _match({k: (tuple(v.shape), v.is_floating_point()) for k, v in state.items()}, module, where)
    return path, state


def load_weights(path, module: nn.Module, key: str, strip_prefix: str | None = None) -> nn.Module:
    """Copy the checkpoint at ``path`` into ``module`` (in place) after matching it by name;
    returns ``module``. Raises as :func:`check_external`."""
    _, state = _checked_state(path, module, strip_prefix, key)
    module.load_state_dict(state, strict=False)  # strictness done by _match, which allows absent counters
    return module


def sha256(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_external(path, module: nn.Module, strip_prefix: str | None = None, *, model_spec: dict,
                  key: str = "endpoints.external", **meta) -> Point:
    """Read an externally trained checkpoint as a weight-space :class:`Point`.

    ``module`` is the model of ``model_spec`` (on any device, ``meta`` included: only its names,
    shapes and dtypes are used). Returns a point whose ``flat`` vector holds the file's parameters
    in :class:`losslab.flat.FlatModel` order (cast to the model's dtypes, on the CPU), whose
    buffers are the file's persistent buffers (BatchNorm statistics; an absent
    ``num_batches_tracked`` is 0), and whose meta holds ``model_spec`` (JSON), ``layout``,
    ``status`` "ok", ``source`` (the resolved path), ``sha256`` of the file and any ``meta``
    given. Raises as :func:`check_external`.
    """
    path, state = _checked_state(path, module, strip_prefix, key)
    fm = FlatModel(module)
    dtypes = {n: p.dtype for n, p in module.named_parameters()}
    flat = torch.cat([state[n].reshape(-1).to(dtypes[n]) for n in fm.names])
    persistent = set(module.state_dict(keep_vars=True))
    buffers = {}
    for name, buf in module.named_buffers():
        if name in state:
            buffers[name] = state[name].to(buf.dtype).clone()
        elif name in persistent:  # an absent num_batches_tracked (the only key _match lets be absent)
            buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype)
    info = {"model_spec": spec_json(model_spec), "layout": fm.layout, "status": "ok",
            "source": str(path), "sha256": sha256(path), **meta}
    return Point(flat, buffers, info)
