"""The README's and the docs pages' Python examples run as written, in order, in one fresh
directory (as a new user would run them in a fresh clone: a later example that reused an
earlier one's run directory would fail here), with ``epochs=5`` read as ``epochs=1``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The pages in the order a reader meets them: the README, then the pages it links.
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "methods")
                                                                 .glob("*.md"))]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
DIAGNOSE_OUTPUT = re.search(
    r"```python\n[^`]*diagnose\(model, \(torch[^`]*```\n.*?```text\n(.*?)```",
    README.read_text(), re.S)
#: Examples too long for the default suite (a 50,000-layer MLP, torch.compile) or that need
#: torchrun: marked slow, run with ``-m slow``.
SLOW = ("50_000", "torch.compile(", "init_from_env()")


def examples() -> list[tuple[str, str]]:
    """``(where, code)`` of every Python example, README first, in page order."""
    found = []
    for page in PAGES:
        for number, (_, code) in enumerate(BLOCK.findall(page.read_text()), 1):
            found.append((f"{page.relative_to(ROOT)} example {number}", textwrap.dedent(code)))
    return found


@pytest.fixture(scope="module")
def fresh_clone_dir(tmp_path_factory):
    """One working directory shared by all examples, as in a fresh clone."""
    return tmp_path_factory.mktemp("fresh-clone")


def _cases():
    for where, code in examples():
        marks = [pytest.mark.slow] if any(s in code for s in SLOW) else []
        yield pytest.param(where, code, marks=marks, id=where.replace(" ", "-"))


@pytest.mark.parametrize("where, code", list(_cases()))
def test_example_runs_in_order(where, code, fresh_clone_dir, monkeypatch, capsys):
    monkeypatch.chdir(fresh_clone_dir)
    code = code.replace("epochs=5", "epochs=1")
    if "init_from_env()" in code:  # a torchrun script: run it as its comment says
        script = fresh_clone_dir / "ddp_example.py"
        script.write_text(code)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        str(script)], check=True, env=env, timeout=300)
        return
    exec(compile(code, where, "exec"), {"__name__": "__example__"})
    out = capsys.readouterr().out
    if not where.startswith("README"):
        return
    if "load_run(" in code:  # the restored model scores what fit reported
        words = out.split()
        assert words[words.index("test_acc") + 1] == words[words.index("restored") + 1]
    elif "build_model(" in code:  # the registry example prints what its comment says
        assert out.strip() == re.search(r"# (torch\.Size\(.*?\))", code).group(1)
    else:
        assert "signalprop diagnosis:" in out


def test_every_page_with_examples_is_covered():
    pages = {where.split(" example")[0] for where, _ in examples()}
    assert {"README.md", "docs/training-options.md", "docs/checkpoints.md",
            "docs/modules.md", "docs/methods/orthogonal.md"} <= pages


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


def _readme_commands() -> list[str]:
    """Every shell command in the README's bash blocks and inline code, comments removed."""
    text = README.read_text()
    lines = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = [a or b for a, b in re.findall(r"``(.+?)``|`([^`]+)`", prose, re.S)]
    inline = [" ".join(span.split()) for span in spans  # not names such as `signalprop run`
              if re.match(r"(signalprop|torchrun|make|source) ", span.strip())
              and (len(span.split()) > 2 or not span.startswith("signalprop"))
              and not span.split()[-1].startswith("-")]
    return [c for c in lines + inline if c]


def test_readme_shell_commands_parse_and_need_the_activated_venv():
    from signalprop.cli import build_parser

    text = README.read_text()
    assert text.index("source .venv/bin/activate") < text.index("signalprop run")
    targets = re.findall(r"^(\w+):", (README.parent / "Makefile").read_text(), re.M)
    commands = _readme_commands()
    assert any(c.startswith("torchrun") for c in commands)
    for command in commands:
        words = command.split()
        if words[0] == "make":
            assert words[1] in targets, command
            continue
        if words[0] == "torchrun":
            start = next(i for i, w in enumerate(words) if "signalprop" in w)
            words = words[start:]
        if words[0] != "signalprop":
            continue
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:
            raise AssertionError(f"README command does not parse: {command}") from exc
