"""docs/modules.md has an example per topic (tests/test_readme_examples.py runs them, in order
with the README and the other pages)."""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "modules.md"


def test_page_has_an_example_per_topic():
    text = PAGE.read_text()
    for heading in ("## torch.func", "## AMP", "## torch.compile"):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        assert "```python" in section, f"{heading} has no example"
