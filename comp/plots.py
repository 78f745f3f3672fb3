"""Report figures, drawn with matplotlib's Agg canvas: no display, no pyplot state.

Each function takes plain arrays, writes one PNG through comp.atomic and returns its path. The
pixel size of every figure is fixed by :func:`size_px` (figure inches x ``DPI``; the layout engine
fits the labels inside it rather than growing the image), and grows with the number of classes so
that 28 class names stay readable.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from comp.atomic import write_bytes

DPI = 100
_BLUE, _ORANGE, _GREY, _GREEN = "#9fb6cd", "#1f5fa8", "#7f7f7f", "#2e8b57"


def size_in(kind: str, n: int = 0, m: int = 0) -> tuple[float, float]:
    """Figure size in inches for ``kind`` with ``n`` classes (``m`` runs / panels where it applies)."""
    if kind == "f1":
        return 8.0, max(3.0, 1.3 + 0.3 * n)
    if kind == "prevalence":
        return 8.0, max(3.0, 1.3 + 0.4 * n)
    if kind == "confusion":
        side = min(16.0, max(4.5, 2.0 + 0.5 * n))
        return side + 1.0, side
    if kind == "pr":
        return 0.4 + 3.0 * max(m, 1), 3.6
    if kind == "correlation":
        side = max(4.0, 2.0 + 0.8 * m)
        return side + 1.0, side
    if kind == "compare_f1":
        return max(5.0, 3.0 + 1.0 * m), max(3.0, 1.3 + 0.3 * n)
    if kind == "lb":
        return 7.0, 6.0
    raise ValueError(f"unknown figure kind {kind!r}")


def size_px(kind: str, n: int = 0, m: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of the PNG :func:`size_in` describes."""
    w, h = size_in(kind, n, m)
    return round(w * DPI), round(h * DPI)


def _figure(kind: str, n: int = 0, m: int = 0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in(kind, n, m), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    # no bbox_inches="tight": it would change the pixel size the report promises
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    write_bytes(path, buf.getvalue())
    return Path(path)


def _label_size(n: int) -> float:
    return 9.0 if n <= 12 else 8.0


def f1_bars(
    classes: Sequence[str],
    support: Sequence[int],
    f1_default: Sequence[float],
    f1_tuned: Sequence[float],
    path: str | Path,
    default_label: str = "at 0.5",
    title: str = "per-class F1",
) -> Path:
    """Horizontal bars of each class's F1 at the default decision and at the tuned thresholds, best
    class on top; dashed lines mark the two macro means. All inputs ``(n_classes,)``."""
    f1_default, f1_tuned = np.asarray(f1_default, float), np.asarray(f1_tuned, float)
    n = len(classes)
    order = np.lexsort((-f1_default, -f1_tuned))[::-1]  # best at the top of the axis
    fig = _figure("f1", n)
    ax = fig.add_subplot()
    y = np.arange(n)
    h = 0.4
    ax.barh(
        y + h / 2,
        f1_default[order],
        height=h,
        color=_BLUE,
        label=f"{default_label} (macro {f1_default.mean():.3f})",
    )
    ax.barh(y - h / 2, f1_tuned[order], height=h, color=_ORANGE, label=f"tuned (macro {f1_tuned.mean():.3f})")
    ax.axvline(f1_default.mean(), color=_BLUE, ls="--", lw=1)
    ax.axvline(f1_tuned.mean(), color=_ORANGE, ls="--", lw=1)
    for yi, v in zip(y, f1_tuned[order], strict=True):
        ax.text(min(v, 1.0) + 0.01, yi - h / 2, f"{v:.2f}", va="center", fontsize=7, color=_ORANGE)
    ax.set_yticks(y, [f"{classes[j]} (n={int(support[j])})" for j in order], fontsize=_label_size(n))
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("F1")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(title, loc="left")
    return _save(fig, path)


def prevalence_bars(
    classes: Sequence[str],
    series: dict[str, Sequence[float]],
    path: str | Path,
    title: str = "label prevalence",
) -> Path:
    """Grouped horizontal bars of each class's share of rows in several series (e.g. train labels,
    OOF predictions, test predictions), in percent, ordered by the first series."""
    names = list(series)
    values = np.array([np.asarray(series[s], float) for s in names]) * 100  # (n_series, n_classes)
    n, k = len(classes), len(names)
    order = np.argsort(values[0], kind="stable")  # largest at the top
    fig = _figure("prevalence", n)
    ax = fig.add_subplot()
    y = np.arange(n)
    h = 0.8 / k
    colors = [_GREY, _BLUE, _ORANGE, _GREEN]
    for i, name in enumerate(names):
        ax.barh(y + (k - 1) / 2 * h - i * h, values[i, order], height=h, color=colors[i % len(colors)], label=name)
    ax.set_yticks(y, [classes[j] for j in order], fontsize=_label_size(n))
    ax.set_ylim(-0.6, n - 0.4)
    positive = values[values > 0]
    if positive.size and values.max() / positive.min() > 20:
        # rare and common classes differ by orders of magnitude: a log axis keeps the rare ones visible
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.set_xlim(max(positive.min() / 2, 1e-3), 100)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.set_xlim(0, max(1.0, values.max()) * 1.08)
    ax.set_xlabel("rows with the label (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(title, loc="left")
    return _save(fig, path)


def confusion_heatmap(matrix, names: Sequence[str], path: str | Path, title: str = "confusion matrix") -> Path:
    """``matrix`` ``(n_classes, n_classes)`` counts, rows true and columns predicted. Colour is the
    row share (recall of the true class), the text the count."""
    counts = np.asarray(matrix)
    n = len(names)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig = _figure("confusion", n)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fontsize = 9 if n <= 10 else 7
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(counts[i, j])),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if share[i, j] > 0.6 else "black",
                )
    ax.set_xticks(range(n), names, rotation=90 if n > 6 else 0, fontsize=_label_size(n))
    ax.set_yticks(range(n), names, fontsize=_label_size(n))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class's rows")
    ax.set_title(title, loc="left")
    return _save(fig, path)


