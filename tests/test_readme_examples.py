"""The README's Python examples run as written (with one epoch and a temporary run directory)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, capsys):
    code = BLOCKS[index].replace("epochs=5", "epochs=1")
    code = code.replace('"runs/my-model"', repr(str(tmp_path / "run")))
    exec(compile(code, f"README.md example {index + 1}", "exec"), {})
    out = capsys.readouterr().out
    assert "signalprop diagnosis:" in out
