"""The README's Python examples run as written (with one epoch and a temporary run directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
DIAGNOSE_OUTPUT = re.search(
    r"```python\n[^`]*diagnose\(model, \(torch[^`]*```\n.*?```text\n(.*?)```",
    README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, capsys):
    code = BLOCKS[index].replace("epochs=5", "epochs=1")
    code = code.replace('"runs/my-model"', repr(str(tmp_path / "run")))
    exec(compile(code, f"README.md example {index + 1}", "exec"), {})
    out = capsys.readouterr().out
    assert "signalprop diagnosis:" in out


def _columns(text: str) -> list[list[str]]:
    """Header lines whole; for layer rows, the layer name and its verdict (robust to BLAS noise)."""
    rows = []
    for line in text.strip().splitlines():
        words = line.split()
        rows.append([words[1], words[-1]] if words and words[0].isdigit() else [line])
    return rows


def test_readme_diagnose_output_is_real(capsys):
    assert DIAGNOSE_OUTPUT is not None
    code = next(b for b in BLOCKS if "diagnose(model, (torch" in b)
    exec(compile(code, "README.md diagnose example", "exec"), {})
    shown = DIAGNOSE_OUTPUT.group(1)
    actual = capsys.readouterr().out
    assert _columns(actual)[:2] == _columns(shown)[:2]
    layer_rows = [r for r in _columns(actual) if len(r) == 2]
    assert layer_rows == [r for r in _columns(shown) if len(r) == 2]
    assert actual.strip().splitlines()[-1] == shown.strip().splitlines()[-1]
