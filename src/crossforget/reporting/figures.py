"""Figures written next to result tables (matplotlib, Agg backend, atomic PNG writes)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crossforget.core.io import atomic_write_bytes  # noqa: E402
from crossforget.unlearning.methods import reference_columns  # noqa: E402

if TYPE_CHECKING:
    from crossforget.experiments.density import DensityResult


def save_figure(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def table2_chart(results: dict, path: Path) -> Path:
    """D_f (forget-label) and D_r mAP per method, one bar per bits x direction, std as error bars."""
    from crossforget.experiments.table2 import PRIMARY_FORGET, column_label

    summary = results["summary"]
    methods = list(summary)
    settings = list(summary[methods[0]])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    width = 0.8 / len(settings)
    colours = plt.cm.viridis(np.linspace(0.1, 0.9, len(settings)))
    for ax, (metric, title) in zip(
        axes,
        (
            (PRIMARY_FORGET, "D_f mAP (forget label) — closer to Retrain is better"),
            ("retain", "D_r mAP — closer to Original is better"),
        ),
        strict=True,
    ):
        x = np.arange(len(methods))
        for j, setting in enumerate(settings):
            means = [summary[m][setting][metric]["mean"] for m in methods]
            stds = [summary[m][setting][metric]["std"] for m in methods]
            ax.bar(
                x + (j - (len(settings) - 1) / 2) * width,
                means,
                width,
                yerr=stds,
                capsize=2,
                color=colours[j],
                label=setting,
            )
        ax.set_xticks(x, [column_label(m) for m in methods], rotation=20)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mAP (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(title="bits-direction", fontsize=8, ncols=2)
    fig.suptitle(f"Forgetting {', '.join(results['forget'])} on {results['config']['dataset']['name']}")
    return save_figure(fig, path)


def _ci_band(entries: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper interval bounds, or None when no entry has one (fewer than two seeds)."""
    if all(e["ci_low"] is None for e in entries):
        return None
    low = np.array([np.nan if e["ci_low"] is None else e["ci_low"] for e in entries], dtype=float)
    high = np.array([np.nan if e["ci_high"] is None else e["ci_high"] for e in entries], dtype=float)
    return low, high


def _method_label(method: str) -> str:
    from crossforget.experiments.table2 import column_label

    return column_label(method)


