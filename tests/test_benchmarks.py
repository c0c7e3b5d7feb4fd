"""The benchmark scripts in smoke mode (tiny sizes, two steps), so that they keep working.

Nothing here is timed: the assertions are about what the scripts compute and report.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO, shared_path, skip_or_fail

BENCHMARKS = REPO / "benchmarks"


def run_script(*args, timeout=600) -> str:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_runner_smoke_reports_both_implementations(tmp_path):
    shared_path("images", "tubingen.jpg")
    out = tmp_path / "results.json"
    stdout = run_script(BENCHMARKS / "run_benchmarks.py", "--smoke", "--json", out)
    results = json.loads(out.read_text())

    assert results["machine"]["matmul_gflops"] > 0
    assert [row["size"] for row in results["steps"]] == [64]
    for row in results["steps"]:
        for impl in ("project", "project_float32", "plain"):
            assert row[impl]["s_per_step"] > 0 and row[impl]["peak_rss_mb"] > 100
            assert row[impl]["timed_steps"] == 2
        # the same layers and objective: the same convolutions; the plain's autograd Gram backward
        # runs one extra matmul per style layer
        assert 1.0 < row["plain"]["flops"] / row["project"]["flops"] < 1.1
        assert row["project_float32"]["precision"] == "float32"
        assert row["history_mb"]["plain"] == 2 * row["history_mb"]["project"]
        assert math.isclose(row["ratio"], row["project"]["s_per_step"] / row["plain"]["s_per_step"])

    quality = results["quality"]
    assert len(quality["plain"]["curve"]) == quality["plain"]["steps"] == 2
    assert quality["target_loss"] == quality["plain"]["final_loss"] > 0
    assert quality["plain_best"]["loss"] == min(point[2] for point in quality["plain"]["curve"])
    assert (
        quality["project"]["final_loss"] > 0 and quality["project"]["settings"]["init"] == "content"
    )
    assert "| napari-nst defaults" in stdout and "| plain, 2 L-BFGS steps" in stdout


def test_plain_reference_optimises_the_common_objective():
    """The plain reference lowers the evaluator's loss (it minimises the same objective)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import plain_reference
        from run_benchmarks import Evaluator, _images
    finally:
        sys.path.remove(str(BENCHMARKS))
    shared_path("images", "tubingen.jpg")
    from napari_nst.engine.vgg import random_vgg19

    content, style = _images()
    vgg = random_vgg19(0)
    evaluator = Evaluator(content, style, 48, vgg)
    losses = []
    result = plain_reference.run_style_transfer(
        vgg,
        evaluator.content,
        evaluator.style,
        evaluator.content.clone(),
        num_steps=12,
        on_step=lambda step, loss: losses.append(loss),
    )
    assert len(losses) == 12
    # the closure's loss is the evaluator's loss of the image it saw
    assert math.isclose(losses[0], evaluator(evaluator.content), rel_tol=1e-4)
    assert evaluator(result.detach()) < 0.8 * losses[0]


def test_worker_benchmark_smoke():
    shared_path("images", "tubingen.jpg")
    if not os.environ.get("DISPLAY"):
        skip_or_fail("bench_worker needs a display (run under Xvfb)")
    stdout = run_script(BENCHMARKS / "bench_worker.py", "--size", 48, "--steps", 3, "--repeats", 1)
    for row in (
        "napari thread_worker, nothing pushed",
        "spinner paused as run_in_viewer does",
        "run_in_viewer, a layer pushed every step",
        "run_in_viewer, default emit_every=",
    ):
        assert re.search(rf"\| [^|]*{re.escape(row)}[^|]* \| \d+\.\d\d \| \d+ \|", stdout), row
    assert "over 3 layers" in stdout  # one layer per step, placed by run_in_viewer


