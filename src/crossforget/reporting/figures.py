"""Figures written next to result tables: matplotlib ``Figure`` objects on the Agg canvas, atomic PNGs.

No pyplot: a figure is made by ``new_figure`` and drawn on its own Agg canvas, so importing this module
selects no backend and touches no global state. Charts receive plain data (results dicts, the function
that gives a method its display label, the metrics to show); they import nothing from the experiments.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from crossforget.core.io import atomic_write_bytes
from crossforget.metrics.keys import PRIMARY_FORGET, RETAIN, Metric

Label = Callable[[str], str]
SWEEP_METRICS = (PRIMARY_FORGET, RETAIN)
# The reference column each sweep metric is judged against, as drawn in the figures.
TRUTHS = {"retrain": "Retrain (ground truth for D_f)", "original": "Original (ground truth for D_r)"}
TRUTH_COLOURS = {"retrain": "tab:blue", "original": "tab:gray"}


def new_figure(**options: Any) -> Figure:
    """A figure drawn on its own Agg canvas (``options`` as for ``matplotlib.figure.Figure``)."""
    figure = Figure(**options)
    FigureCanvasAgg(figure)
    return figure


def save_figure(fig: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _colours(name: str, count: int, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    return colormaps[name](np.linspace(low, high, count))


def grouped_bar(
    ax: Axes, x: np.ndarray, index: int, count: int, heights: Sequence[float], **style: Any
) -> None:
    """Bar ``index`` of ``count`` side by side at each x (a group 0.8 wide); ``style`` as for ``ax.bar``."""
    width = 0.8 / max(count, 1)
    ax.bar(x + (index - (count - 1) / 2) * width, heights, width, **style)


def table2_chart(results: dict, path: Path, label_of: Label) -> Path:
    """D_f (forget-label) and D_r mAP per method, one bar per bits x direction, std as error bars."""
    summary = results["summary"]
    methods = list(summary)
    settings = list(summary[methods[0]])
    fig = new_figure(figsize=(13, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    colours = _colours("viridis", len(settings))
    panels = (
        (PRIMARY_FORGET, "D_f mAP (forget label) — closer to Retrain is better"),
        (RETAIN, "D_r mAP — closer to Original is better"),
    )
    for ax, (metric, title) in zip(axes, panels, strict=True):
        x = np.arange(len(methods))
        for j, setting in enumerate(settings):
            means = [summary[m][setting][metric]["mean"] for m in methods]
            stds = [summary[m][setting][metric]["std"] for m in methods]
            grouped_bar(ax, x, j, len(settings), means, yerr=stds, capsize=2, color=colours[j], label=setting)
        ax.set_xticks(x, [label_of(m) for m in methods], rotation=20)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mAP (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(title="bits-direction", fontsize=8, ncols=2)
    fig.suptitle(f"Forgetting {', '.join(results['forget'])} on {results['config']['dataset']['name']}")
    return save_figure(fig, path)


def table1_chart(results: dict, path: Path, label_of: Label, rows: Mapping[str, str]) -> Path:
    """Grouped bars per method (one per metric of ``rows``: key -> display name), std as error bars."""
    summary = results["summary"]
    methods = list(summary)
    metrics = [m for m in rows if all(m in summary[k] for k in methods)]
    fig = new_figure(figsize=(11, 4))
    ax = fig.subplots()
    x = np.arange(len(methods))
    colours = _colours("viridis", len(metrics), 0.1, 0.85)
    for j, metric in enumerate(metrics):
        means = [summary[m][metric]["mean"] for m in methods]
        stds = [np.nan_to_num(summary[m][metric]["std"]) for m in methods]
        grouped_bar(ax, x, j, len(metrics), means, yerr=stds, capsize=2, color=colours[j], label=rows[metric])
    ax.set_xticks(x, [label_of(m) for m in methods], rotation=15)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=len(metrics), loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    ax.set_title(
        f"Forgetting {', '.join(results['forget'])} on {results['data']['name']}: D_f and MIA closer to "
        "Retrain, D_r closer to Original"
    )
    return save_figure(fig, path)


def _ci_band(entries: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper interval bounds, or None when no entry has one (fewer than two seeds)."""
    if all(e["ci_low"] is None for e in entries):
        return None
    low = np.array([np.nan if e["ci_low"] is None else e["ci_low"] for e in entries], dtype=float)
    high = np.array([np.nan if e["ci_high"] is None else e["ci_high"] for e in entries], dtype=float)
    return low, high


