"""The ``napari-nst`` command: round trips through PNG, JPEG and 16-bit TIFF, exit codes, output
locations checked before the run, Ctrl-C (real SIGINTs to a subprocess), TIFF stacks, ``gui``
without a display."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nst.cli import main
from napari_nst.cli.gui import display_problem
from napari_nst.cli.progress import save_intervals
from napari_nst.io import read_image
from tests.helpers import shared_image, shared_path, skip_or_fail

# the CLI's mechanics from the content (the default predict start needs Magenta's weights)
QUICK = [
    "--size",
    "32",
    "--steps",
    "3",
    "--device",
    "cpu",
    "-q",
    "--no-coarse-to-fine",
    "--init",
    "content",
    "--min-working-size",
    "32",
]


def run_cli(argv) -> int:
    """Exit status of ``napari-nst argv`` (argparse's own errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def images(tmp_path):
    content = tmp_path / "content.png"
    style = tmp_path / "style.jpg"
    Image.fromarray(shared_image("tubingen.jpg", 40)).save(content)
    Image.fromarray(shared_image("the_scream.jpg", 40)).save(style)
    return content, style


def test_png_round_trip_with_intermediates(images, vgg_file, tmp_path, capsys, magenta_weights):
    content, style = images
    out = tmp_path / "out.png"
    code = main(
        [
            "stylize",
            str(content),
            str(style),
            "-o",
            str(out),
            "--vgg-weights",
            str(vgg_file),
            "--size",
            "32",
            "--steps",
            "4",
            "--save-every",
            "2",
            "--device",
            "cpu",
            "--no-coarse-to-fine",
            "--min-working-size",
            "32",
        ]
    )
    assert code == 0
    result = np.asarray(Image.open(out))
    assert result.shape == (24, 32, 3) and result.dtype == np.uint8
    assert (tmp_path / "out_step0002.png").is_file()
    err = capsys.readouterr().err
    assert "step 2/4" in err and "step 4/4" in err and "total loss" in err


def test_16bit_tiff_in_and_out(images, vgg_file, tmp_path):
    content, style = images
    gray16 = (np.asarray(Image.open(content).convert("L")).astype(np.uint16) * 257)[
        :, :
    ] // 4 + 1000
    tif = tmp_path / "gray16.tif"
    tifffile.imwrite(tif, gray16)
    out = tmp_path / "out.tif"
    assert (
        main(
            [
                "stylize",
                str(tif),
                str(style),
                "-o",
                str(out),
                "--vgg-weights",
                str(vgg_file),
                *QUICK,
            ]
        )
        == 0
    )
    result = tifffile.imread(out)
    assert result.dtype == np.uint16 and result.ndim == 2  # grayscale in, grayscale 16-bit out
    assert result.max() > 255  # really uses the 16-bit range
    rgb16 = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb16, (np.asarray(Image.open(content)).astype(np.uint16) * 257))
    out8 = tmp_path / "out8.jpg"
    assert (
        main(
            [
                "stylize",
                str(rgb16),
                str(style),
                "-o",
                str(out8),
                "--vgg-weights",
                str(vgg_file),
                *QUICK,
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(out8)).shape == (24, 32, 3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "steps=0 is out of range"),
        (["--device", "cuda:7"], "cuda:7"),
        (["--optimizer", "sgd"], "invalid choice"),
        (["--bit-depth", "16"], "16-bit output needs a .tif"),
    ],
)
def test_bad_arguments_exit_2(images, tmp_path, capsys, args, message):
    content, style = images
    assert run_cli(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_input_files_exit_2(images, tmp_path, capsys):
    content, style = images
    assert (
        main(["stylize", str(tmp_path / "missing.png"), str(style), "-o", str(tmp_path / "o.png")])
        == 2
    )
    assert "no such file" in capsys.readouterr().err
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiny)
    assert main(["stylize", str(tiny), str(style), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and len(err.strip().splitlines()) == 1
    assert main(["stylize", str(content), str(style), "-o", str(tmp_path / "o.bmp")]) == 2
    capsys.readouterr()
    assert main(["stylize", str(tmp_path), str(style), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    # a folder is a stack of its images (napari-nst stylize --stack): it needs a stack's output
    assert f"{tmp_path} is a folder, read as a stack of its images" in err
    assert "a .zarr store or a .tif file" in err and len(err.strip().splitlines()) == 1


def test_bad_weights_file_exits_2(images, tmp_path, capsys):
    """A weights file the user names is input: corrupt or missing, it is exit 2 like a bad image."""
    content, style = images
    corrupt = tmp_path / "vgg.pth"
    corrupt.write_bytes(b"\0" * 100)
    out = tmp_path / "o.png"
    assert (
        main(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(out),
                "--vgg-weights",
                str(corrupt),
                *QUICK,
            ]
        )
        == 2
    )
    assert "cannot read weights" in capsys.readouterr().err
    assert (
        main(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(out),
                "--vgg-weights",
                str(tmp_path / "missing.pth"),
                *QUICK,
            ]
        )
        == 2
    )
    assert "missing.pth does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_failure_during_run_exits_1(images, tmp_path, capsys, mirror):
    """Weights that the lookup cannot download (an empty mirror) are a failure, not bad input."""
    content, style = images
    assert (
        main(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(tmp_path / "o.png"),
                "--network",
                "vgg19-distilled",
                *QUICK,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "could not download" in err and mirror.url in err


def test_console_script_runs_on_shared_images(vgg_file, tmp_path, magenta_weights):
    """The installed command, as the README uses it, on the full-size shared images."""
    out = tmp_path / "out.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_nst.cli",
            "stylize",
            str(shared_path("images", "tubingen.jpg")),
            str(shared_path("images", "starry_night.jpg")),
            "-o",
            str(out),
            "--size",
            "64",
            "--steps",
            "20",
            "--min-working-size",
            "64",
            "--vgg-weights",
            str(vgg_file),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (64, 48)
    losses = [
        float(line.split("total=")[1].split()[0])
        for line in proc.stderr.splitlines()
        if line.startswith("step ")
    ]
    assert len(losses) >= 2 and losses[-1] < losses[0]


def test_network_option(images, tmp_path, capsys, magenta_weights):
    """--network vgg19-distilled runs on the distilled weights found in $NAPARI_NST_WEIGHTS_DIR."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    _, style = images
    content = tmp_path / "content64.png"
    Image.fromarray(shared_image("tubingen.jpg", 64)).save(content)
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(out),
                "--network",
                "vgg19-distilled",
                "--size",
                "64",
                "--steps",
                "2",
                "--device",
                "cpu",
                "--no-coarse-to-fine",
                "--min-working-size",
                "64",
            ]
        )
        == 0
    )
    assert np.asarray(Image.open(out)).shape == (48, 64, 3)
    assert run_cli(["stylize", str(content), str(style), "-o", str(out), "--network", "vgg16"]) == 2
    assert "invalid choice: 'vgg16'" in capsys.readouterr().err


# --- options derived from the Settings field metadata ---------------------------------------------


def _stylize_options() -> dict:
    """The ``stylize`` parser's options by destination."""
    import argparse

    from napari_nst.cli.parser import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in commands.choices["stylize"]._actions}


def test_options_come_from_the_settings_metadata():
    """One option per CLI field, named after it, with the Literal's choices and a help that says
    which method reads it; the fields marked cli=False have none."""
    import dataclasses

    from napari_nst.settings import Settings, field_choices, methods_note

    options = _stylize_options()
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        if f.metadata["cli"] is None:
            assert f.name == "emit_every" or f.name not in options, f.name  # --save-every sets it
            continue
        action = options[f.name]
        assert flag in action.option_strings
        assert action.help.startswith(f.metadata["help"])
        assert tuple(action.choices or ()) == (field_choices(f) or ())
        note = methods_note(f)
        assert (f"({note}; default: " in action.help) == bool(note), f.name
    assert options["init"].choices == ("content", "noise", "predict", "universal")
    assert "(predict only; default: 1)" in options["style_crops"].help
    assert "(optimize only; default: 20)" in options["steps"].help
    assert "only" not in options["size"].help
    assert options["vgg_weights"].metavar == "PATH"  # argparse options from the metadata


#: API settings that the CLI sets through options of its own: image files and --save-every.
_SET_BY_OTHER_OPTIONS = {
    "init_image": "--init-image",
    "regions": "--regions",
    "emit_every": "--save-every",
}


def test_every_api_setting_is_reachable_from_the_cli(tmp_path):
    """Each Settings field has an option (or one of _SET_BY_OTHER_OPTIONS); sequences are given
    as comma lists and arrive in Settings as the API's tuples."""
    import dataclasses

    from napari_nst.cli.options import settings_options
    from napari_nst.cli.parser import build_parser
    from napari_nst.settings import Settings

    options = _stylize_options()
    flags = {flag for action in options.values() for flag in action.option_strings}
    for f in dataclasses.fields(Settings):
        assert f.name in options or _SET_BY_OTHER_OPTIONS.get(f.name) in flags, f.name
    args = build_parser().parse_args(
        [
            "stylize",
            "c.png",
            "s.png",
            "-o",
            str(tmp_path / "o.png"),
            "--style-layers",
            "conv1_1,conv3_1",
            "--content-layers",
            "conv5_2",
            "--style-layer-weights",
            "1,3",
            "--style-blend",
            "2,1",
            "--content-window",
            "300,3352",
            "--style-window",
            "0,1",
            "--levels",
            "3,2,1",
            "--predictor-weights",
            "p.tflite",
        ]
    )
    settings = Settings(**settings_options(args))
    assert settings.style_layers == ("conv1_1", "conv3_1")
    assert settings.content_layers == ("conv5_2",)
    assert settings.style_layer_weights == (1.0, 3.0) and settings.style_blend == (2.0, 1.0)
    assert settings.content_window == (300.0, 3352.0) and settings.style_window == (0.0, 1.0)
    assert settings.levels == (3, 2, 1) and settings.predictor_weights == "p.tflite"
    empty = build_parser().parse_args(
        ["stylize", "c.png", "s.png", "-o", "o.png", "--content-layers", ""]
    )
    assert Settings(**settings_options(empty)).content_layers == ()  # style only


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--style-layer-weights", "1,2"],
            "style_layer_weights needs one weight per entry of style_layers (5), got 2",
        ),
        (["--style-blend", "a,b"], "give numbers separated by commas"),
        (["--style-layers", "conv9_1"], "unknown VGG-19 layer(s) 'conv9_1'"),
        (["--content-window", "5,1"], "content_window must be (low, high) with high > low"),
    ],
)
def test_sequence_options_are_checked(images, tmp_path, capsys, args, message):
    content, style = images
    code = run_cli(["stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_init_image_and_same_style_as_content(images, vgg_file, tmp_path, capsys):
    """--init-image starts the run from a file (a different start gives a different result);
    a style that is the content file gets a warning."""
    content, style = images
    results = []
    for extra in ([], ["--init-image", str(style)]):
        out = tmp_path / f"out{len(results)}.png"
        assert (
            main(
                [
                    "stylize",
                    str(content),
                    str(content),
                    "-o",
                    str(out),
                    "--vgg-weights",
                    str(vgg_file),
                    *QUICK,
                    *extra,
                ]
            )
            == 0
        )
        results.append(np.asarray(Image.open(out)).astype(int))
    err = capsys.readouterr().err
    assert "warning: the style" in err and "is the content file itself" in err
    assert np.abs(results[0] - results[1]).mean() > 5  # started from the scream, not the content


def test_loss_summary_per_scale():
    """One scale: first -> last; coarse-to-fine: per scale, since a finer scale's loss measures
    more detail (it may start above the coarser scale's end without the run getting worse)."""
    from napari_nst.cli.progress import loss_summary

    one = {(24, 32): [{"total": 2.0}, {"total": 0.5}]}
    assert loss_summary(one) == "; total loss 2 -> 0.5"
    assert loss_summary({(24, 32): [{"total": 2.0}]}) == ""
    scales = {
        (12, 16): [{"total": 3.0}, {"total": 0.3}],
        (24, 32): [{"total": 0.4}, {"total": 0.35}],
    }
    text = loss_summary(scales)
    assert "per scale" in text and "16x12 px 3 -> 0.3" in text and "32x24 px 0.4 -> 0.35" in text


@pytest.mark.shared
def test_predict_counts_one_step(images, tmp_path, capsys, magenta_weights):
    """The progress bar's total is the run's step count from the settings: 1 for predict."""
    content, style = images
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(out),
                "--method",
                "predict",
                "--size",
                "32",
                "--device",
                "cpu",
                "--steps",
                "50",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "1/1" in err and "/50" not in err
    assert out.is_file()


@pytest.mark.shared
def test_universal_with_its_levels(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(shared_path("weights")))
    content, style = images
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(out),
                "--method",
                "universal",
                "--levels",
                "3,2,1",
                "--style-strength",
                "0.6",
                "--size",
                "48",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "1/1" in capsys.readouterr().err
    assert np.asarray(Image.open(out)).shape == (36, 48, 3)
    assert (
        run_cli(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(out),
                "--method",
                "universal",
                "--levels",
                "6,2",
            ]
        )
        == 2
    )
    assert "levels must be distinct levels from 1 to 5" in capsys.readouterr().err


@pytest.mark.shared
def test_regions_with_a_style_per_label(images, tmp_path, capsys, magenta_weights):
    """--regions labels.tif --style 1=a --style 2=b: each half its style, label 0 kept."""
    content, style = images
    other = tmp_path / "starry.jpg"
    Image.fromarray(shared_image("starry_night.jpg", 40)).save(other)
    labels = np.zeros((30, 40), np.uint16)
    labels[10:, :20], labels[10:, 20:] = 1, 2
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "stylize",
                str(content),
                "--regions",
                str(tmp_path / "labels.tif"),
                "--style",
                f"1={style}",
                "--style",
                f"2={other}",
                "-o",
                str(out),
                "--method",
                "predict",
                "--size",
                "40",
                "--region-edge",
                "0",
            ]
        )
        == 0
    )
    result = np.asarray(Image.open(out)).astype(int)
    original = np.asarray(Image.open(content)).astype(int)
    assert np.abs(result[:8] - original[:8]).max() <= 2  # label 0 kept
    assert np.abs(result[14:, :16] - original[14:, :16]).mean() > 10
    capsys.readouterr()
    assert run_cli(["stylize", str(content), "--style", f"1={style}", "-o", str(out)]) == 2
    assert "add --regions LABELS" in capsys.readouterr().err
    assert run_cli(["stylize", str(content), "-o", str(out)]) == 2
    assert "no style given" in capsys.readouterr().err


