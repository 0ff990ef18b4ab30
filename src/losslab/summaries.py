"""Summaries of long-format tables that need no network (and no torch): barriers along lines.

Gathers and figures use these, so their jobs start without torch.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from .io import ArtifactError


def barriers(rows: pd.DataFrame, by: Iterable[str] = ("alignment", "method"), x: str = "alpha",
             metrics: Iterable[str] = ("loss", "error")) -> pd.DataFrame:
    """Per group of ``by`` columns and split, for each metric: ``barrier`` (the largest value along
    ``x`` minus the mean of the two ends), ``midpoint`` (the value at ``x`` = 0.5 minus that mean;
    NaN when 0.5 is not on the grid or a value is not finite) and ``endpoint_mean``."""
    by = list(by)
    out = []
    for key, g in rows.groupby(by + ["split"], sort=True):
        g = g.sort_values(x)
        mid = g[np.isclose(g[x], 0.5)]
        for metric in metrics:
            v = g[metric].to_numpy(float)
            ends = 0.5 * (v[0] + v[-1])
            finite = bool(np.isfinite(v).all())
            out.append({**dict(zip(by + ["split"], key)), "metric": metric,
                        "barrier": float(v.max()) - ends if finite else math.nan, "endpoint_mean": ends,
                        "midpoint": float(mid[metric].iloc[0]) - ends if finite and len(mid) else math.nan})
    return pd.DataFrame(out)


def gather_tiles(frames: list[pd.DataFrame], resolution: int, name: str) -> pd.DataFrame:
    """The whole G x G grid from its tiles; raises ArtifactError unless every point is there once."""
    df = pd.concat(frames, ignore_index=True)
    df = df[df["resolution"] == resolution]
    n = df.groupby("split").size()
    dup = df.duplicated(["split", "ix", "iy"]).sum()
    if dup or (n != resolution * resolution).any():
        raise ArtifactError(f"tiles of {name} do not cover the {resolution}x{resolution} grid exactly (points per split: "
                            f"{n.to_dict()}, duplicates: {dup}); delete the tiles and rerun")
    return df.sort_values(["split", "iy", "ix"]).reset_index(drop=True)