def test_runs_in_a_viewer_do_not_grow_the_process():
    """bench_soak.py: 3 warm-up runs then 10 optimize runs through the dock widget, each run's
    layers deleted; the process keeps nothing of them (a loose bound: before each run handed
    its freed memory back, 10 such runs grew it by 27-58 MB, in steps of a thread's arena)."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    if not os.environ.get("DISPLAY"):
        skip_or_fail("bench_soak needs a display (run under Xvfb)")
    stdout = run_script(
        BENCHMARKS / "bench_soak.py",
        "--method",
        "optimize",
        "--runs",
        10,
        "--size",
        96,
        "--steps",
        4,
    )
    rows = re.findall(
        r"^\| optimize 4 steps 96 px \| (\d+) \| (\d+\.\d) \| ([+-]\d+\.\d) \| "
        r"[+-]\d+\.\d+ \| [^|]+ \| (\d+) \| (\d+) \|$",
        stdout,
        flags=re.MULTILINE,
    )
    assert [row[0] for row in rows] == ["1", "10"], stdout
    for run, rss, growth, workers, layers in rows:
        assert float(rss) > 100
        assert int(workers) <= int(run) + 3  # napari's registry may keep them: they hold nothing
        assert layers == "0"  # deleted results are freed
    assert float(rows[-1][2]) < 12.0, stdout


def test_predict_benchmark_smoke():
    shared_path("weights")
    pytest.importorskip("ai_edge_litert")
    stdout = run_script(BENCHMARKS / "bench_predict.py", "--sizes", 64, "--repeats", 1)
    assert "| 64" in stdout


def test_quality_benchmark_smoke(tmp_path):
    """bench_quality.py --smoke: every row scored, the targets checked, montages written."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    out = tmp_path / "montages"
    stdout = run_script(
        BENCHMARKS / "bench_quality.py",
        "--smoke",
        "--out",
        out,
        "--json",
        tmp_path / "quality.json",
    )
    report = json.loads((tmp_path / "quality.json").read_text())
    rows = report["rows"]
    assert len(report["pairs"]) == 1 and report["smoke"]
    assert rows["content itself"]["ssim"] == [pytest.approx(1.0)]
    for name in (
        "predict",
        "defaults, 96 px",
        "style_strength 0.5",
        "content_weight x10",
        "coarse_to_fine on (from 64 px), steps 9",
        "init universal",
        "previous defaults, no floor, 64 px",
        "plain reference, 6 L-BFGS steps",
    ):
        assert -1.0 <= rows[name]["ssim"][0] <= 1.0 and 0.0 < rows[name]["style"][0] <= 1.0
        assert rows[name]["gram"][0] > 0.0  # the second judge: a distance, 0 only for the style
    # strength 0 is the content; full strength moves away from it towards the style
    assert rows["style_strength 0"]["ssim"][0] > rows["style_strength 1"]["ssim"][0]
    assert rows["style_strength 1"]["style"][0] > rows["style_strength 0"]["style"][0]
    # the Gram judge (what optimize minimises) puts the optimize run closer to the style than
    # predict's result
    assert rows["defaults, 96 px"]["gram"][0] < rows["predict"]["gram"][0]
    assert [v["judge"] for v in report["verdicts"]] == [
        "Magenta embedding cosine (higher = closer)",
        "VGG Gram distance (lower = closer)",
    ]
    assert len(report["targets"]) == 8 and "| target | met | figures |" in stdout
    assert len(report["curves"]["defaults, 96 px"][0]) == 3  # emitted at steps 2, 4, 6
    assert sorted(p.name for p in out.iterdir()) == [
        "overview.jpg",
        "tubingen_x_starry_night.png",
        "tubingen_x_starry_night_strength.png",
    ]


def test_large_input_benchmark_smoke(tmp_path):
    """bench_large_input.py --smoke: every case measured in its own process, in the table."""
    shared_path("weights")
    stdout = run_script(
        BENCHMARKS / "bench_large_input.py", "--smoke", "--json", tmp_path / "large.json"
    )
    rows = json.loads((tmp_path / "large.json").read_text())["rows"]
    assert [(row["side"], row["case"]) for row in rows] == [
        (side, case)
        for side in (320,)
        for case in (
            "prepare",
            "prepare-small",
            "predict-small",
            "predict-full",
            "predict-full-content",
            "predict-resized-content",
            "stack-zarr",
        )
    ]
    for row in rows:
        assert row["peak"] >= row["baseline"] > 100 * 2**20 and row["seconds"] > 0
        side = row["side"]
        assert row["input_bytes"] == side * side * 3
        small = row["case"] in ("prepare-small", "predict-small")
        resized = side * 3 // 4 if row["case"] == "predict-resized-content" else side
        assert row["result_shape"] == ([64, 64, 3] if small else [resized, resized, 3])
        # smoke sizes are below predict.STREAM_PIXELS: results in memory, or a zarr store
        assert row["result_kind"] == ("on disk" if row["case"] == "stack-zarr" else "in memory")
        if row["case"] in ("prepare", "predict-full-content", "predict-resized-content"):
            assert row["result_dtype"] == "uint8"  # kept compact; the content's own dtype
    assert "| 320² RGB uint8 (0.29 MB) | predict, full size (tiled 128): float32 result |" in stdout