# --- the output location, checked before any work ------------------------------------------------


@pytest.mark.parametrize(
    "where, message",
    [
        ("folder", "is a folder; name an output file"),
        ("under_file", "is a file, not a folder"),
    ],
)
def test_unwritable_output_fails_before_any_work(images, tmp_path, capsys, where, message):
    """Exit 2 with one line before the run: the weights named here do not even exist, so any
    work started would end in a different error."""
    content, style = images
    (tmp_path / "a_file").write_text("not a folder")
    out = {"folder": tmp_path, "under_file": tmp_path / "a_file" / "sub" / "out.png"}[where]
    assert (
        main(
            [
                "stylize",
                str(content),
                str(style),
                "-o",
                str(out),
                "--vgg-weights",
                str(tmp_path / "missing.pth"),
                *QUICK,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


#: The CLI in a subprocess that gives up root for ``nobody`` once its modules are imported (the
#: interpreter may live where nobody cannot read, e.g. under /root).
_AS_NOBODY = """
import os, pwd, sys
import napari_nst.cli, napari_nst.cli.parser, napari_nst.io
napari_nst.cli.parser.build_parser().parse_args(sys.argv[1:])  # argparse's lazy imports, as root too
if os.geteuid() == 0:
    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
sys.exit(napari_nst.cli.main(sys.argv[1:]))
"""


def test_output_folder_without_permission_fails_before_any_work(images):
    """A folder the user may not write in: exit 2 at once. Root may write anywhere, so as root the
    command gives up root for ``nobody`` first."""
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("nobody")
        except (ImportError, KeyError):
            skip_or_fail("running as root and there is no user 'nobody' to run the CLI as")
    base = Path(tempfile.mkdtemp(prefix="napari-nst-perm-"))  # /tmp: reachable by nobody
    locked = base / "locked"
    try:
        base.chmod(0o755)
        for path in images:
            shutil.copy(path, base / path.name)
        locked.mkdir()
        locked.chmod(0o555)
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                _AS_NOBODY,
                "stylize",
                images[0].name,
                images[1].name,
                "-o",
                str(locked / "new" / "out.png"),
                "--vgg-weights",
                "missing.pth",
                *QUICK,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=base,
        )
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and f"no permission to write in {locked}" in err[0]
    finally:
        if locked.exists():
            locked.chmod(0o755)
        shutil.rmtree(base)


# --- the CLI as a user runs it: a subprocess, real SIGINTs -------------------------------------


class CLIProcess:
    """``python -m napari_nst.cli ARGV`` with its stderr read line by line in a thread (tqdm's
    carriage-return updates count as lines: text mode reads ``\\r`` as a line end)."""

    def __init__(self, argv, *, python_flags=(), env=None):
        # A test run started in the background (``cmd &``) ignores SIGINT, and a child inherits
        # an ignored signal: the CLI would not see these tests' Ctrl-C. A handler is reset to
        # the default in the child, so one is set while it starts.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *python_flags, "-m", "napari_nst.cli", *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _next(self, deadline):
        try:
            line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("no output in time; so far:\n" + "\n".join(self.lines)) from None
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, predicate, timeout=300) -> str:
        """The first stderr line for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while (line := self._next(deadline)) is not None:
            if predicate(line):
                return line
        raise AssertionError("ended before the expected line:\n" + "\n".join(self.lines))

    def finish(self, timeout=300) -> int:
        """The exit status, once every stderr line is read."""
        deadline = time.monotonic() + timeout
        while self._next(deadline) is not None:
            pass
        return self.proc.wait(timeout=max(1, deadline - time.monotonic()))

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, as a terminal sends it; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def cli_process():
    started = []

    def start(*argv, **kwargs) -> CLIProcess:
        started.append(CLIProcess([str(a) for a in argv], **kwargs))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def test_ctrl_c_writes_the_latest_image(images, vgg_file, tmp_path, cli_process, magenta_weights):
    """SIGINT at step 3 or so of 2000: the first loss line and intermediate would only come at
    step 200, and the first kept image at step 10, yet the image of the step the run was at is
    written (its snapshot) and the last line says which."""
    content, style = images
    out = tmp_path / "out.png"
    cli = cli_process(
        "stylize",
        content,
        style,
        "-o",
        out,
        "--vgg-weights",
        vgg_file,
        "--size",
        "32",
        "--steps",
        "2000",
        "--device",
        "cpu",
        "--no-coarse-to-fine",
        "--min-working-size",
        "32",
    )

    def at_step(line):
        match = re.search(r"(\d+)/2000 \[", line)
        return match is not None and int(match.group(1)) >= 3

    cli.wait_for(at_step)
    assert cli.interrupt() == 130
    match = re.fullmatch(
        r"napari-nst: interrupted at step (\d+)/2000; wrote the image of step "
        r"(\d+) to (.+)",
        cli.lines[-1],
    )
    assert match, cli.lines[-3:]
    stopped, kept = int(match.group(1)), int(match.group(2))
    assert Path(match.group(3)) == out
    assert kept == stopped and 3 <= stopped < 200
    assert np.asarray(Image.open(out)).shape == (24, 32, 3)
    assert not any(line.startswith("Traceback") for line in cli.lines)


def test_ctrl_c_during_start_up_prints_one_line(images, vgg_file, tmp_path, cli_process):
    """SIGINT while torch is being imported (``-X importtime`` reports each import as it
    finishes): one line and exit 130, not a traceback."""
    content, style = images
    out = tmp_path / "out.png"
    cli = cli_process(
        "stylize",
        content,
        style,
        "-o",
        out,
        "--vgg-weights",
        vgg_file,
        *QUICK,
        python_flags=("-X", "importtime"),
    )
    cli.wait_for(
        lambda line: (
            line.startswith("import time:") and line.rsplit("|", 1)[-1].strip().startswith("torch.")
        )
    )
    assert cli.interrupt() == 130
    own = [line for line in cli.lines if not line.startswith("import time:")]
    assert own == ["napari-nst: interrupted during start-up; nothing written"]
    assert not out.exists()


def test_output_that_fails_at_the_end_is_kept_elsewhere(
    images, vgg_file, tmp_path, cli_process, magenta_weights
):
    """The output folder turns into a file during the run: one line names the file in the temp
    folder that holds the result, exit 1."""
    content, style = images
    folder = tmp_path / "results"
    folder.mkdir()
    temp = tmp_path / "tmp"
    temp.mkdir()
    cli = cli_process(
        "stylize",
        content,
        style,
        "-o",
        folder / "out.png",
        "--vgg-weights",
        vgg_file,
        "--size",
        "32",
        "--steps",
        "100",
        "--device",
        "cpu",
        "--no-coarse-to-fine",
        "--min-working-size",
        "32",
        env={**os.environ, "TMPDIR": str(temp)},
    )
    cli.wait_for(lambda line: line.startswith("step 10/100"))
    shutil.rmtree(folder)
    folder.write_text("a file where the output folder was")
    assert cli.finish() == 1
    last = cli.lines[-1]
    assert last.startswith(f"napari-nst: error: cannot write {folder / 'out.png'} ("), cli.lines[
        -3:
    ]
    kept = Path(last.split("; the result is in ")[1])
    assert kept.parent == temp and kept.name.startswith("napari-nst-out-") and kept.suffix == ".png"
    assert np.asarray(Image.open(kept)).shape == (24, 32, 3)


def test_intervals_keep_an_image_every_ten_steps():
    """(keep_every, report_every): images kept about every 10 steps; reports and --save-every
    files on multiples of it."""
    assert save_intervals(300, None) == (10, 30)
    assert save_intervals(2000, None) == (10, 200)
    assert save_intervals(155, None) == (10, 20)
    assert save_intervals(50, None) == (5, 5)
    assert save_intervals(3, None) == (1, 1)
    assert save_intervals(300, 25) == (5, 25)
    assert save_intervals(300, 20) == (10, 20)
    assert save_intervals(300, 13) == (13, 13)  # a prime: no extra emissions rather than every step
    assert save_intervals(300, 2) == (2, 2)


# --- TIFF stacks ----------------------------------------------------------------------------------


def test_tiff_stack_needs_a_plane(images, vgg_file, tmp_path, capsys):
    """A (Z, H, W) stack: the error says how to pick a plane; --plane 3 stylizes plane 3 (its
    intensities, 3000 above plane 0's per plane, come back in the 16-bit output)."""
    _, style = images
    gray = np.asarray(Image.open(images[0]).convert("L")).astype(np.uint16) * 4
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([gray + 3000 * z for z in range(12)]))
    out = tmp_path / "out.tif"
    base = [
        "stylize",
        str(stack),
        str(style),
        "-o",
        str(out),
        "--vgg-weights",
        str(vgg_file),
        *QUICK,
    ]
    assert run_cli(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a stack of 12 planes" in err[0] and "--plane N, N = 0..11" in err[0]
    assert run_cli([*base, "--plane", "12"]) == 2
    assert "plane 12 is out of range" in capsys.readouterr().err
    assert run_cli([*base, "--plane", "3"]) == 0
    result = tifffile.imread(out)
    assert result.dtype == np.uint16 and result.shape == (24, 32)
    assert 9000 <= result.min() and result.max() <= 9000 + int(gray.max())


def test_read_image_planes(tmp_path):
    """One index counts over all leading axes; several index them one by one; planar RGB (samples
    first in the file) is one image, channels last."""
    data = np.arange(2 * 5 * 20 * 24, dtype=np.uint16).reshape(2, 5, 20, 24)
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, data)
    np.testing.assert_array_equal(read_image(path, (7,)), data[1, 2])
    np.testing.assert_array_equal(read_image(path, (1, 2)), data[1, 2])
    with pytest.raises(ValueError, match="one index per leading axis, e.g. --plane 0,3"):
        read_image(path)
    with pytest.raises(ValueError, match="does not fit"):
        read_image(path, (0, 5))
    rgb = np.random.default_rng(0).integers(0, 255, (3, 20, 24), dtype=np.uint8)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, rgb, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(planar, (7,)), np.moveaxis(rgb, 0, -1))