def _seeds_note(config: dict) -> str:
    seeds = len(config["seeds"])
    return f"{seeds} seed{'s' if seeds > 1 else ''}"


def classes_chart(
    results: dict, path: Path, label_of: Label, metrics: Sequence[Metric] = SWEEP_METRICS
) -> Path:
    """Fig. 3: mean mAP per forget setting, one line per method with its 95% CI shaded; references dashed."""
    points = results["points"]
    names = [p["label"] for p in points]
    x = np.arange(len(points))
    config = results["config"]
    fig = new_figure(figsize=(13, 5.4), layout="constrained")
    axes = fig.subplots(1, 2)
    colours = colormaps["tab10"](np.arange(10))
    for ax, metric in zip(axes, metrics, strict=True):
        for i, method in enumerate(config["methods"]):
            entries = [results["overall"][label][method][metric] for label in names]
            colour = colours[(i + 2) % 10]
            name = label_of(method)
            ax.plot(
                x, [e["mean"] for e in entries], marker="o", color=colour, label=f"{name} (mean over seeds)"
            )
            band = _ci_band(entries)
            if band is not None:
                ax.fill_between(x, band[0], band[1], color=colour, alpha=0.2, label=f"{name} 95% CI")
        for reference in config["references"]:
            if reference not in TRUTHS:
                continue
            means = [results["overall"][label][reference][metric]["mean"] for label in names]
            ax.plot(
                x, means, linestyle="--", marker="s", color=TRUTH_COLOURS[reference], label=TRUTHS[reference]
            )
        ticks = [
            f"{p['label']}\n{len(p['forget'])} class{'es' if len(p['forget']) > 1 else ''}" for p in points
        ]
        ax.set_xticks(x, ticks)
        ax.set_xlabel("forget setting")
        ax.set_ylabel(f"{metric.display} (%)")
        ax.set_title(f"{metric.display}, mean over bits × directions", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncols=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.suptitle(
        f"Multi-class forgetting on {config['dataset']['name']} (shaded: 95% CI over {_seeds_note(config)})"
    )
    return save_figure(fig, path)


def samples_chart(
    results: dict, path: Path, label_of: Label, metrics: Sequence[Metric] = SWEEP_METRICS
) -> Path:
    """Fig. 4: bars per bits x direction for each forget sample size (95% CI error bars), group means
    (green, right axis) and the ground truth (blue), one row of panels per method."""
    config = results["config"]
    methods = config["methods"]
    fig = new_figure(figsize=(14, 4.6 * len(methods)), layout="constrained")
    axes = fig.subplots(len(methods), 2, squeeze=False)
    for row, method in enumerate(methods):
        for ax, metric in zip(axes[row], metrics, strict=True):
            _samples_panel(ax, results, method, metric)
            ax.set_title(f"{label_of(method)}: {metric.display}", fontsize=10)
    forget = ", ".join(results["points"][0]["forget"])
    fig.suptitle(
        f"Forgetting {forget} on {config['dataset']['name']} with varying forget sample sizes "
        f"(error bars: 95% CI over {_seeds_note(config)})"
    )
    return save_figure(fig, path)


def _samples_panel(ax: Axes, results: dict, method: str, metric: Metric) -> None:
    """One panel of Fig. 4: bars per bits-direction, the group mean and the ground truth on a twin axis."""
    points = [p["label"] for p in results["points"]]
    x = np.arange(len(points))
    settings = list(results["summary"][points[0]][method])
    colours = _colours("viridis", len(settings))
    tops = [0.0]
    for j, setting in enumerate(settings):
        entries = [results["summary"][p][method][setting][metric] for p in points]
        means = np.array([e["mean"] for e in entries], dtype=float)
        band = _ci_band(entries)
        errors = None
        if band is not None:
            errors = np.nan_to_num(np.vstack([means - band[0], band[1] - means]))
            tops.append(float(np.nanmax(band[1])))
        grouped_bar(ax, x, j, len(settings), means, yerr=errors, capsize=2, color=colours[j], label=setting)
        tops.append(float(np.nanmax(means)))
    right = ax.twinx()
    group = [results["overall"][p][method][metric]["mean"] for p in points]
    right.plot(x, group, color="tab:green", linestyle="--", marker="o", label="mean over bits × directions")
    tops.append(float(np.nanmax(group)))
    if metric.reference in results["overall"][points[0]]:
        truth = results["overall"][points[0]][metric.reference][metric]["mean"]
        text = f"{metric.reference.capitalize()} (ground truth)"
        right.axhline(truth, color="tab:blue", linestyle="--", label=text)
        tops.append(truth)
    top = min(100.0, max(tops) * 1.15 + 1.0)
    ax.set_ylim(0, top)
    right.set_ylim(0, top)
    ax.set_xticks(x, points)
    ax.set_xlabel("forget sample size (training samples of D_f)")
    ax.set_ylabel(f"{metric.display} (%) per bits-direction")
    right.set_ylabel("group mean mAP (%)")
    ax.grid(axis="y", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    extra, extra_names = right.get_legend_handles_labels()
    ax.legend(
        handles + extra,
        names + extra_names,
        fontsize=8,
        ncols=4,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
    )


class DensityGroupData(Protocol):
    """What ``density_chart`` reads of one group (``experiments.density.DensityGroup`` has it)."""

    key: str
    title: str
    points: np.ndarray
    density: np.ndarray | None
    marginal_x: np.ndarray | None
    marginal_y: np.ndarray | None

    @property
    def count(self) -> int: ...


class DensityData(Protocol):
    """What ``density_chart`` reads of a density result (``experiments.density.DensityResult`` has it)."""

    title: str
    axis_labels: tuple[str, str]
    groups: Sequence[DensityGroupData]
    grid_x: np.ndarray
    grid_y: np.ndarray


def density_chart(result: DensityData, path: Path) -> Path:
    """Fig. 1: filled density contours per group on the 2-D reduction, with marginal densities."""
    fig = new_figure(figsize=(7.5, 7))
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
        handles.append(Line2D([], [], color=colour, linewidth=6, alpha=0.5, label=label))
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
    fig = new_figure(figsize=(8, 4.2))
    ax = fig.subplots()
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    pruned = [t for t in trials if t["state"] == "PRUNED" and t["value"] is not None]
    kinds = [(complete, {"s": 16, "color": "tab:blue", "label": "complete trial"})]
    if pruned:
        kinds.append(
            (
                pruned,
                {"s": 20, "marker": "x", "color": "tab:red", "label": "pruned trial (last reported value)"},
            )
        )
    for chosen, style in kinds:
        ax.scatter([t["number"] for t in chosen], [t["value"] for t in chosen], **style)
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


def panel_chart(
    summary: dict, path: Path, label_of: Label, targets: dict[str, tuple[float, float]] | None = None
) -> Path:
    """|Δ| per request (worst seed), D_f and D_r side by side, one bar per method; target lines dashed.

    ``targets``: side -> (single-class, multi-class) limits, drawn as horizontal marks per request.
    """
    requests = list(summary["per_request"])
    methods = sorted({m for entry in summary["per_request"].values() for m in entry})
    x = np.arange(len(requests))
    colours = {"ppp": "tab:green", "ssd": "tab:orange"}
    fig = new_figure(figsize=(14, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    sides = (("forget", "|Δ| D_f to Retrain"), ("retain", "|Δ| D_r to Original"))
    for ax, (side, title) in zip(axes, sides, strict=True):
        for i, method in enumerate(methods):
            values = [
                summary["per_request"][r].get(method, {}).get("worst", {}).get(side) or 0.0 for r in requests
            ]
            grouped_bar(ax, x, i, len(methods), values, label=label_of(method), color=colours.get(method))
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
