"""The result of a diagnosis: a table when printed, JSON, and a PNG of gradients vs depth."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from signalprop.diagnose.remedies import Remedy


@dataclass
class LayerDiagnosis:
    """One layer (a module owning parameters), in forward order."""

    index: int
    name: str
    kind: str
    grad_norm: float | None  # ||dL/dtheta_l|| over the layer's own trainable parameters
    output_grad_norm: float | None  # ||dL/dh_l|| over the batch (h_l: the layer's output)
    input_grad_norm: float | None  # ||dL/dx_l|| (x_l: the layer's input, all its uses)
    backward_gain: float | None  # ||dL/dx_l|| / ||dL/dy||: gradient reaching the layer
    activation: str | None
    act_mean: float | None
    act_std: float | None
    saturated_fraction: float | None
    dead_fraction: float | None
    sensitivity_mean: float | None  # mean over neurons of the batch-mean s_j
    sensitivity_log_rms: float | None  # ln sqrt(mean s^2)
    lyapunov: float | None  # recurrent layers: largest exponent per step
    verdict: str
    reasons: list[str] = field(default_factory=list)
    #: the stacked module (e.g. an AdditiveFilterStack) this layer belongs to, if any
    stack: str | None = None
    #: why a layer has no sensitivity value (e.g. an LSTM), shown under the table
    sensitivity_note: str | None = None


@dataclass
class Suggestion:
    problem: str
    layers: list[str]
    remedy: Remedy


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become strings ("inf", "-inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _fmt(value: float | None, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    return format(value, spec)


#: A stacked module lists all its layers up to this many, else the first and last
#: ``STACK_ROWS // 2`` around one summary line.
STACK_ROWS = 8


def _verdict_counts(layers: list[LayerDiagnosis]) -> str:
    """``988 healthy, 12 vanishing`` (most frequent first)."""
    counts: dict[str, int] = {}
    for lay in layers:
        counts[lay.verdict] = counts.get(lay.verdict, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _row(lay: LayerDiagnosis) -> tuple[str, ...]:
    return (str(lay.index), lay.name, lay.kind, _fmt(lay.grad_norm), _fmt(lay.backward_gain),
            lay.activation or "-", _fmt(lay.act_mean, ".2g"), _fmt(lay.act_std, ".2g"),
            _fmt(lay.saturated_fraction, ".0%"), _fmt(lay.dead_fraction, ".0%"),
            "n/a" if lay.sensitivity_note else _fmt(lay.sensitivity_mean, ".2f"),
            _fmt(lay.lyapunov, ".3f"), lay.verdict)


def _stack_rows(group: list[LayerDiagnosis]) -> list[tuple[str, ...] | str]:
    """A stacked module: its summary row, then its layers (all up to :data:`STACK_ROWS`, else
    the first and last few around a line summarising the others)."""
    first, name = group[0], group[0].stack or ""
    total = math.sqrt(sum(lay.grad_norm**2 for lay in group if lay.grad_norm is not None
                          and math.isfinite(lay.grad_norm)))
    sens = [lay.sensitivity_mean for lay in group if lay.sensitivity_mean is not None]
    summary = (f"{first.index}-{group[-1].index}", name, f"stack of {len(group)}", _fmt(total),
               _fmt(first.backward_gain), first.activation or "-", "", "", "", "",
               _fmt(sum(sens) / len(sens), ".2f") if sens else "-", "-", _verdict_counts(group))
    if len(group) <= STACK_ROWS:
        return [summary] + [_row(lay) for lay in group]
    end = STACK_ROWS // 2
    middle = group[end:-end]
    norms = [lay for lay in middle if lay.grad_norm is not None]
    line = f"    {middle[0].name} ... {middle[-1].name}: {len(middle)} stacked layers not listed"
    if norms:
        ordered = sorted(lay.grad_norm for lay in norms)  # type: ignore[misc]
        low = min(norms, key=lambda lay: lay.grad_norm)  # type: ignore[arg-type,return-value]
        high = max(norms, key=lambda lay: lay.grad_norm)  # type: ignore[arg-type,return-value]
        line += (f"; |dL/dW| median {_fmt(ordered[len(ordered) // 2])}, min "
                 f"{_fmt(low.grad_norm)} ({low.name}), max {_fmt(high.grad_norm)} ({high.name})")
    if middle[0].backward_gain is not None:
        line += (f"; gain {_fmt(middle[0].backward_gain)} to {_fmt(middle[-1].backward_gain)}"
                 f"; {_verdict_counts(middle)}")
    return [summary] + [_row(lay) for lay in group[:end]] + [line] + [
        _row(lay) for lay in group[-end:]]


@dataclass
class Diagnosis:
    """Per-layer measurements and verdicts, network-level numbers and suggested remedies."""

    layers: list[LayerDiagnosis]
    verdict: str  # the worst layer verdict, "healthy" when all are
    grad_ratio_first_to_last: float | None  # ||dL/dtheta_first|| / ||dL/dtheta_last||
    gain_first: float | None  # backward gain of the first layer
    jacobian: dict[str, Any]
    loss: float
    loss_kind: str
    batch_size: int
    warnings: list[str]
    suggestions: list[Suggestion]
    cost: dict[str, Any]

    # -- export ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return _clean(data)

    def to_json(self, path: str | Path) -> Path:
        from signalprop.storage import atomic_write_json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> dict[str, Any]:
        """The saved dictionary (for comparison across runs)."""
        return json.loads(Path(path).read_text())

    def layer(self, name: str) -> LayerDiagnosis:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def verdicts(self) -> dict[str, str]:
        return {layer.name: layer.verdict for layer in self.layers}

    # -- text ------------------------------------------------------------------------------
    def table(self, max_rows: int = 40) -> str:
        """The per-layer table. A stacked module's layers follow its row (all of them up to
        :data:`STACK_ROWS`, else the first and last few around one summary line); with more
        than ``max_rows`` rows, the middle ones are replaced by a line saying how many."""
        header = ("#", "layer", "type", "|dL/dW|", "gain", "act", "mean", "std", "sat",
                  "dead", "sens", "lyap", "verdict")
        rows: list[tuple[str, ...] | str] = []
        index = 0
        while index < len(self.layers):
            lay = self.layers[index]
            if lay.stack is None:
                rows.append(_row(lay))
                index += 1
                continue
            group = [lay]
            while index + len(group) < len(self.layers) and \
                    self.layers[index + len(group)].stack == lay.stack:
                group.append(self.layers[index + len(group)])
            rows += _stack_rows(group)
            index += len(group)
        if len(rows) > max_rows:
            keep = max_rows // 2
            elided = len(rows) - 2 * keep
            rows = rows[:keep] + [f"... {elided} rows elided ..."] + rows[-keep:]
        cells = [r for r in rows if isinstance(r, tuple)]
        widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
                  for i, h in enumerate(header)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
        for row in rows:
            if isinstance(row, str):
                lines.append(row)
                continue
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return "\n".join(lines)

    @property
    def depth(self) -> int:
        """Layers counted one by one (a stacked module counts each of its layers)."""
        return len(self.layers)

    @property
    def modules(self) -> int:
        """Modules: layers outside stacks, plus one per stacked module."""
        return len({lay.stack or f"\0{lay.name}" for lay in self.layers})

    def __str__(self) -> str:
        jac = self.jacobian
        size = f"{len(self.layers)} layers"
        if self.modules != len(self.layers):
            size = f"{len(self.layers)} layers in {self.modules} modules"
        out = [f"signalprop diagnosis: {self.verdict} ({size}, batch {self.batch_size}, loss "
               f"{self.loss:.4g} [{self.loss_kind}])", self.table()]
        out += [f"sens n/a for {lay.name} ({lay.kind}): {lay.sensitivity_note}"
                for lay in self.layers if lay.sensitivity_note]
        out += self._gradient_lines()
        if jac.get("sigma_max") is not None:
            out.append(f"input-output Jacobian ({jac['method']}, {jac['examples']} examples, "
                       f"{jac['shape'][0]}x{jac['shape'][1]}): sigma_max "
                       f"{_fmt(jac['sigma_max'])}, sigma_min {_fmt(jac['sigma_min'])}")
        else:
            out.append(f"input-output Jacobian: {jac.get('method')}")
        out += [f"warning: {w}" for w in self.warnings]
        problem = None
        for s in self.suggestions:
            if s.problem != problem:
                problem = s.problem
                where = ", ".join(s.layers[:4]) + (" ..." if len(s.layers) > 4 else "")
                out.append(f"{problem} ({len(s.layers)}: {where}); remedies:")
            out.append(f"  - {s.remedy.name}: {s.remedy.why}\n      {s.remedy.code}")
        return "\n".join(out)

    def _gradient_lines(self) -> list[str]:
        """The first/last ratio and the first layer's gain, each saying what it measures, and
        a note when the ratio seems to contradict the verdict."""
        first, last = self.layers[0], self.layers[-1]
        ratio, gain = self.grad_ratio_first_to_last, self.gain_first
        lines = [f"gradient norm first/last layer: {_fmt(ratio)} (|dL/dW| of {first.name} over "
                 f"{last.name}); backward gain at the first layer: {_fmt(gain)} (gradient "
                 "reaching its input over the gradient at the output; verdicts use the gains)"]
        if ratio is None or gain is None:
            return lines
        contradicts = ((self.verdict == "exploding" and ratio < 1)
                       or (self.verdict == "vanishing" and ratio > 1))
        if contradicts:
            stds = [(lay.act_std, lay.name) for lay in self.layers if lay.act_std is not None
                    and math.isfinite(lay.act_std)]
            scale = ""
            if stds:
                low, high = min(stds), max(stds)
                scale = (f" (layer outputs' std ranges from {_fmt(low[0])} at {low[1]} to "
                         f"{_fmt(high[0])} at {high[1]})")
            lines.append(
                f"note: the ratio {_fmt(ratio)} {'<' if ratio < 1 else '>'} 1 does not "
                f"contradict '{self.verdict}': |dL/dW_l| is the gradient at layer l's output "
                f"times the size of its input{scale}, so it follows the activations' scale; "
                f"the gradient itself reaches the first layer {_fmt(gain)}x as large as at "
                "the output")
        return lines

    # -- figure ----------------------------------------------------------------------------
    def plot(self, path: str | Path) -> Path:
        """PNG: gradient norms (log) and mean neuron sensitivity against layer index."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.6))
        FigureCanvasAgg(fig)
        ax_g, ax_s = fig.subplots(1, 2)
        grads = [(lay.index, lay.grad_norm) for lay in self.layers]
        inputs = [(lay.index, lay.input_grad_norm) for lay in self.layers]
        for pts, label in ((grads, "||dL/dW_l||"), (inputs, "||dL/dx_l||")):
            pts = [(x, v) for x, v in pts if v not in (None, 0.0) and math.isfinite(v)]
            if pts:
                ax_g.plot(*zip(*pts, strict=True), marker="." if len(pts) < 200 else None,
                          label=label)
        ax_g.set_yscale("log")
        ax_g.set_xlabel("layer (input to output)")
        ax_g.set_ylabel("gradient norm")
        ax_g.set_title(f"gradients ({self.verdict})")
        ax_g.legend(fontsize=8)
        pts = [(lay.index, lay.sensitivity_mean) for lay in self.layers
               if lay.sensitivity_mean is not None]
        if pts:
            ax_s.plot(*zip(*pts, strict=True), marker=".", color="C2")
            ax_s.axhline(1.0, color="grey", lw=0.8, ls="--")
        else:
            ax_s.text(0.5, 0.5, "no Linear -> activation pairs", ha="center",
                      transform=ax_s.transAxes)
        ax_s.set_xlabel("layer (input to output)")
        ax_s.set_ylabel("mean sensitivity f'(U)||w||")
        ax_s.set_title("neuron sensitivity")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        return path
