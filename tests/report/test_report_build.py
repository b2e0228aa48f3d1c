from __future__ import annotations

import base64
import re
import struct
import zlib
from pathlib import Path

import pytest

from signalprop.errors import SignalpropError
from signalprop.report import build_report, discover_runs, read_run
from signalprop.report.figures import PNG_SIGNATURE, spans_decades


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
            + chunk(b"IEND", b""))


def test_report_from_two_runs(make_run, tmp_path: Path) -> None:
    make_run(experiment="fake-deep-mlp", figure_png=tiny_png())
    make_run(experiment="resnet-depth", stamp="20261126-101010-ffff")
    out = tmp_path / "report"
    index = build_report([tmp_path / "runs"], out, title="My <report>")
    assert index == out / "index.html"
    md = (out / "README.md").read_text()
    page = index.read_text()
    for text in (md, page):
        assert "fake-deep-mlp" in text and "resnet-depth" in text
    assert "My &lt;report&gt;" in page and "<report>" not in page
    # top-level claims table comes before the first run section
    assert md.index("## Claims") < md.index("## fake-deep-mlp")
    # every figure referenced by README.md exists in figures/
    refs = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert refs and all((out / r).is_file() for r in refs)
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(pngs) == len(refs)
    assert any(n.endswith("-run-own.png") for n in pngs)  # the run's own figure is included
    assert any("series-ratio_vs_depth" in n for n in pngs)
    assert all((out / "figures" / n).read_bytes().startswith(PNG_SIGNATURE) for n in pngs)


def test_grad_norm_figure_when_grad_norms_present(make_run, tmp_path: Path) -> None:
    make_run(experiment="with-grads")
    make_run(experiment="no-grads", grad_norms=False)
    out = tmp_path / "r"
    build_report([tmp_path / "runs"], out)
    names = [p.name for p in (out / "figures").glob("*.png")]
    assert [n for n in names if n.startswith("with-grads") and "grad-norms" in n]
    assert not [n for n in names if n.startswith("no-grads") and "grad-norms" in n]
    md = (out / "README.md").read_text()
    assert "Gradient norms (last logged epoch)" in md
    # last epoch decays 0.5 per layer over 20 layers: first / last = 0.5**19
    assert f"{0.5**19:.3e}" in md


def test_truncated_metrics_line_is_tolerated(make_run, tmp_path: Path) -> None:
    run_dir = make_run(truncate_metrics=True)
    run = read_run(run_dir)
    sub = run.subruns[0]
    assert len(sub.epochs) == 3 and sub.skipped_lines
    out = tmp_path / "r"
    build_report([run_dir], out)
    md = (out / "README.md").read_text()
    assert "skipped 1 unparsable line" in md
    assert "skipped 1 unparsable line" in (out / "index.html").read_text()


def test_run_without_summary_is_incomplete(make_run, tmp_path: Path) -> None:
    run_dir = make_run(summary=False)
    assert not read_run(run_dir).complete
    out = tmp_path / "r"
    build_report([run_dir], out)
    md = (out / "README.md").read_text()
    assert "incomplete" in md.lower() and "no `summary.json`" in md
    assert "incomplete" in (out / "index.html").read_text()
    # its subruns still produce a loss figure
    assert list((out / "figures").glob("*-loss.png"))


def _offline_images(page: str) -> list[str]:
    """The page's image sources, after checking that it loads nothing from the network."""
    assert not re.search(r"https?://", page)
    assert not re.search(r"<(script|link|iframe)\b", page, re.I)
    srcs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)
    assert len(srcs) == len(re.findall(r"<img\b", page)) >= 4
    return srcs


def test_html_refers_to_each_figure_file_once(make_run, tmp_path: Path) -> None:
    make_run(figure_png=tiny_png())
    out = tmp_path / "r"
    page = build_report([tmp_path / "runs"], out).read_text()
    srcs = _offline_images(page)
    assert "data:image" not in page
    assert sorted(srcs) == sorted(f"figures/{p.name}" for p in (out / "figures").glob("*.png"))
    assert all((out / src).read_bytes().startswith(PNG_SIGNATURE) for src in srcs)


def test_standalone_html_is_self_contained(make_run, tmp_path: Path) -> None:
    make_run(figure_png=tiny_png())
    out = tmp_path / "r"
    page = build_report([tmp_path / "runs"], out, standalone=True).read_text()
    srcs = _offline_images(page)
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert len(srcs) == len(list((out / "figures").glob("*.png")))
    hrefs = re.findall(r"href=\"([^\"]*)\"", page)
    # anchors, or links to the copied raw run files next to the page (navigation, not loads)
    assert all(h.startswith("#") or (tmp_path / "r" / h).is_dir() for h in hrefs)
    assert any(h.startswith("runs/") for h in hrefs)


