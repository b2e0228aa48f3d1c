"""Figures for the report, rendered to PNG bytes with matplotlib's Agg canvas.

Figures are built with :class:`matplotlib.figure.Figure` directly (not ``pyplot``), so nothing
touches the user's global backend or figure registry and every figure is freed after saving.
Every PNG the report writes (its own and a run's) is stored with a 256-colour palette
(:func:`compact_png`): line plots look the same at about a third of the bytes, which keeps a
committed report light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, UnidentifiedImageError

from signalprop.report._fmt import slug
from signalprop.report.runs_reader import RunRecord, SubRun

DPI = 100
FIGSIZE = (6.4, 4.0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class FigureImage:
    """One PNG of the report: written to ``figures/<filename>``, which README.md and index.html
    refer to (a standalone index.html embeds it)."""

    filename: str
    title: str
    caption: str
    png: bytes


# --------------------------------------------------------------------------- helpers


def _new_figure(figsize: tuple[float, float] = FIGSIZE) -> tuple[Figure, Any]:
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _to_png(fig: Figure) -> bytes:
    buf = BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        fig.clear()
    return buf.getvalue()


def compact_png(png: bytes) -> bytes:
    """``png`` re-encoded with a 256-colour palette (opaque images) or an adaptive RGBA palette,
    whichever is smaller than the original; an image Pillow cannot read is returned as is."""
    try:
        with Image.open(BytesIO(png)) as image:
            image.load()
            rgba = image.convert("RGBA")
    except (OSError, UnidentifiedImageError, ValueError):
        return png
    if rgba.getextrema()[3][0] == 255:  # opaque: the median cut keeps line colours exact
        small = rgba.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT,
                                            dither=Image.Dither.NONE)
    else:
        small = rgba.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = BytesIO()
    small.save(buf, format="PNG", optimize=True)
    return buf.getvalue() if buf.tell() < len(png) else png


#: Line styles after the ten colours are used up: line ``i`` gets colour ``i % 10`` and style
#: ``i // 10``, so up to 40 lines differ from each other.
LINESTYLES = ("-", "--", ":", "-.")
#: Legends with more entries than this go to the right of the axes, outside the curves.
LEGEND_INSIDE = 8


def line_styles(n: int) -> list[tuple[Any, str]]:
    """``(colour, linestyle)`` for ``n`` lines: tab10 colours, then the same colours dashed,
    dotted and dash-dotted; distinct pairs for up to 40 lines."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [(cmap(i % 10), LINESTYLES[(i // 10) % len(LINESTYLES)]) for i in range(n)]


def _colors(n: int) -> list[Any]:
    return [color for color, _ in line_styles(n)]


def _legend(ax: Any, n: int) -> None:
    if n == 0:
        return
    if n <= LEGEND_INSIDE:
        ax.legend(fontsize="small", frameon=False)
        return
    ax.legend(fontsize="x-small", ncol=1 if n <= 20 else 2, frameon=False, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def spans_decades(values: Sequence[float], decades: float = 2.0) -> bool:
    """True when all values are positive and max/min exceeds ``10**decades``."""
    vals = [v for v in values if _finite(v)]
    if not vals or min(vals) <= 0:
        return False
    return max(vals) / min(vals) > 10.0**decades


# --------------------------------------------------------------------------- figures


def _epoch_figure(subruns: Sequence[SubRun], key: str, label: str, log_if_wide: bool
                  ) -> bytes | None:
    """``key`` against epoch, one line per subrun that logs it."""
    lines = [(s.name, s.epoch_series(key)) for s in subruns]
    lines = [(name, pts) for name, pts in lines if pts]
    if not lines:
        return None
    fig, ax = _new_figure()
    for (name, pts), (color, style) in zip(lines, line_styles(len(lines)), strict=True):
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, color=color,
                linestyle=style, label=name)
    if log_if_wide and spans_decades([y for _, pts in lines for _, y in pts]):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(label.capitalize())
    ax.grid(True, alpha=0.3)
    _legend(ax, len(lines))
    return _to_png(fig)


def loss_figure(subruns: Sequence[SubRun]) -> bytes | None:
    """Training loss against epoch, one line per subrun; log-y over > 2 decades."""
    return _epoch_figure(subruns, "train_loss", "training loss", log_if_wide=True)


def accuracy_figure(subruns: Sequence[SubRun]) -> bytes | None:
    """Test accuracy against epoch, one line per subrun that logs ``test_acc``."""
    return _epoch_figure(subruns, "test_acc", "test accuracy", log_if_wide=False)


def grad_norm_profiles(sub: SubRun) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """``(last, first)`` epoch records with ``grad_norms``; ``first`` is None if the same."""
    recs = sub.grad_norm_epochs()
    if not recs:
        return None
    last, first = recs[-1], recs[0]
    return last, (first if first is not last else None)


