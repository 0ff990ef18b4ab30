"""Figure of the endpoint stage: training curves of the independent endpoints."""
from __future__ import annotations

import pandas as pd

from . import plt, save


def plot_training(hist: pd.DataFrame, png: str, pdf: str | None = None) -> None:
    """Loss and accuracy per epoch, train and test, one line per (setting, seed)."""
    has_acc = hist["accuracy"].notna().any()
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.8), squeeze=False)
    axes = axes[0]
    styles = {"train": "-", "test": "--"}
    colors = {}
    for (setting, seed, split), g in hist.groupby(["setting", "seed", "split"]):
        if split not in styles:
            continue
        c = colors.setdefault((setting, seed), f"C{len(colors) % 10}")
        label = f"{setting} seed {seed} ({split})"
        axes[0].plot(g["epoch"], g["loss"], styles[split], color=c, label=label)
        if has_acc:
            axes[1].plot(g["epoch"], g["accuracy"], styles[split], color=c, label=label)
        if (g.get("status") == "diverged").any():
            axes[0].annotate("diverged", (g["epoch"].max(), 1), xycoords=("data", "axes fraction"), color=c)
    axes[0].set(xlabel="epoch", ylabel="loss", yscale="log", title="endpoint training loss")
    if has_acc:
        axes[1].set(xlabel="epoch", ylabel="accuracy", title="endpoint accuracy")
    axes[-1].legend(fontsize=6, ncol=1, loc="best")
    fig.tight_layout()
    save(fig, png, pdf)