def test_non_run_directory_raises(tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("x")
    with pytest.raises(SignalpropError, match="not a run directory.*expected config.json"):
        build_report([empty], tmp_path / "r")
    with pytest.raises(SignalpropError, match="does not exist"):
        build_report([tmp_path / "missing"], tmp_path / "r")
    with pytest.raises(SignalpropError, match="no run directories"):
        build_report([], tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_tables_contain_their_rows(make_run, tmp_path: Path) -> None:
    make_run()
    out = tmp_path / "r"
    page = build_report([tmp_path / "runs"], out).read_text()
    md = (out / "README.md").read_text()
    for text in (md, page):
        assert "depth sweep" in text
        assert "0.1235" in text and "0.91" in text  # extra table rows
        assert "final_test_acc" in text and "0.8123" in text  # results table
        assert "1.900e-06" in text
        assert "gradients vanish in deep tanh MLPs" in text and "ratio ~1e-5" in text
        assert "mnist1d" in text and "reproduced" in text
        assert "plain/seed0" in text and "baseline" in text  # subrun table
    assert "| 50 | 0.1235 |" in md
    assert md.count("gradients vanish in deep tanh MLPs") == 2  # top-level + run claims
    assert '<span class="verdict v-reproduced">reproduced</span>' in page


def test_unrelated_files_in_out_dir_untouched(make_run, tmp_path: Path) -> None:
    make_run()
    out = tmp_path / "r"
    (out / "figures").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "figures" / "mine.png").write_bytes(b"not really a png")
    build_report([tmp_path / "runs"], out)
    build_report([tmp_path / "runs"], out)  # rebuilding over its own output is fine
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "figures" / "mine.png").read_bytes() == b"not really a png"
    assert not [p for p in out.rglob("*.tmp")]
    assert (out / "index.html").stat().st_mode & 0o044 == 0o044  # readable by others


def test_foreign_readme_is_not_overwritten(make_run, tmp_path: Path) -> None:
    run_dir = make_run()
    out = tmp_path / "r"
    out.mkdir()
    (out / "README.md").write_text("# my own readme\n")
    with pytest.raises(SignalpropError, match="refusing to overwrite.*README.md"):
        build_report([run_dir], out)
    assert (out / "README.md").read_text() == "# my own readme\n"
    assert not (out / "index.html").exists()


def test_stale_figures_of_previous_report_removed(make_run, tmp_path: Path) -> None:
    make_run(experiment="a")
    run_b = make_run(experiment="b")
    out = tmp_path / "r"
    build_report([tmp_path / "runs"], out)
    assert list((out / "figures").glob("a-*.png"))
    build_report([run_b], out)
    assert not list((out / "figures").glob("a-*.png"))
    assert list((out / "figures").glob("b-*.png"))


def test_several_runs_newest_first_and_html_escaping(make_run, tmp_path: Path) -> None:
    make_run(stamp="20261101-000000-old0")
    new = make_run(stamp="20261201-000000-new0")
    runs = discover_runs([tmp_path / "runs" / "fake-deep-mlp"])
    assert [r.run_id for r in runs] == ["20261201-000000-new0", "20261101-000000-old0"]
    (new / "summary.json").write_text(
        '{"results": {"<b>x</b>": "a|b <script>alert(1)</script>"}}')
    out = tmp_path / "r"
    page = build_report([tmp_path / "runs"], out).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    md = (out / "README.md").read_text()
    assert "a\\|b" in md and "<script>" not in md


def test_log_scale_rule() -> None:
    assert spans_decades([2.0, 0.01])
    assert not spans_decades([2.0, 0.05])
    assert not spans_decades([2.0, 0.0, 1e-5])


def test_malformed_and_partial_files_do_not_crash(make_run, tmp_path: Path) -> None:
    run_dir = make_run(figure_png=b"GIF89a not a png")
    (run_dir / "summary.json").write_text(
        '{"results": [1, 2], "tables": {"t": {"columns": ["a"]}}, "claims": ["x"],'
        ' "series": {"s": {"lines": {"l": [[0, NaN], [1, 2], "bad", [2, 3]]}}}}')
    (run_dir / "baseline" / "result.json").write_text("{truncated")
    with open(run_dir / "plain" / "seed0" / "metrics.jsonl", "a") as fh:
        fh.write('\n\n[1, 2]\n{"kind": "epoch", "epoch": 4, "train_loss": NaN,'
                 ' "grad_norms": {"a": 0.0, "b": null}}\n')
    bare = tmp_path / "runs" / "started-only" / "20261127-000000-0000"
    bare.mkdir(parents=True)
    (bare / "config.json").write_text('{"experiment": "started-only", "claim": "c"}')
    out = tmp_path / "r"
    build_report([str(run_dir), bare], out)  # a config-only dir passed explicitly is accepted
    md = (out / "README.md").read_text()
    assert "figures/own.png is not a PNG file" in md
    assert "result.json is not valid JSON" in md
    assert "'results' is not an object" in md
    assert "started-only" in md and "not checked" in md  # incomplete run's claim, unchecked
    assert list((out / "figures").glob("*series-s.png"))
    # a bare config-only dir is not discovered inside a container (it is no run dir yet)
    assert [r.experiment for r in discover_runs([tmp_path / "runs"])] == ["fake-deep-mlp"]


def test_grad_norm_profile_skips_unusable_epochs(make_run) -> None:
    run_dir = make_run(subruns=("deep",))
    with open(run_dir / "deep" / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "epoch", "epoch": 4, "grad_norms": {"a": 0.0, "b": null}}\n')
    sub = read_run(run_dir).subruns[0]
    assert [r["epoch"] for r in sub.grad_norm_epochs()] == [1, 2, 3]