def classes_chart(results: dict, path: Path) -> Path:
    """Fig. 3: mean mAP per forget setting, one line per method with its 95% CI shaded; references dashed."""
    from crossforget.experiments.sweeps import METRICS

    points = results["points"]
    labels = [p["label"] for p in points]
    x = np.arange(len(points))
    config = results["config"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), layout="constrained")
    colours = plt.cm.tab10(np.arange(10))
    styles = {
        "retrain": ("tab:blue", "Retrain (ground truth for D_f)"),
        "original": ("tab:gray", "Original (ground truth for D_r)"),
    }
    for ax, (metric, name) in zip(axes, METRICS.items(), strict=True):
        for i, method in enumerate(config["methods"]):
            entries = [results["overall"][label][method][metric] for label in labels]
            means = [e["mean"] for e in entries]
            colour = colours[(i + 2) % 10]
            ax.plot(x, means, marker="o", color=colour, label=f"{_method_label(method)} (mean over seeds)")
            band = _ci_band(entries)
            if band is not None:
                ax.fill_between(
                    x, band[0], band[1], color=colour, alpha=0.2, label=f"{_method_label(method)} 95% CI"
                )
        for reference in config["references"]:
            if reference not in reference_columns():
                continue
            colour, text = styles[reference]
            means = [results["overall"][label][reference][metric]["mean"] for label in labels]
            ax.plot(x, means, linestyle="--", marker="s", color=colour, label=text)
        ticks = [
            f"{p['label']}\n{len(p['forget'])} class{'es' if len(p['forget']) > 1 else ''}" for p in points
        ]
        ax.set_xticks(x, ticks)
        ax.set_xlabel("forget setting")
        ax.set_ylabel(f"{name} (%)")
        ax.set_title(f"{name}, mean over bits × directions", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    seeds = len(config["seeds"])
    fig.suptitle(
        f"Multi-class forgetting on {config['dataset']['name']} "
        f"(shaded: 95% CI over {seeds} seed{'s' if seeds > 1 else ''})"
    )
    return save_figure(fig, path)


def samples_chart(results: dict, path: Path) -> Path:
    """Fig. 4: bars per bits x direction for each forget sample size (95% CI error bars), group means
    (green, right axis) and the ground truth (blue), one row of panels per method."""
    from crossforget.experiments.sweeps import METRICS
    from crossforget.experiments.table2 import PRIMARY_FORGET

    config = results["config"]
    points = [p["label"] for p in results["points"]]
    methods = config["methods"]
    fig, axes = plt.subplots(
        len(methods), 2, figsize=(14, 4.6 * len(methods)), squeeze=False, layout="constrained"
    )
    x = np.arange(len(points))
    truths = {
        PRIMARY_FORGET: ("retrain", "Retrain (ground truth)"),
        "retain": ("original", "Original (ground truth)"),
    }
    for row, method in enumerate(methods):
        settings = list(results["summary"][points[0]][method])
        width = 0.8 / len(settings)
        colours = plt.cm.viridis(np.linspace(0.1, 0.9, len(settings)))
        for ax, (metric, name) in zip(axes[row], METRICS.items(), strict=True):
            tops = [0.0]
            for j, setting in enumerate(settings):
                entries = [results["summary"][p][method][setting][metric] for p in points]
                means = np.array([e["mean"] for e in entries], dtype=float)
                band = _ci_band(entries)
                errors = None
                if band is not None:
                    errors = np.nan_to_num(np.vstack([means - band[0], band[1] - means]))
                    tops.append(float(np.nanmax(band[1])))
                ax.bar(
                    x + (j - (len(settings) - 1) / 2) * width,
                    means,
                    width,
                    yerr=errors,
                    capsize=2,
                    color=colours[j],
                    label=setting,
                )
                tops.append(float(np.nanmax(means)))
            right = ax.twinx()
            group = [results["overall"][p][method][metric]["mean"] for p in points]
            right.plot(
                x, group, color="tab:green", linestyle="--", marker="o", label="mean over bits × directions"
            )
            tops.append(float(np.nanmax(group)))
            reference, text = truths[metric]
            if reference in results["overall"][points[0]]:
                truth = results["overall"][points[0]][reference][metric]["mean"]
                right.axhline(truth, color="tab:blue", linestyle="--", label=text)
                tops.append(truth)
            top = min(100.0, max(tops) * 1.15 + 1.0)
            ax.set_ylim(0, top)
            right.set_ylim(0, top)
            ax.set_xticks(x, points)
            ax.set_xlabel("forget sample size (training samples of D_f)")
            ax.set_ylabel(f"{name} (%) per bits-direction")
            right.set_ylabel("group mean mAP (%)")
            ax.set_title(f"{_method_label(method)}: {name}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            handles = ax.get_legend_handles_labels()
            extra = right.get_legend_handles_labels()
            ax.legend(
                handles[0] + extra[0],
                handles[1] + extra[1],
                fontsize=8,
                ncols=4,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.16),
            )
    forget = ", ".join(results["points"][0]["forget"])
    seeds = len(config["seeds"])
    fig.suptitle(
        f"Forgetting {forget} on {config['dataset']['name']} with varying forget sample sizes "
        f"(error bars: 95% CI over {seeds} seed{'s' if seeds > 1 else ''})"
    )
    return save_figure(fig, path)


def density_chart(result: DensityResult, path: Path) -> Path:
    """Fig. 1: filled density contours per group on the 2-D reduction, with marginal densities."""
    fig = plt.figure(figsize=(7.5, 7))
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
    main = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=main)
    side = fig.add_subplot(grid[1, 1], sharey=main)
    colours = {"forget": "tab:red", "neighbour": "tab:orange", "other": "tab:blue"}
    handles = []
    for group in result.groups:
        colour = colours.get(group.key, "tab:gray")
        label = f"{group.title} (n={group.count})"
        if group.density is not None:
            levels = np.linspace(group.density.max() * 0.08, group.density.max(), 6)
            main.contourf(
                result.grid_x, result.grid_y, group.density, levels=levels, colors=[colour], alpha=0.18
            )
            main.contour(
                result.grid_x,
                result.grid_y,
                group.density,
                levels=levels[::2],
                colors=[colour],
                linewidths=0.8,
            )
            top.plot(result.grid_x, group.marginal_x, color=colour)
            top.fill_between(result.grid_x, group.marginal_x, color=colour, alpha=0.15)
            side.plot(group.marginal_y, result.grid_y, color=colour)
            side.fill_betweenx(result.grid_y, group.marginal_y, color=colour, alpha=0.15)
        else:
            main.scatter(group.points[:, 0], group.points[:, 1], s=8, color=colour)
        handles.append(plt.Line2D([], [], color=colour, linewidth=6, alpha=0.5, label=label))
    main.set_xlabel(result.axis_labels[0])
    main.set_ylabel(result.axis_labels[1])
    main.legend(handles=handles, fontsize=8, loc="best", title="group")
    top.set_ylabel("density")
    side.set_xlabel("density")
    top.tick_params(labelbottom=False)
    side.tick_params(labelleft=False)
    top.set_title(result.title, fontsize=10)
    return save_figure(fig, path)


