"""Fake run directories written by hand, following the trainer's run-directory contract."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _grad_norms(depth: int, decay: float) -> dict[str, float]:
    # forward order: the input-side layer first; norms shrink towards the input (vanishing)
    return {f"layers.{i}": decay ** (depth - 1 - i) for i in range(depth)}


def write_run(
    root: Path,
    experiment: str = "fake-deep-mlp",
    stamp: str = "20261125-230102-a1b2",
    *,
    summary: bool = True,
    subruns: tuple[str, ...] = ("plain/seed0", "baseline"),
    grad_norms: bool = True,
    epochs: int = 3,
    truncate_metrics: bool = False,
    figure_png: bytes | None = None,
) -> Path:
    run = root / "runs" / experiment / stamp
    started = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:00"
    _write_json(run / "config.json", {
        "experiment": experiment, "claim": f"{experiment} claim", "paper": "Glorot & Bengio 2010",
        "quick": True, "seed": 0, "config": {"model": {"depth": 20, "act": "tanh"}},
        "meta": {"signalprop": "0.1.0", "torch": "2.4.0", "python": "3.11.9", "device": "cpu",
                 "hostname": "box", "platform": "Linux", "started": started,
                 "command": f"signalprop run {experiment} --quick"},
    })
    for k, sub in enumerate(subruns):
        d = run / sub
        lines = []
        for ep in range(1, epochs + 1):
            lines.append(json.dumps({"kind": "step", "step": ep * 10, "epoch": ep,
                                     "loss": 2.0 / ep}))
            rec = {"kind": "epoch", "epoch": ep, "step": ep * 10, "wall_s": 0.1 * ep,
                   "train_loss": 2.0 * 10.0 ** (-1.5 * (ep - 1)) + k, "test_loss": 2.1 / ep,
                   "test_acc": 0.5 + 0.1 * ep, "lr": 0.1}
            if grad_norms:
                rec["grad_norms"] = _grad_norms(20, 0.5 if ep == epochs else 0.8)
            lines.append(json.dumps(rec))
        text = "\n".join(lines) + "\n"
        if truncate_metrics:
            text += '{"kind": "epoch", "epoch": 99, "train_lo'
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.jsonl").write_text(text, encoding="utf-8")
        _write_json(d / "result.json", {"test_acc": 0.8 + 0.01 * k, "train_loss": 0.02})
    if summary:
        _write_json(run / "summary.json", {
            "experiment": experiment, "wall_s": 12.5,
            "results": {"final_test_acc": 0.8123, "grad_ratio": 1.9e-6, "note": "ok"},
            "tables": {"depth sweep": {"columns": ["depth", "acc"],
                                       "rows": [[10, 0.91], [50, 0.123456]]}},
            "claims": [{"claim": "gradients vanish in deep tanh MLPs", "source": "Fig. 7",
                        "paper_value": "ratio ~1e-5", "our_value": "ratio 1.9e-6",
                        "dataset": "mnist1d", "verdict": "reproduced",
                        "command": f"signalprop run {experiment}"}],
            "series": {"ratio_vs_depth": {"title": "Ratio vs depth", "xlabel": "depth",
                                          "ylabel": "ratio", "logy": True,
                                          "lines": {"tanh": [[10, 1e-2], [20, 1e-4]]}}},
        })
    if figure_png is not None:
        (run / "figures").mkdir(parents=True, exist_ok=True)
        (run / "figures" / "own.png").write_bytes(figure_png)
    return run


@pytest.fixture
def make_run(tmp_path: Path):
    def make(**kwargs: Any) -> Path:
        return write_run(tmp_path, **kwargs)

    return make
