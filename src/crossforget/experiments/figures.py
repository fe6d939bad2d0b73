"""Figures written next to result tables (matplotlib, Agg backend, atomic PNG writes)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crossforget.io import atomic_write_bytes  # noqa: E402


def save_figure(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def table2_chart(results: dict, path: Path) -> Path:
    """D_f (forget-label) and D_r mAP per method, one bar per bits x direction, std as error bars."""
    from crossforget.experiments.table2 import LABELS, PRIMARY_FORGET

    summary = results["summary"]
    methods = list(summary)
    settings = list(summary[methods[0]])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    width = 0.8 / len(settings)
    colours = plt.cm.viridis(np.linspace(0.1, 0.9, len(settings)))
    for ax, (metric, title) in zip(axes, ((PRIMARY_FORGET, "D_f mAP (forget label) — closer to Retrain is better"),
                                          ("retain", "D_r mAP — closer to Original is better")), strict=True):
        x = np.arange(len(methods))
        for j, setting in enumerate(settings):
            means = [summary[m][setting][metric]["mean"] for m in methods]
            stds = [summary[m][setting][metric]["std"] for m in methods]
            ax.bar(x + (j - (len(settings) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
                   color=colours[j], label=setting)
        ax.set_xticks(x, [LABELS.get(m, m) for m in methods], rotation=20)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mAP (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(title="bits-direction", fontsize=8, ncols=2)
    fig.suptitle(f"Forgetting {', '.join(results['forget'])} on {results['config']['dataset']['name']}")
    return save_figure(fig, path)