def tuning_chart(trials: list[dict], title: str, path: Path) -> Path:
    """Objective per finished trial (pruned trials at their last reported value) and the best so far."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    pruned = [t for t in trials if t["state"] == "PRUNED" and t["value"] is not None]
    ax.scatter(
        [t["number"] for t in complete],
        [t["value"] for t in complete],
        s=16,
        color="tab:blue",
        label="complete trial",
    )
    if pruned:
        ax.scatter(
            [t["number"] for t in pruned],
            [t["value"] for t in pruned],
            s=20,
            marker="x",
            color="tab:red",
            label="pruned trial (last reported value)",
        )
    if complete:
        ordered = sorted(complete, key=lambda t: t["number"])
        best = np.minimum.accumulate([t["value"] for t in ordered])
        ax.step([t["number"] for t in ordered], best, where="post", color="tab:green", label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel("objective: |Δ| D_f + |Δ| D_r (mAP points)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def panel_chart(summary: dict, path: Path, targets: dict[str, tuple[float, float]] | None = None) -> Path:
    """|Δ| per request (worst seed), D_f and D_r side by side, one bar per method; target lines dashed.

    ``targets``: side -> (single-class, multi-class) limits, drawn as horizontal marks per request.
    """
    requests = list(summary["per_request"])
    methods = sorted({m for entry in summary["per_request"].values() for m in entry})
    x = np.arange(len(requests))
    width = 0.8 / max(len(methods), 1)
    colours = {"ppp": "tab:green", "ssd": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), layout="constrained")
    sides = (("forget", "|Δ| D_f to Retrain"), ("retain", "|Δ| D_r to Original"))
    for ax, (side, title) in zip(axes, sides, strict=True):
        for i, method in enumerate(methods):
            values = [
                summary["per_request"][r].get(method, {}).get("worst", {}).get(side) or 0.0 for r in requests
            ]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, values, width, label=_method_label(method),
                   color=colours.get(method))  # fmt: skip
        if targets and side in targets:
            single, multi = targets[side]
            limits = [
                single if next(iter(summary["per_request"][r].values()))["classes"] == 1 else multi
                for r in requests
            ]
            ax.scatter(x, limits, marker="_", s=600, color="black", label="target", zorder=3)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xticks(x, [r.replace("+", "+\n") for r in requests], fontsize=7)
        ax.set_ylabel(f"{title} (mAP points, worst seed)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    return save_figure(fig, path)