def test_flicker_benchmark_smoke():
    """bench_flicker.py --smoke: the pan and the nuclei z-stack, both methods in both modes
    measured, the targets checked."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    stdout = run_script(BENCHMARKS / "bench_flicker.py", "--smoke")
    assert "golden_gate.jpg" in stdout and "nuclei z-stack (stardist img3d.tif)" in stdout
    rows = [
        line for line in stdout.splitlines() if line.startswith(("| optimize |", "| predict |"))
    ]
    assert [line.split("|")[1:3] for line in rows] == 2 * [
        [" optimize ", " stack "],
        [" optimize ", " independent "],
        [" predict ", " stack "],
        [" predict ", " independent "],
    ]
    flickers = [float(line.split("|")[3]) for line in rows]
    assert all(value > 0 for value in flickers)  # stylised planes are never identical
    assert stdout.count("flicker <= 0.5x independent") == 4


def test_stack_memory_benchmark_smoke():
    """bench_stack_memory.py --smoke: two stack lengths from zarr stores on disk, peak RSS and
    throughput reported, the target checked."""
    shared_path("weights", "magenta_arbitrary-image-stylization-v1-256_int8_prediction_1.tflite")
    stdout = run_script(BENCHMARKS / "bench_stack_memory.py", "--smoke")
    rows = [line.split("|") for line in stdout.splitlines() if line.startswith(("| 4 |", "| 8 |"))]
    assert [row[1].strip() for row in rows] == ["4", "8"]
    assert all(float(row[4]) > 0 and row[5].strip().endswith("MB") for row in rows)
    assert "peak RSS, 8 planes <= 1.2x 4 planes" in stdout


def test_universal_benchmark_smoke(tmp_path):
    shared_path("weights", "cd_wct_16x_decoder5.pth")
    out = tmp_path / "universal.json"
    stdout = run_script(BENCHMARKS / "bench_universal.py", "--smoke", "--json", out)
    report = json.loads(out.read_text())
    assert [row["size"] for row in report["speed"]] == [64]
    assert report["speed"][0]["seconds"] > 0 and report["speed"][0]["plain"] > 0
    assert {row["output_range"] for row in report["large"]} == {"content", "unit"}
    assert all(row["ratio"] > 0.5 for row in report["large"])  # at least the input itself
    scores = report["quality"]
    assert set(scores) >= {"optimize", "predict", "universal"}
    assert all(0 < value <= 1 for method in scores.values() for value in method["style"])
    assert "| universal |" in stdout


def test_regions_benchmark_smoke(tmp_path):
    """bench_regions.py --smoke: every method timed with and without regions, each band
    scored, the kept band close to the content."""
    shared_path("weights", "cd_wct_16x_decoder5.pth")
    out = tmp_path / "regions.json"
    stdout = run_script(BENCHMARKS / "bench_regions.py", "--smoke", "--json", out)
    rows = json.loads(out.read_text())["rows"]
    assert [row["method"] for row in rows] == ["optimize", "predict", "universal"]
    for row in rows:
        assert row["plain_s"] > 0 and row["regions_s"] > 0
        assert 0 < row["styled 1 style"] <= 1 and 0 < row["styled 2 style"] <= 1
        assert row["kept_max_diff"] < 0.02
    assert "| universal |" in stdout


def test_paper_figures_smoke(tmp_path):
    """paper_figures.py --smoke: Fig. 3's 20 cells and Fig. 1's 10, each timed."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    out = tmp_path / "figures.json"
    stdout = run_script(BENCHMARKS / "paper_figures.py", "--smoke", "--json", out)
    report = json.loads(out.read_text())
    assert len(report["fig3"]["per_cell"]) == 5 and len(report["fig3"]["per_cell"][0]) == 4
    assert all(s > 0 for row in report["fig3"]["per_cell"] for s in row)
    assert len(report["fig1"]["content_per_cell"][0]) == 5
    assert "Fig. 3: 20 cells" in stdout


def test_time_quality_benchmark_smoke(tmp_path):
    """bench_time_quality.py --smoke: a curve per method and start, the default run at two sizes
    next to the plain implementation, the targets table and the plot."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    plot = tmp_path / "time_quality_smoke.png"  # not into the source tree
    stdout = run_script(BENCHMARKS / "bench_time_quality.py", "--smoke", "--plot", plot)
    for row in (
        "predict",
        "universal",
        "optimize from predict (the default)",
        "optimize from content, full size",
        "plain reference from content, full size",
    ):
        assert f"### {row}\n" in stdout, stdout
    defaults = re.findall(
        r"^\| (\d+) \| (\d+\.\d+) \| (\d\.\d+) \(\d\.\d+\) \| (\d\.\d+) \| "
        r"(\d\.\d+) \|$",
        stdout,
        flags=re.MULTILINE,
    )
    assert [row[0] for row in defaults] == ["96", "64"], stdout
    for _, seconds, ssim, style, gram in defaults:
        assert float(seconds) > 0 and 0 < float(ssim) <= 1 and 0 < float(style) <= 1
        assert float(gram) > 0
    # the steps alone from one start image: napari-nst float32 and auto next to the plain's
    alone = re.findall(
        r"^\| (\d+) \| (\d+\.\d+) \| (\d+\.\d+) \| (\d+\.\d+)x \| (\d+\.\d+) \| "
        r"(\d+\.\d+)x \|$",
        stdout,
        flags=re.MULTILINE,
    )
    assert [row[0] for row in alone] == ["96", "64"], stdout

    def consistent(ratio, ours, plain):  # the ratio of the unrounded seconds, shown to 0.01
        a, b = float(ours), float(plain)
        return (
            (a - 0.005) / (b + 0.005) - 0.005
            <= float(ratio)
            <= (a + 0.005) / max(b - 0.005, 1e-3) + 0.005
        )

    for _, float32, plain, ratio32, auto, ratio_auto in alone:
        assert float(float32) > 0 and float(plain) > 0 and float(auto) > 0
        assert consistent(ratio32, float32, plain) and consistent(ratio_auto, auto, plain)
    assert stdout.count("| yes |") + stdout.count("| NO |") == 5
    assert plot.stat().st_size > 10_000
