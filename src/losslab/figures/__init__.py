"""Every figure of the workflow, drawn from Parquet tables only (never from networks).

One module per stage (``endpoints``, ``curves``, ``planes``, ``structure`` for the wedge toy and
the connectors, ``sweeps`` for tunnels and SWA, ...), one style and one way to save: PNG plus
PDF, each written atomically. The report captions of the figures are in ``captions/`` beside
this code.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402

plt.rcParams.update({"figure.dpi": 100, "axes.grid": False, "axes.spines.top": False, "axes.spines.right": False,
                     "legend.frameon": False, "font.size": 9})


def save(fig, png, pdf=None) -> None:
    """Save a figure as ``png`` (and ``pdf`` when given), each atomically, and close it."""
    for p in (png, pdf):
        if p:
            with atomic_path(p) as tmp:
                fig.savefig(tmp, format=str(p).rsplit(".", 1)[-1], dpi=130, bbox_inches="tight")
    plt.close(fig)