# --- napari-nst gui --------------------------------------------------------------------------------


def test_gui_without_a_display_says_so(tmp_path):
    """No DISPLAY, no WAYLAND_DISPLAY, no headless Qt platform: one line and exit 1 instead of
    Qt aborting the process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "napari_nst.cli", "gui"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "napari-nst: error: napari-nst gui needs a display: run it on a desktop, or under "
        "xvfb-run (no DISPLAY or WAYLAND_DISPLAY is set)"
    ]


def test_display_problem_follows_qt_platform():
    assert display_problem({}, "linux") is not None
    assert display_problem({"DISPLAY": ":99"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "minimal:enable_fonts"}, "linux") is None
    assert "DISPLAY" in display_problem({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "w"}, "linux")
    assert display_problem({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}, "linux") is None
    assert display_problem({}, "darwin") is None and display_problem({}, "win32") is None


def test_gui_with_a_missing_image_exits_2(tmp_path):
    """Image files are read before napari starts: a bad one is one line, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "napari_nst.cli", "gui", str(tmp_path / "no.png")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"napari-nst: error: {tmp_path / 'no.png'}: no such file"
    ]


def test_emit_cost_benchmark_smoke():
    """benchmarks/bench_emit_cost.py (the figures behind KEEP_EVERY) in smoke mode: a row per
    network and size, with a positive step time."""
    shared_path("images", "tubingen.jpg")
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_emit_cost.py",
            "--sizes",
            "64",
            "--steps",
            "6",
            "--every",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = [
        line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| vgg19")
    ]
    assert rows and all(row[1].strip() == "64" and float(row[2]) > 0 for row in rows)
