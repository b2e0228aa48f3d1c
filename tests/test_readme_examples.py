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
    code = re.sub(r'"runs/([\w-]+)"', lambda m: repr(str(tmp_path / m.group(1))), code)
    exec(compile(code, f"README.md example {index + 1}", "exec"), {})
    out = capsys.readouterr().out
    if "load_run(" in code:  # the restored model scores what fit reported
        words = out.split()
        assert words[words.index("test_acc") + 1] == words[words.index("restored") + 1]
    elif "build_model(" in code:  # the registry example prints what its comment says
        assert out.strip() == re.search(r"# (torch\.Size\(.*?\))", code).group(1)
    else:
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
