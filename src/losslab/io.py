"""Artifact I/O: weights-only checkpoints and Parquet tables, written atomically.

Every writer goes through :func:`atomic_path`: the data is written to a temporary name in the
same folder and renamed into place, so a killed job never leaves a file that looks complete.
Every reader turns a truncated or corrupted file into an :class:`ArtifactError` that names it.

torch is imported by the checkpoint functions only, so jobs that only read and write tables
(gathers, summaries, figures) start without it.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


class ArtifactError(RuntimeError):
    """A checkpoint or table is missing, truncated, corrupted or incompatible."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"table {path} does not exist")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise ArtifactError(
            f"table {path} is truncated or corrupted ({type(exc).__name__}: {exc}); "
            "delete it and rerun the rule that makes it"
        ) from exc


def save_tensors(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` of a dict of tensors and plain values, atomically."""
    import torch

    buf = io.BytesIO()  # in memory: the archive name inside the zip does not depend on the file name
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_tensors(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: loading never runs code."""
    import torch

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ArtifactError(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain values, "
            "and loading it would run code (weights_only=True); recreate it with losslab"
        ) from exc
    except Exception as exc:
        raise ArtifactError(
            f"checkpoint {path} is truncated, corrupted or not a weights-only checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "delete it and rerun the rule that makes it"
        ) from exc


@dataclass
class Point:
    """A point in weight space: the flat parameter vector, BN buffers and provenance."""

    flat: torch.Tensor
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def model_spec(self) -> dict:
        return json.loads(self.meta["model_spec"])

    @property
    def status(self) -> str:
        return self.meta.get("status", "ok")


def save_point(point: Point, path: str | os.PathLike) -> None:
    meta = dict(point.meta)
    save_tensors(
        {
            "format": "losslab.point/1",
            "flat": point.flat.detach().cpu().contiguous(),
            "buffers": {k: v.detach().cpu() for k, v in point.buffers.items()},
            "meta": meta,
        },
        path,
    )


def load_point(path: str | os.PathLike, map_location="cpu") -> Point:
    obj = load_tensors(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != "losslab.point/1":
        raise ArtifactError(f"checkpoint {path} is not a losslab weight-space point")
    return Point(flat=obj["flat"], buffers=dict(obj["buffers"]), meta=dict(obj["meta"]))


def check_compatible(points: dict[str, Point]) -> None:
    """Raise if the points were not made by one architecture with one parameter layout."""
    items = list(points.items())
    if not items:
        raise ArtifactError("no checkpoints given")
    ref_name, ref = items[0]
    for name, p in items[1:]:
        if p.meta.get("layout") != ref.meta.get("layout"):
            raise ArtifactError(
                f"checkpoints {ref_name} and {name} do not match: different parameter layouts "
                f"(architecture {ref.meta.get('model_spec')} vs {p.meta.get('model_spec')}); "
                "every point of one experiment must come from the same architecture"
            )
        if p.flat.shape != ref.flat.shape:
            raise ArtifactError(
                f"checkpoints {ref_name} and {name} have different parameter counts "
                f"({ref.flat.numel()} vs {p.flat.numel()})"
            )
