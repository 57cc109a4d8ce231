"""``python -m roicore``: demo, info, explain; bad arguments give a one-line
error and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from roicore.__main__ import main
from roicore._cli import explain as _explain


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roicore", *args], capture_output=True,
                          text=True, timeout=120)


# ---------------------------------------------------------------- demo / info
def test_demo_prints_the_explainers_result():
    p = _run("demo")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "roi_pool(x, rois, 2, bins='equal'):\n     0.85  0.84\n     0.97  0.96\n" in out
    assert "matches the explainer's [[0.85, 0.84], [0.97, 0.96]]: yes" in out
    assert p.stderr == ""


def test_demo_float64_in_process(capsys):
    assert main(["demo", "--dtype", "float64"]) == 0
    assert "0.85  0.84" in capsys.readouterr().out


def test_info_exits_0():
    p = _run("info")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("roicore ")
    assert "OpenMP:" in p.stdout


# ---------------------------------------------------------------- bad arguments
def _assert_one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines and "error:" in lines[-1], p.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]


def test_bad_choice_is_an_argparse_error():
    # argparse: usage line(s), then one error line; exit 2
    p = _run("explain", "--op", "bogus")
    _assert_one_line_error(p, "invalid choice", "bogus")
    assert p.stderr.strip().splitlines()[-1].startswith("roicore explain: error:")


def test_bad_value_is_one_line():
    p = _run("explain", "--op", "align", "--bins", "equal")
    _assert_one_line_error(p, "--bins applies to --op pool")
    assert p.stderr.strip() == "roicore: error: --bins applies to --op pool, not --op align"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explain", "--op", "pool", "--output-size", "0"], "--output-size takes 1 or 2"),
        (["explain", "--op", "pool", "--output-size", "2", "2", "2"], "--output-size takes"),
        (["explain", "--op", "pool", "--spatial-scale", "-1"], "--spatial-scale must be"),
        (["explain", "--op", "pool", "--sampling-ratio", "2"], "--sampling-ratio applies to"),
        (["explain", "--op", "pool", "--aligned"], "--aligned applies to --op align"),
        (["explain", "--op", "warp", "--aligned"], "--aligned applies to --op align"),
        (["explain", "--op", "align", "--compat", "mnc"], "--compat applies to --op warp"),
        (["explain", "--op", "warp", "--compat", "mnc", "--sampling-ratio", "2"],
         "--compat mnc takes one sample per bin"),
        (["explain", "--op", "align", "--roi", "0", "0", "nan", "4"], "--roi must be 4 finite"),
        (["explain", "--op", "align", "--sampling-ratio", "40"], "--sampling-ratio must be <= 16"),
        (["explain", "--op", "align", "--sampling-ratio", "0", "--roi", "0", "0", "500", "500"],
         "adaptive sampling grid"),
    ],
)
def test_bad_values_in_process(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("roicore: error: ") and needle in err, err


@pytest.mark.parametrize(
    "argv",
    [["explain"], ["explain", "--op", "pool", "--roi", "1", "2"], ["demo", "--dtype", "int8"],
     ["explain", "--op", "pool", "--dpi", "many"]],
)
def test_argparse_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error:" in err[-1] and not any("Traceback" in line for line in err)


def test_explain_without_matplotlib_is_one_line():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from roicore.__main__ import main\n"
        "sys.exit(main(['explain', '--op', 'pool', '--out', 'never.png']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "roicore: error: explain needs matplotlib: pip install matplotlib "
        "(or pip install 'roicore[plot]')"
    )


# ---------------------------------------------------------------- explain geometry (no matplotlib)
OPTIONS = [
    ("pool", {"bins": "equal"}),
    ("pool", {"bins": "fast_rcnn"}),
    ("align", {"aligned": True}),
    ("align", {"aligned": False, "sampling_ratio": -1}),
    ("align", {"mode": "max", "sampling_ratio": 3}),
    ("warp", {}),
    ("warp", {"mode": "max"}),
    ("warp", {"compat": "mnc", "sampling_ratio": -1}),
]


@pytest.mark.parametrize(("op", "kw"), OPTIONS)
@pytest.mark.parametrize("roi", [None, (0.4, 2.6, 6.6, 7.7), (-2.3, -1.2, 9.6, 4.4),
                                 (5.0, 5.0, 5.2, 5.1), (-0.5, 1.5, 2.5, 7.5)])
@pytest.mark.parametrize("size", [1, 2, (3, 2)])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.3])
def test_geometry_matches_roicore(op, kw, roi, size, scale):
    """The figure's bins and samples reproduce roicore's float32 numbers bit for bit."""
    opts = dict(roi=roi, output_size=size, spatial_scale=scale, **kw)
    geo = _explain.geometry(op, **opts)
    out = _explain.roicore_output(op, **opts)
    np.testing.assert_array_equal(geo.output.astype(np.float32), out)


def test_geometry_of_the_seed():
    geo = _explain.geometry("pool")  # bins='equal': the explainer's sections
    cells = [(b.x0, b.y0, b.x1, b.y1) for b in geo.bins]
    assert cells == [(-0.5, 2.5, 2.5, 4.5), (2.5, 2.5, 6.5, 4.5),
                     (-0.5, 4.5, 2.5, 7.5), (2.5, 4.5, 6.5, 7.5)]
    np.testing.assert_allclose(geo.output, [[0.85, 0.84], [0.97, 0.96]], atol=1e-6)
    assert [b.winner for b in geo.bins] == [(0, 3), (3, 3), (2, 7), (6, 5)]
    geo = _explain.geometry("align", aligned=True, sampling_ratio=2)
    assert geo.roi == (-0.5, 2.5, 6.5, 7.5)
    assert all(len(b.samples) == 4 for b in geo.bins)
    geo = _explain.geometry("warp", compat="mnc", sampling_ratio=-1)
    assert [(s.x, s.y) for b in geo.bins for s in b.samples] == [
        (0.0, 3.0), (3.5, 3.0), (0.0, 5.5), (3.5, 5.5)]


# ---------------------------------------------------------------- explain figures
@pytest.mark.parametrize(
    "argv",
    [
        ["--op", "pool"],
        ["--op", "pool", "--bins", "fast_rcnn", "--output-size", "3", "2"],
        ["--op", "align", "--aligned", "--sampling-ratio", "2"],
        ["--op", "align", "--mode", "max", "--sampling-ratio", "0"],
        ["--op", "warp", "--roi", "0.4", "2.6", "6.6", "7.7"],
        ["--op", "warp", "--compat", "mnc"],
    ],
)
def test_explain_writes_png(argv, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install "
                        "'roicore[plot]'): explain cannot draw")
    path = tmp_path / "fig.png"
    assert main(["explain", *argv, "--out", str(path), "--dpi", "40"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_explain_default_path(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install "
                        "'roicore[plot]'): explain cannot draw")
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--op", "align", "--dpi", "30"]) == 0
    assert (tmp_path / "explain_align.png").is_file()
    capsys.readouterr()


def test_explain_does_not_touch_pyplot():
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    code = (
        "import sys, tempfile, os\n"
        "from roicore.__main__ import main\n"
        "d = tempfile.mkdtemp()\n"
        "assert main(['explain', '--op', 'pool', '--dpi', '30', '--out', "
        "os.path.join(d, 'p.png')]) == 0\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


# ---------------------------------------------------------------- --version, help, bench options
def test_version():
    import roicore

    p = _run("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"roicore {roicore.__version__}"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "--threads", "abc"], "argument --threads: 'abc' is not a thread count"),
        (["bench", "--threads", "1,x"], "argument --threads: 'x' is not a thread count"),
        (["bench", "--threads", "0"], "argument --threads: thread counts must be >= 1, got 0"),
        (["bench", "--threads", ","], "argument --threads: give at least one thread count"),
        (["bench", "--workload", "W9"], "argument --workload: unknown workload 'W9'"),
        (["bench", "--repeat", "x"], "argument --repeat: expected a whole number >= 1, got 'x'"),
        (["bench", "--repeat", "0"], "argument --repeat: must be >= 1, got 0"),
        (["bench", "--dtype", "int8"], "argument --dtype: invalid choice"),
        (["cuda-check", "--arch", "ninety"], "argument --arch: expected e.g. sm_80"),
        (["cuda-check", "--compiler", "clang"], "argument --compiler: invalid choice"),
    ],
)
def test_option_types_give_one_line_errors(argv, needle):
    p = _run(*argv)
    _assert_one_line_error(p, needle)
    assert p.stderr.strip().splitlines()[-1].startswith(f"roicore {argv[0]}: error: ")
    assert p.stdout == ""


HELP_JARGON = ("``", ":mod:", ":func:", ":class:", "seed", "explainer", "instantiation")


@pytest.mark.parametrize("command", [None, "demo", "info", "explain", "bench", "cuda-check"])
def test_help_texts_are_plain(command):
    p = _run(*([command] if command else []), "-h")
    assert p.returncode == 0, p.stderr
    assert "usage: roicore" in p.stdout
    for word in HELP_JARGON:
        assert word not in p.stdout.lower(), (word, p.stdout)


def test_bench_reports_progress_without_tqdm():
    # tqdm absent (import blocked): one progress line per finished case on stderr
    code = (
        "import sys; sys.modules['tqdm'] = None\n"
        "from roicore.__main__ import main\n"
        "sys.exit(main(['bench', '--quick', '--workload', 'W3', '--threads', '1', "
        "'--repeat', '1']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("roicore bench: [")]
    assert [ln.split("]")[0] for ln in lines] == ["roicore bench: [1/2", "roicore bench: [2/2"]
    assert "W3-quick fwd T=1" in lines[0] and "W3-quick bwd T=1" in lines[1]
    assert "roicore bench" not in p.stdout.split("ratio =")[1]  # tables stay on stdout alone

    quiet_code = code.replace("'1']))", "'1', '--no-progress']))")
    quiet = subprocess.run([sys.executable, "-c", quiet_code], capture_output=True, text=True,
                           timeout=300)
    assert quiet.returncode == 0 and "roicore bench: [" not in quiet.stderr, quiet.stderr


# ---------------------------------------------------------------- explain: compare, inset, layout
def test_explain_compare_writes_png_after_the_geometry_check(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install "
                        "'roicore[plot]'): explain cannot draw")
    path = tmp_path / "compare.png"
    assert main(["explain", "--op", "compare", "--aligned", "--out", str(path),
                 "--dpi", "40"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {path}"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


@pytest.mark.parametrize("op", ["align", "compare"])
def test_explain_refuses_to_draw_what_roicore_does_not_compute(op, tmp_path, capsys,
                                                               monkeypatch):
    real = _explain.roicore_output
    monkeypatch.setattr(_explain, "roicore_output",
                        lambda o, **kw: real(o, **kw) + np.float32(1e-6 if o == "align" else 0))
    path = tmp_path / "never.png"
    assert main(["explain", "--op", op, "--out", str(path)]) == 2
    assert "explain's geometry of align disagrees with roicore" in capsys.readouterr().err
    assert not path.exists()


def test_compare_options(capsys):
    assert main(["explain", "--op", "compare", "--compat", "mnc"]) == 2
    assert "--compat applies to --op warp, not --op compare" in capsys.readouterr().err


FIGURES = [
    ("pool", {}), ("pool", {"bins": "fast_rcnn", "output_size": (3, 2)}),
    ("align", {"aligned": True}), ("align", {"mode": "max", "sampling_ratio": 0}),
    ("align", {"output_size": 3, "sampling_ratio": 3}),
    ("warp", {"roi": (0.4, 2.6, 6.6, 7.7)}), ("warp", {"compat": "mnc", "sampling_ratio": -1}),
    ("compare", {"aligned": True}), ("compare", {"roi": (0.4, 2.6, 6.6, 7.7)}),
]


@pytest.mark.parametrize(("op", "kw"), FIGURES)
def test_figure_texts_stay_inside_and_apart(op, kw, tmp_path):
    # no text (pixel value, sample value, caption, tick label, title) overlaps another
    # one or leaves the figure
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    path = str(tmp_path / "f.png")
    if op == "compare":
        ops = ("pool", "align", "warp")
        fig = _explain.draw_compare([_explain.geometry(o, **kw) for o in ops],
                                    [_explain.roicore_output(o, **kw) for o in ops], path,
                                    dpi=60, roi=kw.get("roi"))
    else:
        fig = _explain.draw(_explain.geometry(op, **kw), _explain.roicore_output(op, **kw),
                            path, dpi=60)
    assert _explain.layout_problems(fig) == []


def test_layout_check_sees_an_overlap():
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, "first label")
    fig.text(0.52, 0.5, "second label")
    fig.text(0.95, 0.1, "runs past the frame")
    problems = _explain.layout_problems(fig)
    assert "'first label' overlaps 'second label'" in problems
    assert "'runs past the frame' leaves the figure" in problems


@pytest.mark.parametrize(("op", "kw"), [("align", {"aligned": True}),
                                        ("align", {"sampling_ratio": 3, "output_size": 3}),
                                        ("warp", {"roi": (0.4, 2.6, 6.6, 7.7)}),
                                        ("align", {"roi": (-1.2, 5.3, 9.1, 7.9)})])
def test_inset_terms_add_up_to_each_sample(op, kw):
    # the inset's four weights x pixel values, summed in the kernels' order in float32, give
    # every drawn sample's value bit for bit; the weights are the bilinear ones (hand formula)
    geo = _explain.geometry(op, **kw)
    samples = [s for b in geo.bins for s in b.samples if s.valid]
    assert samples and _explain.inset_sample(geo) in samples
    for s in samples:
        terms = _explain.bilinear_terms(s.y, s.x)
        total = np.float32(0)
        for _, _, w, v in terms:
            total = total + w * v
        assert np.float32(s.value) == total, (s, terms)
        assert abs(sum(float(w) for _, _, w, _ in terms) - 1) < 1e-6
    s = _explain.inset_sample(geo)
    (r0, c0, w0, v0), (_, c1, w1, _), (r2, _, _, _), _ = _explain.bilinear_terms(s.y, s.x)
    fy, fx = s.y - int(s.y), s.x - int(s.x)
    assert (r0, c0, r2, c1) == (int(s.y), int(s.x), int(s.y) + 1, int(s.x) + 1)
    assert abs(float(w0) - (1 - fy) * (1 - fx)) < 1e-6 and abs(float(w1) - (1 - fy) * fx) < 1e-6
    assert v0 == _explain.SEED_MAP[r0, c0]
