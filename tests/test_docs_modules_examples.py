"""The Python examples of docs/modules.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "modules.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def test_page_has_an_example_per_topic():
    text = PAGE.read_text()
    for heading in ("## torch.func", "## AMP", "## torch.compile"):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        assert "```python" in section, f"{heading} has no example"


def _cases():
    for index, block in enumerate(BLOCKS):  # compiling takes many seconds on CPU
        marks = [pytest.mark.slow] if "torch.compile(" in block else []
        yield pytest.param(index, marks=marks, id=f"example-{index + 1}")


@pytest.mark.parametrize("index", list(_cases()))
def test_docs_modules_example_runs(index):
    exec(compile(BLOCKS[index], f"docs/modules.md example {index + 1}", "exec"), {})