def pr_curves(panels: Sequence[dict], path: str | Path, title: str = "precision-recall, weakest classes") -> Path:
    """One panel per class; each dict has ``name``, ``precision`` and ``recall`` (curve arrays),
    ``ap`` (average precision), ``prevalence`` and ``points``: {label: (recall, precision)}."""
    m = max(len(panels), 1)
    fig = _figure("pr", m=m)
    axes = fig.subplots(1, m, sharey=True, squeeze=False)[0]
    markers = {0: ("o", _BLUE), 1: ("D", _ORANGE)}
    for ax, panel in zip(axes, panels, strict=False):
        # precision P_k holds on (R_{k-1}, R_k]: steps drawn from recall 0, as average precision sums them
        recall, precision = np.r_[0.0, panel["recall"]], np.r_[panel["precision"][:1], panel["precision"]]
        ax.plot(recall, precision, color="black", lw=1.2, drawstyle="steps-pre", label="PR curve")
        ax.axhline(panel["prevalence"], color=_GREY, ls=":", lw=1, label="prevalence (chance)")
        for i, (label, (r, p)) in enumerate(panel["points"].items()):
            marker, color = markers.get(i, ("s", _GREEN))
            ax.plot([r], [p], marker=marker, color=color, ms=7, ls="none", label=label)
        ax.set_title(f"{panel['name']}\nAP {panel['ap']:.3f}", fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    axes[0].set_ylabel("precision", fontsize=8)
    if panels:
        axes[0].legend(loc="upper right", fontsize=7, framealpha=0.9)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return _save(fig, path)


def correlation_heatmap(matrix, names: Sequence[str], path: str | Path, title: str = "OOF correlation") -> Path:
    """``matrix`` ``(n_runs, n_runs)`` correlations, annotated. The colour range starts at the
    lowest off-diagonal value, so differences between strong models stay visible."""
    corr = np.asarray(matrix, float)
    m = len(names)
    off = corr[~np.eye(m, dtype=bool)]
    low = float(np.nanmin(off)) if off.size and np.isfinite(off).any() else 0.0
    fig = _figure("correlation", m=m)
    ax = fig.add_subplot()
    image = ax.imshow(corr, cmap="viridis_r", vmin=min(low, 0.99) - 0.01, vmax=1.0, aspect="auto")
    for i in range(m):
        for j in range(m):
            ax.text(
                j,
                i,
                "-" if np.isnan(corr[i, j]) else f"{corr[i, j]:.3f}",
                ha="center",
                va="center",
                fontsize=9 if m <= 8 else 7,
                color="white" if corr[i, j] > (low + 1) / 2 else "black",  # viridis_r: dark at the top
            )
    ax.set_xticks(range(m), names, rotation=30 if m > 3 else 0, ha="right" if m > 3 else "center")
    ax.set_yticks(range(m), names)
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation (lower blends better)")
    ax.set_title(title, loc="left")
    return _save(fig, path)


def f1_heatmap(
    classes: Sequence[str], runs: Sequence[str], matrix, path: str | Path, title: str = "per-class F1 (tuned)"
) -> Path:
    """``matrix`` ``(n_classes, n_runs)`` F1 values; rows ordered by the mean over runs, best on top;
    the best run of each class is bold."""
    f1 = np.asarray(matrix, float)
    n, m = f1.shape
    order = np.argsort(-f1.mean(axis=1), kind="stable")
    fig = _figure("compare_f1", n, m)
    ax = fig.add_subplot()
    image = ax.imshow(f1[order], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    best = f1[order].max(axis=1)
    for i in range(n):
        for j in range(m):
            v = f1[order][i, j]
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7 if n > 15 else 9,
                fontweight="bold" if v == best[i] and m > 1 else "normal",
            )
    ax.set_xticks(range(m), runs, rotation=30 if m > 3 else 0, ha="right" if m > 3 else "center")
    ax.set_yticks(range(n), [classes[j] for j in order], fontsize=_label_size(n))
    fig.colorbar(image, ax=ax, shrink=0.6, label="F1")
    ax.set_title(title, loc="left")
    return _save(fig, path)


def lb_scatter(
    names: Sequence[str],
    cv: Sequence[float],
    lb: Sequence[float],
    path: str | Path,
    title: str = "CV (honest) vs public LB",
) -> Path:
    """One labelled point per submission, with the y = x line: points below it did worse on the
    public leaderboard than their CV promised."""
    x, y = np.asarray(cv, float), np.asarray(lb, float)
    fig = _figure("lb")
    ax = fig.add_subplot()
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    pad = max((hi - lo) * 0.12, 0.005)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color=_GREY, ls="--", lw=1, label="y = x")
    ax.scatter(x, y, color=_ORANGE, zorder=3, s=30)
    for i, name in enumerate(names):
        # alternate the label side so neighbouring submissions of similar score do not overprint
        dx, ha = (6, "left") if i % 2 == 0 else (-6, "right")
        ax.annotate(name, (x[i], y[i]), xytext=(dx, 4), textcoords="offset points", fontsize=8, ha=ha)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("CV (honest)")
    ax.set_ylabel("public LB")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, loc="left")
    return _save(fig, path)