def grad_norm_figure(subruns: Sequence[SubRun]) -> bytes | None:
    """Per-layer gradient norm against layer depth (forward order), log-y.

    Solid: the last epoch that logged ``grad_norms``; dashed: the first such epoch.
    Zero or non-finite norms cannot be drawn on a log axis and are left out.
    """
    profiles = [(s.name, grad_norm_profiles(s)) for s in subruns]
    profiles = [(name, p) for name, p in profiles if p is not None]
    if not profiles:
        return None
    fig, ax = _new_figure((7.0, 4.4))
    names_per_sub: list[list[str]] = []
    any_first = False
    for (name, (last, first)), color in zip(profiles, _colors(len(profiles)), strict=True):
        layer_names = list(last["grad_norms"])
        names_per_sub.append(layer_names)
        for rec, style, tag in ((last, "-", "last"), (first, "--", "first")):
            if rec is None:
                continue
            ys = [v if _finite(v) and v > 0 else math.nan for v in rec["grad_norms"].values()]
            ep = rec.get("epoch")
            ep_txt = f"epoch {ep}" if ep is not None else tag
            label = f"{name} ({ep_txt})"
            ax.plot(
                range(len(ys)), ys, linestyle=style, marker="o", ms=3, color=color,
                alpha=1.0 if style == "-" else 0.6, label=label,
            )
            any_first = any_first or style == "--"
    ax.set_yscale("log")
    shared = names_per_sub[0] if all(n == names_per_sub[0] for n in names_per_sub) else None
    if shared and len(shared) <= 16:
        ax.set_xticks(range(len(shared)))
        ax.set_xticklabels(shared, rotation=45, ha="right", fontsize="x-small")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer depth (index in forward order: input → output)")
    ax.set_ylabel("gradient norm")
    title = "Per-layer gradient norm"
    if any_first:
        title += " (solid: last epoch, dashed: first epoch)"
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, sum(2 if f is not None else 1 for _, (_, f) in profiles))
    return _to_png(fig)


def series_figure(spec: dict[str, Any], name: str = "") -> bytes | None:
    """A custom line figure from ``summary.json`` ``series``."""
    lines_spec = spec.get("lines")
    if not isinstance(lines_spec, dict):
        return None
    lines: list[tuple[str, list[float], list[float]]] = []
    for label, pts in lines_spec.items():
        xs: list[float] = []
        ys: list[float] = []
        for i, pt in enumerate(pts if isinstance(pts, list) else []):
            if isinstance(pt, (list, tuple)) and len(pt) >= 2:
                x, y = pt[0], pt[1]
            else:
                x, y = i, pt
            if _finite(x) and _finite(y):
                xs.append(float(x))
                ys.append(float(y))
        if xs:
            lines.append((str(label), xs, ys))
    if not lines:
        return None
    fig, ax = _new_figure()
    for (label, xs, ys), (color, style) in zip(lines, line_styles(len(lines)), strict=True):
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, color=color,
                linestyle=style, label=label)
    if spec.get("logy") is True:
        if all(y > 0 for _, _, ys in lines for y in ys):
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog")
    ax.set_title(str(spec.get("title") or name))
    ax.set_xlabel(str(spec.get("xlabel") or ""))
    ax.set_ylabel(str(spec.get("ylabel") or ""))
    ax.grid(True, alpha=0.3)
    _legend(ax, len(lines))
    return _to_png(fig)


# --------------------------------------------------------------------------- per run


def run_figures(run: RunRecord, prefix: str) -> list[FigureImage]:
    """All figures of one run, file names starting with ``prefix`` (unique per run).

    Problems (e.g. a run figure that is not a PNG) are appended to ``run.notes``.
    """
    out: list[FigureImage] = []

    def add(kind: str, title: str, caption: str, png: bytes | None) -> None:
        if png:
            out.append(FigureImage(f"{prefix}-{kind}.png", title, caption, compact_png(png)))

    add(
        "loss", "Training loss",
        "Training loss per epoch for every subrun (log scale when the range spans more than "
        "two decades).",
        loss_figure(run.subruns),
    )
    add("accuracy", "Test accuracy", "Test accuracy per epoch.", accuracy_figure(run.subruns))
    add(
        "grad-norms", "Per-layer gradient norm",
        "Gradient norm of each layer against its depth (forward order), log scale. Solid: last "
        "epoch that logged gradient norms; dashed: first such epoch. A norm that falls by "
        "orders of magnitude towards the input means vanishing gradients.",
        grad_norm_figure(run.subruns),
    )
    for name, spec in run.series.items():
        add(f"series-{slug(name, 32)}", str(spec.get("title") or name), f"Series '{name}'.",
            series_figure(spec, name))
    for path in run.figure_files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            run.notes.append(f"cannot read figure {path.name} ({exc.strerror or exc})")
            continue
        if not data.startswith(PNG_SIGNATURE):
            run.notes.append(f"figures/{path.name} is not a PNG file; left out")
            continue
        add(f"run-{slug(path.stem, 32)}", path.stem, f"Figure made by the experiment: "
            f"figures/{path.name}.", data)
    # de-duplicate file names (two series slugs may collide)
    taken: set[str] = set()
    for fig in out:
        base, n = fig.filename[:-4], 1
        while fig.filename in taken:
            n += 1
            fig.filename = f"{base}-{n}.png"
        taken.add(fig.filename)
    return out
