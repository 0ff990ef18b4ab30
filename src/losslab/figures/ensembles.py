"""Figures of the ensembles stage: accuracy and NLL against the training budget, and the
diversity (prediction disagreement, weight-space distance) that explains them."""
from __future__ import annotations

import pandas as pd

from . import plt, save

ORDER = ("independent", "fge", "snapshots", "swa", "curve", "simplex")
LABEL = {"independent": "independent ensemble", "fge": "FGE", "snapshots": "snapshot ensemble",
         "swa": "SWA (one network)", "curve": "curve ensemble", "simplex": "m-connector simplex"}
MARK = {"independent": "o-", "fge": "s-", "snapshots": "^-", "swa": "v--", "curve": "D", "simplex": "P"}


def _methods(t: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(t["method"]))
    return [m for m in ORDER if m in present] + [m for m in present if m not in ORDER]


def _panel(ax, t: pd.DataFrame, column: str) -> None:
    for i, method in enumerate(_methods(t)):
        g = t[t.method == method]
        s = g.groupby(["budget_epochs", "n_members"])[column].agg(["mean", "std"]).reset_index()
        s = s.sort_values(["budget_epochs", "n_members"])
        ax.errorbar(s["budget_epochs"], s["mean"], yerr=s["std"].fillna(0), fmt=MARK.get(method, "o-"), ms=4,
                    color=f"C{i}", capsize=2, label=LABEL.get(method, method))
        if method in ("curve", "simplex"):  # one budget, several ensemble sizes: name them
            for _, r in s.iterrows():
                ax.annotate(f"{int(r['n_members'])}", (r["budget_epochs"], r["mean"]), fontsize=6,
                            xytext=(3, 0), textcoords="offset points", color=f"C{i}")


def plot_budget(table: pd.DataFrame, png, pdf=None, split: str = "test") -> None:
    """Test accuracy and NLL of every method's ensembles against the training budget in epochs;
    mean and standard deviation over instances (seeds, subsets, curves, draws)."""
    t = table[table.split == split]
    cols = [("accuracy", "accuracy"), ("loss", "NLL")] if t["accuracy"].notna().any() else [("loss", "MSE")]
    fig, axes = plt.subplots(1, len(cols), figsize=(5.6 * len(cols), 4.0), squeeze=False)
    for ax, (col, name) in zip(axes[0], cols):
        _panel(ax, t, col)
        ax.set(xlabel="training budget (epochs, endpoints included)", ylabel=f"{split} {name}",
               title=f"ensemble {name} at equal cost ({split})")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)


def plot_diversity(table: pd.DataFrame, png, pdf=None, split: str = "test") -> None:
    """Mean pairwise prediction disagreement and weight-space distance of the members against the
    budget: members on different wedges disagree more."""
    t = table[(table.split == split) & (table.n_members > 1)]
    fig, axes = plt.subplots(1, 2, figsize=(11.2, 4.0))
    for ax, (col, name) in zip(axes, (("disagreement", "prediction disagreement"), ("distance", "weight-space distance"))):
        _panel(ax, t, col)
        ax.set(xlabel="training budget (epochs, endpoints included)", ylabel=name, title=f"members' {name} ({split})")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, png, pdf)
