"""Every Python block of the README runs as written: the API blocks in a folder holding the
"photo.jpg" and "painting.jpg" they read, the console blocks in a real napari viewer (as the
napari console would, with ``viewer`` defined)."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest

from napari_nst.settings import Settings
from tests.helpers import REPO, magenta_weights_dir, shared_path, skip_or_fail

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
API_BLOCKS = [block for block in BLOCKS if "viewer" not in block]
CONSOLE_BLOCKS = [block for block in BLOCKS if "viewer" in block]
pytestmark = pytest.mark.shared


def test_the_readme_has_the_blocks_these_tests_expect():
    assert len(API_BLOCKS) == 5 and len(CONSOLE_BLOCKS) == 2


@pytest.fixture
def readme_folder(tmp_path, monkeypatch):
    """The README's image files (shared photographs) in the current directory, and the weights
    where the README's reader would have them after the first download."""
    shutil.copy(shared_path("images", "tubingen.jpg"), tmp_path / "photo.jpg")
    shutil.copy(shared_path("images", "starry_night.jpg"), tmp_path / "painting.jpg")
    shutil.copy(shared_path("images", "the_scream.jpg"), tmp_path / "scream.jpg")
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    monkeypatch.setenv("NAPARI_NST_WEIGHTS_DIR", str(magenta_weights_dir()))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_api_blocks_run_as_written(readme_folder, capsys):
    namespace: dict = {}
    for block in API_BLOCKS:
        exec(compile(block, "README.md", "exec"), namespace)
    content = namespace["content"]
    assert namespace["result"].shape[2] == 3 and max(namespace["result"].shape[:2]) == 256
    assert max(namespace["fast"].shape[:2]) == 512 and namespace["fast"].dtype == np.float32
    assert (
        namespace["fast"].shape[0] / namespace["fast"].shape[1]
        == content.shape[0] / content.shape[1]
    )
    assert namespace["half"].shape == namespace["result"].shape
    assert max(namespace["trial"].shape[:2]) == 128
    printed = [line for line in capsys.readouterr().out.split("\n") if line]
    assert [line.split()[0] for line in printed[:2]] == ["25", "50"]
    # the stack block: six planes, each as stylize gives it, the same locally, in the store and
    # on the cluster
    frames = namespace["frames"]
    assert frames.shape[0] == 6 and frames.shape[3] == 3 and max(frames.shape[1:3]) == 256
    assert sorted(line.split(" done")[0] for line in printed[2:]) == [
        f"plane ({i},)" for i in range(6)
    ]
    np.testing.assert_array_equal(np.asarray(namespace["stored"]), frames)
    # dask's worker processes run torch on one thread each (this process on every core), and
    # convolutions sum in another order: equal to float32 rounding, not bit for bit
    np.testing.assert_allclose(namespace["clustered"], frames, atol=1e-5)
    assert (readme_folder / "frames.zarr").is_dir()
    # regions: the middle rows (unlabelled) are the content's own
    two = namespace["two"]
    rows = two.shape[0]  # the result's rows (the labels are the content's, resampled)
    middle = slice(rows // 3 + 8, rows * 3 // 4 - 8)
    from napari_nst.engine.images import prepare_image

    small = prepare_image(content, size=512).rgb
    assert two.shape == small.shape and np.abs(two[middle] - small[middle]).max() < 1e-3
    assert np.abs(namespace["both"][middle] - small[middle]).max() < 1e-3
    # explore: the sweeps' shapes and labels
    assert namespace["fig3"].images.shape[:2] == (5, 4) and namespace["fig3"].done.all()
    assert namespace["sheet"].dtype == np.uint8
    assert namespace["methods"].labels == [
        ["method=optimize", "method=predict", "method=universal"]
    ]
    assert namespace["fig1"].shape == (1, 3) and namespace["textures"].shape == (1, 5)


@pytest.mark.gui
def test_console_blocks_run_as_written(readme_folder, qtbot, make_napari_viewer):
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        skip_or_fail("no display: napari tests need Xvfb")
    viewer = make_napari_viewer()
    namespace = {"viewer": viewer}
    exec(compile(CONSOLE_BLOCKS[0], "README.md", "exec"), namespace)
    worker, batch = namespace["worker"], namespace["batch"]
    finished = []  # connected before the event loop runs again, so no finish is missed
    for running in (worker, batch):
        running.finished.connect(lambda: finished.append(True))
    qtbot.waitUntil(lambda: len(finished) == 2, timeout=120_000)
    (run,) = worker.jobs[0].results  # 20 iterates (one every 5 steps), folded into one layer
    assert (
        run.name
        == ("astronaut × starry_night · optimize · network vgg19-distilled · steps 100 · size 256")
        and run.data.shape[0] == 20
    )
    assert [job.results[-1].name for job in batch.jobs] == [
        "astronaut × starry_night · predict",
        "astronaut × astronaut · predict",
    ]
    finals = [job.results[-1] for job in worker.jobs + batch.jobs]
    assert viewer.layers[-1] in finals and viewer.layers.selection.active is viewer.layers[-1]

    exec(compile(CONSOLE_BLOCKS[1], "README.md", "exec"), namespace)
    widget = namespace["widget"]
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.status.value.startswith("done")
    from_widget = [
        layer.metadata["napari_nst"]
        for layer in viewer.layers
        if layer.metadata.get("napari_nst", {}).get("settings", {}).get("style_layers")
        == ["conv1_1", "conv2_1", "conv3_1"]
    ]
    every = Settings().emit_every
    (meta,) = from_widget  # its iterates, folded into one layer
    assert [record["step"] for record in meta["iterates"]] == list(range(every, 101, every))
    assert meta["settings"]["network"] == "vgg19-distilled"
    assert viewer.grid.enabled  # the comparison grid is on


def test_how_it_works_names_every_module():
    """The README's map of the code stays the tree's: every module is named in "How it works"."""
    section = (
        (REPO / "README.md")
        .read_text(encoding="utf-8")
        .split("## How it works")[1]
        .split("\n## ")[0]
    )
    modules = sorted(
        path.name
        for path in (REPO / "src" / "napari_nst").rglob("*.py")
        if path.name != "__init__.py"
    )
    assert [name for name in modules if f"`{name}`" not in section] == []
