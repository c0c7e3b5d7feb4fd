"""The plugin in a real napari viewer (under Xvfb): manifest, widget, runs, Stop, errors, stacks,
batch and comparison grid, sample data and the console API. Seeded random VGG-19, no downloads."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest

from napari_nst.settings import Settings
from tests.helpers import gui_session, shared_image, shared_path

pytestmark = pytest.mark.gui
QUICK = dict(
    size=32,
    steps=3,
    emit_every=1,
    device="cpu",
    coarse_to_fine=False,
    min_working_size=32,
    init="content",
)  # random VGG weights: no predict start


@pytest.fixture(autouse=True)
def _display_and_config(tmp_path, monkeypatch):
    gui_session(tmp_path, monkeypatch)


@pytest.fixture
def viewer(request):
    # skip for missing ../shared before a viewer exists: napari's viewer fixture fails its own
    # teardown for a test that never ran
    shared_path("images")
    viewer = request.getfixturevalue("make_napari_viewer")()
    viewer.add_image(shared_image("tubingen.jpg", 40), name="content", rgb=True)
    viewer.add_image(shared_image("starry_night.jpg", 40), name="style", rgb=True)
    viewer.add_image(shared_image("the_scream.jpg", 40), name="scream", rgb=True)
    return viewer


@pytest.fixture
def widget(viewer, random_vgg):
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    widget.settings_overrides["vgg_weights"] = random_vgg
    for name, value in {**QUICK, "method": "optimize", "network": "vgg19"}.items():
        widget.controls[name].value = value
    widget.iterates.value = "keep"  # the mechanics of iterate layers; fold: its own tests
    return widget


@pytest.fixture
def notifications():
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def _wait_idle(qtbot, widget, timeout=120_000):
    """Wait until the widget's run has finished (robust to runs that end before we look)."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def _results(viewer):
    return [layer for layer in viewer.layers if "napari_nst" in layer.metadata]


def _count_emitted(worker) -> list:
    """A list that grows in the worker's thread as the worker yields, whatever the main thread
    is doing."""
    from qtpy.QtCore import Qt

    emitted: list = []
    worker.yielded.connect(lambda _: emitted.append(None), Qt.ConnectionType.DirectConnection)
    return emitted


# A long run for closing or stopping mid-run. Its steps must take the worker longer than the main
# thread needs per step: napari's progress bar processes Qt events on every yield, so a growing
# backlog of yields nests their handlers until Python's recursion limit.
LONG = {**QUICK, "size": 64, "steps": 5000, "emit_every": 5}


def _let_results_queue_up(emitted, more=6, timeout=60.0):
    """Hold the main thread until the worker has yielded ``more`` further steps (an emitted one
    among them): they wait in Qt's queue and reach the main thread after what the test does next."""
    target, deadline = len(emitted) + more, time.monotonic() + timeout
    while len(emitted) < target:
        assert time.monotonic() < deadline, "the worker did not go on"
        time.sleep(0.01)


def test_manifest_is_found_and_valid():
    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-nst")
    assert manifest.name == "napari-nst"
    assert [w.display_name for w in manifest.contributions.widgets] == ["Style transfer"]
    assert manifest.contributions.sample_data[0].key == "astronaut_painting"
    assert "napari/layers/filter" in manifest.contributions.menus
    manifest.validate_imports()


def test_pickers_follow_layers(viewer, widget):
    assert [layer.name for layer in widget.content.choices] == ["content", "style", "scream"]
    assert [layer.name for layer in widget.content.value] == ["content"]
    assert [layer.name for layer in widget.style.value] == ["style"]
    viewer.add_points(np.zeros((1, 2)), name="points")  # not an Image layer: not listed
    viewer.layers.remove("scream")
    viewer.layers["style"].name = "starry"
    choices = [c.name for c in widget.content.choices]
    assert choices == ["content", "starry"]


def test_default_choices_skip_results(qtbot, viewer, random_vgg):
    """A result from an earlier run (here one from the console) is never a default choice, even
    first in the layer list."""
    from napari_nst import run_in_viewer

    worker = run_in_viewer(viewer, "content", "style", vgg_weights=random_vgg, **QUICK, start=False)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    result = _results(viewer)[-1]
    assert (
        result.name.startswith("content × style · optimize")
        and "iterates" in result.metadata["napari_nst"]
    )  # folded
    viewer.layers.move(viewer.layers.index(result), 0)
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    assert [layer.name for layer in widget.content.value] == ["content"]
    assert [layer.name for layer in widget.style.value] == ["style"]


def test_run_to_completion_adds_named_layers_with_metadata(qtbot, viewer, widget):
    content_before = viewer.layers["content"].data.copy()
    assert widget.run() is not None
    assert not widget.run_button.enabled and widget.stop_button.enabled
    _wait_idle(qtbot, widget)
    results = _results(viewer)
    run = (
        "content × style · optimize · network vgg19 · steps 3 · size 32 · init content · "
        "working floor 32"
    )  # what differs from the widget's defaults
    assert [layer.name for layer in results] == [f"{run} · step {i}" for i in (1, 2, 3)]
    final = results[-1]
    meta = final.metadata["napari_nst"]
    assert meta["step"] == 3 and meta["settings"]["size"] == 32 and meta["seed"] == 0
    assert meta["device"] == "cpu" and meta["weights"].startswith("module:")
    assert meta["method"] == "optimize" and meta["precision"] in ("float32", "bfloat16")
    assert set(meta["losses"]) == {"content", "style", "tv", "total"}
    assert "torch" in meta["versions"] and "napari-nst" in meta["versions"]
    # overlays the content (same extent in world coordinates) and is seen: the newest result is
    # the top-most visible layer, above the unrelated "scream", and the selected one
    content = viewer.layers["content"]
    assert np.allclose(
        np.array(final.data.shape[:2]) * final.scale, np.array(content.data.shape[:2])
    )
    visible = [layer.name for layer in viewer.layers if layer.visible]
    assert visible[-1] == f"{run} · step 3" and viewer.layers[-1] is final
    assert viewer.layers.selection.active is final and set(viewer.layers.selection) == {final}
    # a second run lands on top too
    widget.run()
    _wait_idle(qtbot, widget)
    assert viewer.layers[-1].name == f"{run} (2) · step 3" and viewer.layers[-1] is not final
    assert viewer.layers.selection.active is viewer.layers[-1]
    assert np.array_equal(content.data, content_before)
    assert widget.run_button.enabled and not widget.stop_button.enabled
    assert widget.status.value.startswith("done")


def test_stop_keeps_layers_and_reenables_run(qtbot, viewer, widget):
    widget.controls["steps"].value = 200
    worker = widget.run()
    qtbot.waitUntil(lambda: len(_results(viewer)) >= 2, timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        widget.stop()
    kept = len(_results(viewer))
    assert 2 <= kept < 200
    assert widget.run_button.enabled and widget.status.value == "stopped"


def test_error_notifies_and_resets(qtbot, viewer, widget, notifications, tmp_path):
    corrupt = tmp_path / "vgg19.pth"
    corrupt.write_bytes(b"\0" * 64)
    widget.settings_overrides["vgg_weights"] = str(corrupt)
    assert widget.run() is not None
    _wait_idle(qtbot, widget)
    assert any("cannot read weights" in str(n.message) for n in notifications)
    assert widget.run_button.enabled and widget.worker is None
    assert widget.status.value.startswith("error")


def test_missing_weights_say_what_to_do_and_compare_keeps_the_last_results(
    qtbot, viewer, widget, mirror
):
    """Offline, ImageNet VGG-19 is neither found nor downloaded: the status line starts with what
    to do (it is elided after a few lines, so the advice comes first), and Compare still lays out
    the results of the run before (the failed run has none)."""
    assert widget.run() is not None
    _wait_idle(qtbot, widget)
    assert _results(viewer) and viewer.layers[-1].name.endswith(" · step 3")
    last = viewer.layers[-1]
    widget.settings_overrides.pop("vgg_weights")  # nothing anywhere, and the mirror has no file
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.status.value.startswith(
        "error: weights file not found or not downloaded. "
        "Choose the folder that holds it as 'weights folder'"
    )
    assert "404" in widget.status.tooltip and widget.run_button.enabled
    widget.compare.value = True
    cell = viewer.layers[f"compare: {last.name}"]  # a view of the last run's final image
    assert viewer.canvas.grid.enabled and _cells(viewer, width=3)[(0, 2)][0] == cell
    assert cell.data is last.data


def test_long_error_keeps_the_dock_width(qtbot, viewer, widget, notifications):
    """A 2,000-character message wraps in the status line instead of widening the window; the
    whole text stays in the tooltip and in napari's notification."""
    from qtpy.QtWidgets import QApplication

    viewer.window._qt_window.show()  # a hidden window does not lay itself out
    dock = widget.native.parentWidget()
    QApplication.processEvents()
    width_before, window_before = dock.width(), viewer.window._qt_window.width()
    hint_before = widget.native.minimumSizeHint().width()
    widget.settings_overrides["vgg_weights"] = "/nonexistent/" + "y" * 2000 + ".pth"
    assert widget.run() is not None
    _wait_idle(qtbot, widget)
    QApplication.processEvents()
    assert widget.status.value.startswith("error") and len(widget.status.value) <= 300
    assert "y" * 2000 in widget.status.tooltip
    assert any("y" * 2000 in str(n.message) for n in notifications)
    assert dock.width() == width_before and viewer.window._qt_window.width() == window_before
    # the width the widget asks of its dock (2,376 px here before the fix; napari grows to it)
    assert widget.native.minimumSizeHint().width() == hint_before


def test_missing_device_is_a_clear_error(qtbot, viewer, random_vgg, notifications):
    from napari_nst import run_in_viewer

    worker = run_in_viewer(
        viewer,
        "content",
        "style",
        vgg_weights=random_vgg,
        **{**QUICK, "device": "cuda:7"},
        start=False,
    )
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        worker.start()
    assert any("cuda:7" in str(n.message) for n in notifications)
    assert not _results(viewer)


def test_bad_layer_is_rejected_before_running(viewer, random_vgg):
    from napari_nst import run_in_viewer

    viewer.add_points(np.zeros((1, 2)), name="points")
    with pytest.raises(ValueError, match="'points' is a Points layer"):
        run_in_viewer(viewer, "points", "style", vgg_weights=random_vgg)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        run_in_viewer(viewer, "nope", "style", vgg_weights=random_vgg)


def test_input_layer_removed_mid_run(qtbot, viewer, random_vgg, notifications):
    from napari_nst import run_in_viewer

    worker = run_in_viewer(
        viewer,
        "content",
        "style",
        vgg_weights=random_vgg,
        **{**QUICK, "steps": 6, "size": 64},
        start=False,
    )
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    worker.start()
    qtbot.waitUntil(lambda: len(_results(viewer)) >= 1, timeout=120_000)
    assert not finished  # removed while the run is going on
    viewer.layers.remove("content")
    viewer.layers["style"].name = "renamed"
    qtbot.waitUntil(lambda: bool(finished), timeout=120_000)
    (folded,) = _results(viewer)  # the 6 iterates, folded
    assert folded.data.shape[0] == 6
    assert not [n for n in notifications if "failed" in str(n.message)]


def test_status_bar_spinner_is_paused_during_a_run(qtbot, viewer, random_vgg):
    """napari's "in progress" GIF repaints the whole window 33 times a second, which costs torch
    about a third of its speed with software OpenGL; run_in_viewer pauses it, then lets it go."""
    from qtpy.QtGui import QMovie
    from qtpy.QtWidgets import QLabel

    from napari_nst import run_in_viewer

    status_bar = viewer.window._qt_window.statusBar()  # the test may look inside; the code does not
    movies = [
        label.movie() for label in status_bar.findChildren(QLabel) if label.movie() is not None
    ]
    assert movies, (
        "napari's status bar has no animated spinner any more: revisit _status_spinner.StatusSpinners"
    )
    states = []
    worker = run_in_viewer(
        viewer,
        "content",
        "style",
        vgg_weights=random_vgg,
        **QUICK,
        start=False,
        on_iterate=lambda job, it: states.append([m.state() for m in movies]),
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    assert len(states) == QUICK["steps"]
    assert all(state == [QMovie.MovieState.Paused] * len(movies) for state in states)
    qtbot.waitUntil(
        lambda: all(m.state() != QMovie.MovieState.Paused for m in movies), timeout=10_000
    )
    assert _results(viewer)[0].data.shape[0] == QUICK["steps"]


def _run_on_z_slice(qtbot, viewer, random_vgg, **settings) -> list:
    """A uint16 z-stack of noise whose slice 3 is a horizontal ramp, run at slice 3 (on screen)
    with ``settings``; returns the result layers."""
    from napari_nst import run_in_viewer

    stack = (np.random.default_rng(0).random((5, 32, 40)) * 4000).astype(np.uint16)
    stack[3] = np.linspace(0, 4000, 40, dtype=np.uint16)[None, :]
    viewer.add_image(stack, name="stack", contrast_limits=(0, 4000))
    viewer.dims.set_current_step(0, 3)
    worker = run_in_viewer(
        viewer, "stack", "style", vgg_weights=random_vgg, **{**QUICK, **settings}, start=False
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    return _results(viewer)


def test_z_stack_uses_the_slice_on_screen(qtbot, viewer, random_vgg):
    (result,) = _run_on_z_slice(
        qtbot, viewer, random_vgg, steps=1, style_strength=0.0, tv_weight=0.0
    )
    assert result.name.startswith("stack [slice 3] × style · optimize")
    assert result.data.ndim == 2 and not result.rgb  # grayscale in, grayscale out
    assert result.data[:, -4:].mean() > result.data[:, :4].mean() + 0.3  # the ramp, not noise


def _cells(viewer, width: int | None = None) -> dict:
    """{(row, col): (picture layer, label text)} of the grid shown (cells of two layers), at
    their place in a table ``width`` cells wide whose rows the grid wraps onto several lines."""
    grid = viewer.canvas.grid
    columns = grid.shape[1]
    lines = -(-(width or columns) // columns)
    cells = {}
    for index, layer in enumerate(viewer.layers):
        line, col = grid.position(index, viewer.layers)
        if (line, col) == (-1, -1) or not layer.visible:
            continue
        position = (line // lines, line % lines * columns + col)
        picture, _ = cells.get(position, (None, None))
        text = layer.text.values[0] if "label" in layer.name and len(layer.text.values) else None
        cells[position] = (
            picture if text is not None else layer,
            text if text is not None else cells.get(position, (None, None))[1],
        )
    return cells


def test_batch_and_compare_grid(qtbot, viewer, widget):
    """Compare lays out every finished run: a row per content, the content first, then each
    style followed by its runs with that content (runs of a pair with other settings side by
    side, gaps where a content has fewer), every cell labelled on the canvas. Off: the view as
    it was, the grid's layers gone; a tall canvas wraps the rows."""
    from napari_nst._grid import CHAR_WIDTH

    widget.iterates.value = "fold"
    widget.style.value = [viewer.layers["style"], viewer.layers["scream"]]
    worker = widget.run()
    assert len(worker.jobs) == 2
    _wait_idle(qtbot, widget)
    widget.style.value = [viewer.layers["style"]]
    widget.controls["style_strength"].value = 0.5
    widget.run()
    _wait_idle(qtbot, widget)
    widget.content.value = [viewer.layers["scream"]]
    widget.controls["style_strength"].value = 1.0
    widget.run()
    _wait_idle(qtbot, widget)
    runs = _results(viewer)
    assert len(runs) == 4 and all(run.data.shape[0] == 3 for run in runs)  # folded: 3 steps each
    assert " · strength 0.5 · " in runs[2].name
    order_before = [layer.name for layer in viewer.layers]
    visible_before = [layer.visible for layer in viewer.layers]
    selected_before = (viewer.layers.selection.active, set(viewer.layers.selection))
    viewer.canvas.size = (300, 1200)  # wide: the rows fit on one line each
    widget.compare.value = True
    grid = viewer.canvas.grid
    assert grid.enabled and tuple(grid.shape) == (2, 6) and grid.stride == 2
    cells = _cells(viewer)
    table = [
        [
            "content: content",
            "style: style",
            "optimize",
            "optimize · strength 0.5",
            "style: scream",
            "optimize",
        ],
        ["content: scream", "style: style", "optimize", "", "style: scream"],
    ]  # a gap
    assert [[cells[(row, col)][1] for col in range(len(table[row]))] for row in (0, 1)] == table
    assert (1, 5) not in cells  # no gap after the last picture
    np.testing.assert_array_equal(cells[(0, 0)][0].data, viewer.layers["content"].data)
    np.testing.assert_array_equal(cells[(1, 4)][0].data, viewer.layers["scream"].data)
    for (row, col), run in zip(
        [(0, 2), (0, 3), (0, 5), (1, 2)], (runs[0], runs[2], runs[1], runs[3])
    ):
        picture = cells[(row, col)][0]
        assert np.shares_memory(picture.data, run.data)  # a view of its last step, no copy
        np.testing.assert_array_equal(picture.data, run.data[-1])
    assert not any(layer.visible for layer in runs)  # the runs themselves are hidden meanwhile
    assert [layer.name for layer in widget.content.choices] == [
        layer.name
        for layer in viewer.layers
        if layer.name in order_before and "napari_nst" not in layer.metadata
    ] + [layer.name for layer in runs]  # no cells
    assert (viewer.layers.selection.active, set(viewer.layers.selection)) == selected_before
    labels = [layer for layer in viewer.layers if layer.name.startswith("compare: label")]
    sizes = {float(label.text.size) for label in labels}  # in world units
    assert len(sizes) == 1 and all(label.text.scaling for label in labels)  # one size, zooms
    longest = max(len(label.text.values[0]) for label in labels)
    widest = max(
        np.ptp(np.asarray(picture.extent.world)[:, -1]) + 1
        for picture, _ in cells.values()
        if picture._type_string == "image"
    )
    assert CHAR_WIDTH * longest * sizes.pop() <= widest  # fits a cell's width
    widget.compare.value = False
    assert not grid.enabled
    assert [layer.name for layer in viewer.layers] == order_before
    assert [layer.visible for layer in viewer.layers] == visible_before
    assert (viewer.layers.selection.active, set(viewer.layers.selection)) == selected_before

    viewer.canvas.size = (1200, 300)  # tall: each row wraps onto lines of the same length
    widget.compare.value = True
    lines, columns = grid.shape[0] // 2, grid.shape[1]
    assert columns < 6 and lines * columns >= 6 and grid.shape[0] == 2 * lines
    cells = _cells(viewer, width=6)
    assert [[cells[(row, col)][1] for col in range(len(table[row]))] for row in (0, 1)] == table
    widget.compare.value = False
    assert [layer.name for layer in viewer.layers] == order_before


def test_compare_wraps_a_long_row_only_where_its_cells_grow():
    from napari_nst._compare import wrapped_columns

    assert wrapped_columns(1, 6, (1.0, 1.0), (800, 700)) == 3  # 2 lines of 3: cells 2x larger
    assert wrapped_columns(1, 6, (1.0, 1.0), (300, 1800)) == 6  # one line fits best
    assert wrapped_columns(2, 6, (1.1, 1.0), (850, 1160)) == 6  # no gain: no gaps either
    assert wrapped_columns(1, 1, (1.0, 1.0), (10, 10)) == 1


@pytest.mark.shared
def test_sample_data(make_napari_viewer):
    shared_path("images", "starry_night.jpg")  # $NAPARI_NST_SAMPLE_DIR (conftest) holds it
    viewer = make_napari_viewer()
    viewer.open_sample("napari-nst", "astronaut_painting")
    assert [layer.name for layer in viewer.layers] == ["astronaut", "starry_night"]
    assert all(layer.rgb and layer.data.dtype == np.uint8 for layer in viewer.layers)
    astronaut, painting = viewer.layers
    assert painting.data.shape == (320, 512, 3)  # downscaled to the content's size
    assert painting.metadata["source"]["status"].startswith("public domain")
    assert painting.translate[1] >= astronaut.data.shape[1]  # side by side: both in view


@pytest.mark.shared
def test_sample_painting_is_downloaded_once_then_cached(mirror, monkeypatch):
    """Without the file at hand the painting is downloaded (here from a local mirror of the
    upstream file), checked and cached: the second sample asks no server."""
    import shutil

    from napari_nst._sample_data import SAMPLE_DIR_ENV, STARRY_NIGHT, make_sample_data

    monkeypatch.delenv(SAMPLE_DIR_ENV, raising=False)
    shutil.copy(shared_path("images", "starry_night.jpg"), mirror.folder / STARRY_NIGHT.filename)
    first = make_sample_data()[1]
    assert first[1]["name"] == "starry_night" and mirror.requests == ["starry_night.jpg"]
    second = make_sample_data()[1]
    assert mirror.requests == ["starry_night.jpg"]  # from the cache
    np.testing.assert_array_equal(first[0], second[0])


def test_sample_painting_offline_falls_back_and_says_why(mirror, monkeypatch):
    """No file and no server: a generated texture named as such, and a warning that says where
    to put the painting."""
    from napari_nst._sample_data import SAMPLE_DIR_ENV, make_sample_data

    monkeypatch.delenv(SAMPLE_DIR_ENV, raising=False)
    mirror.close()  # nothing answers at its address any more
    with pytest.warns(RuntimeWarning, match="generated texture instead.*NAPARI_NST_SAMPLE_DIR"):
        layers = make_sample_data()
    assert layers[1][1]["name"] == "generated painting" and layers[1][0].shape == (512, 512, 3)


def test_console_api_and_widget_fields(qtbot, viewer, random_vgg):
    import napari_nst

    worker = napari_nst.run_in_viewer(
        viewer,
        viewer.layers["content"],
        ["style", "scream"],
        vgg_weights=random_vgg,
        **{**QUICK, "emit_every": 3},
        start=False,
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    assert len(_results(viewer)) == 2 and [job.results[-1].name for job in worker.jobs] == [
        f"content × {style} · optimize · steps 3 · size 32 · init content · working floor 32"
        for style in ("style", "scream")
    ]  # what differs from the API's defaults
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    widget.controls["steps"].value = 2
    widget.settings_overrides["vgg_weights"] = random_vgg
    assert widget.current_settings().steps == 2


def test_values_persist_between_sessions_visibly_and_reset(
    viewer, widget, make_napari_viewer, tmp_path
):
    widget.controls["steps"].value = 7
    widget.controls["keep_colors"].value = True
    widget.controls["weights_dir"].value = str(tmp_path)
    widget._save_values()
    other = make_napari_viewer()
    _, again = other.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    assert again.controls["steps"].value == 7 and again.controls["keep_colors"].value is True
    assert again.current_settings().weights_dir == str(tmp_path)
    # the restored values are named on screen, not applied silently
    shown = again.restored.value
    assert not again.restored.native.isHidden() and shown.startswith("not the defaults")
    assert "steps 7" in shown and "keep colors True" in shown and str(tmp_path) in shown
    again.reset_button.clicked.emit()
    assert again.controls["steps"].value == Settings().steps
    assert again.controls["keep_colors"].value is False
    assert again.current_settings().weights_dir is None
    assert again.restored.value == "" and again.restored.native.isHidden()
    third = make_napari_viewer()
    _, fresh = third.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    assert fresh.controls["steps"].value == Settings().steps and fresh.restored.value == ""


def test_first_choice_of_network_suits_the_machine(make_napari_viewer):
    """Without a GPU the widget starts on the distilled network (a first run within a minute on
    a CPU); with one, on ImageNet VGG-19, the API's default."""
    from napari_nst.engine.devices import available_devices

    gpu = any(device != "cpu" for device in available_devices())
    _, widget = make_napari_viewer().window.add_plugin_dock_widget("napari-nst", "Style transfer")
    expected = "vgg19" if gpu else "vgg19-distilled"
    assert widget.controls["network"].value == expected == widget.defaults["network"]
    assert widget.restored.value == ""  # a machine default is not a restored value


@pytest.mark.shared
def test_weights_download_shows_in_the_activity_dock(qtbot, viewer, mirror):
    """A first run without the weights downloads them (here from a local mirror) with a bar in
    napari's activity dock that knows the file's size and reaches it."""
    import shutil

    from napari.utils import progress

    import napari_nst
    from napari_nst.engine.weights import MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER

    for entry in (MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER):
        shutil.copy(shared_path("weights", entry.filename), mirror.folder)
    bars = []
    progress._all_instances.events.changed.connect(lambda event: bars.extend(event.added))
    worker = napari_nst.run_in_viewer(
        viewer, "content", "style", method="predict", size=64, device="cpu", start=False
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    qtbot.wait(50)  # the bars' last queued updates
    downloads = {bar.desc: bar for bar in bars if bar.desc.startswith("Downloading")}
    assert len(downloads) == 2 and len(_results(viewer)) == 1
    for entry in (MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER):
        size = (mirror.folder / entry.filename).stat().st_size
        bar = downloads[f"Downloading {entry.filename} ({size / 1e6:.1f} MB)"]
        assert bar.total == size and bar.n == size
    meta = _results(viewer)[-1].metadata["napari_nst"]  # a predict layer's provenance
    assert meta["method"] == "predict" and meta["device"] == "cpu"
    assert meta["weights"] == (
        f"file:{MAGENTA_PREDICTOR.filename} + file:{MAGENTA_TRANSFORMER.filename}"
    )


def test_panels_and_methods_come_from_the_settings_metadata(widget):
    """Every control, its panel, its place and whether the chosen method shows it follow the
    Settings field metadata; the choices are the Literal annotations' arguments."""
    import dataclasses

    from napari_nst.setting_fields import PANELS
    from napari_nst.settings import METHODS, Settings, applies_to, field_choices

    fields = [f for f in dataclasses.fields(Settings) if f.metadata["panel"] is not None]
    panel = {f.name: f.metadata["panel"] for f in fields}
    assert list(widget.controls) == [
        f.name for panel_name in PANELS for f in fields if f.metadata["panel"] == panel_name
    ]
    assert {"method", "steps", "style_crops", "weights_dir"} <= set(panel)  # the metadata is used
    # the basic controls, the advanced toggle, then the advanced controls
    order = list(widget)
    toggle = order.index(widget.show_advanced)
    assert all(
        (order.index(widget.controls[name]) < toggle) == (where == "basic")
        for name, where in panel.items()
    )
    shown = lambda name: not widget.controls[name].native.isHidden()  # noqa: E731
    for method in METHODS:
        widget.controls["method"].value = method
        for advanced in (False, True):
            widget.show_advanced.value = advanced
            expected = {
                name
                for name, where in panel.items()
                if (where == "basic" or advanced) and applies_to(name, method)
            }
            assert {name for name in panel if shown(name)} == expected, (method, advanced)
    assert not applies_to("steps", "predict") and not applies_to("style_crops", "optimize")
    for f in fields:
        control = widget.controls[f.name]
        assert control.tooltip == f.metadata["help"]
        if field_choices(f):
            assert tuple(control.choices) == field_choices(f)
        for option, value in f.metadata["widget"].items():  # magicgui's own vocabulary
            actual = type(control).__name__ if option == "widget_type" else getattr(control, option)
            assert getattr(actual, "value", actual) == value, (f.name, option)
    assert widget.controls["precision"].choices == ("auto", "float32", "bfloat16")
    assert widget.controls["weights_dir"].label == "weights folder"


def test_optimize_notes_where_its_steps_start(widget):
    """Just after optimize's steps, a note: a run starts from predict's result, and the paper's
    starts (content, noise) are set with init and need more steps; hidden for predict."""
    shown = lambda: not widget.init_note.native.isHidden()  # noqa: E731 (the dock is hidden)
    order = list(widget)
    assert order.index(widget.init_note) == order.index(widget.controls["steps"]) + 1
    widget.controls["method"].value = "optimize"
    widget.controls["init"].value = "predict"
    assert shown()
    note = widget.init_note.value
    assert "predict" in note and "init" in note and "content or noise" in note and "200" in note
    widget.controls["init"].value = "noise"  # the note follows where the run starts
    assert widget.init_note.value.startswith("Starts from the noise, as the paper does")
    widget.controls["init"].value = "predict"
    assert widget.init_note.value.startswith("Starts from predict's result")
    widget.controls["method"].value = "predict"
    assert not shown()
    widget.controls["method"].value = "optimize"
    assert shown()


@pytest.mark.shared
def test_distilled_network_from_the_widget(qtbot, viewer, widget):
    """The basic panel's network choice reaches the engine: weights found through
    $NAPARI_NST_WEIGHTS_DIR, the choice recorded in the result's metadata."""
    shared_path("weights", "cd_vgg19_distilled_16x_conv5_1.pth")
    widget.settings_overrides.pop("vgg_weights")
    widget.controls["network"].value = "vgg19-distilled"
    widget.content.value = [
        viewer.add_image(shared_image("tubingen.jpg", 64), name="big", rgb=True)
    ]
    widget.controls["size"].value = 64
    widget.run()
    _wait_idle(qtbot, widget)
    meta = _results(viewer)[-1].metadata["napari_nst"]
    assert meta["settings"]["network"] == "vgg19-distilled"
    assert meta["weights"] == "file:cd_vgg19_distilled_16x_conv5_1.pth"


@pytest.mark.shared
def test_universal_from_the_widget(qtbot, viewer, widget):
    """The widget's method choice reaches universal style transfer: its own controls shown
    (levels), the optimisation's hidden, one result layer whose metadata names every weights
    file with its sha256 and the levels."""
    from napari_nst.engine.weights import UNIVERSAL_DECODERS, UNIVERSAL_ENCODERS

    shared_path("weights", "cd_wct_16x_decoder5.pth")
    widget.show_advanced.value = True
    widget.controls["method"].value = "universal"
    shown = lambda name: not widget.controls[name].native.isHidden()  # noqa: E731
    assert shown("levels") and shown("style_strength") and not shown("steps")
    widget.controls["levels"].value = "4,3,2,1"
    widget.controls["size"].value = 64
    before = len(viewer.layers)
    widget.run()
    _wait_idle(qtbot, widget)
    assert len(viewer.layers) == before + 1  # one shot: one layer
    meta = _results(viewer)[-1].metadata["napari_nst"]
    assert meta["method"] == "universal" and meta["levels"] == [4, 3, 2, 1]
    assert list(meta["settings"]["levels"]) == [4, 3, 2, 1]
    expected = {
        entry.filename: entry.sha256
        for level in (1, 2, 3, 4)
        for entry in (UNIVERSAL_ENCODERS[level], UNIVERSAL_DECODERS[level])
    }
    assert meta["weights_sha256"] == expected


@pytest.mark.shared
def test_two_painted_labels_give_two_styles_in_one_run(qtbot, viewer, widget):
    """A Labels layer picked as regions: its table has a row per label present (refreshed as
    labels are painted), each given a style layer by default in turn; one Run gives one result
    whose metadata records which layer styled which label; the inputs stay as they were."""
    shared_path("weights", "cd_wct_16x_decoder5.pth")
    content = viewer.layers["content"].data
    labels = viewer.add_labels(np.zeros(content.shape[:2], np.uint8), name="painted")
    widget.style.value = [viewer.layers["style"], viewer.layers["scream"]]
    widget.regions.picker.value = labels
    assert [row.label for row in widget.regions.rows] == ["label 0"]
    labels.paint((20, 10), 1)  # painted as a user does: the table follows
    labels.paint((20, 30), 2)
    rows = {row.label: row.value for row in widget.regions.rows}
    assert rows["label 1"] is viewer.layers["style"] and rows["label 2"] is viewer.layers["scream"]
    assert isinstance(rows["label 0"], str)  # the background: keep
    data = labels.data.copy()
    widget.controls["method"].value = "universal"
    widget.controls["size"].value = 40
    widget.run()
    _wait_idle(qtbot, widget)
    result = _results(viewer)[-1]
    meta = result.metadata["napari_nst"]
    assert meta["regions"]["labels"] == "painted"
    assert meta["regions"]["styles"] == "1=style, 2=scream"
    assert set(meta["regions"]["per_label"]) == {1, 2}
    assert np.array_equal(labels.data, data)
    from scipy.ndimage import distance_transform_edt

    kept = np.asarray(labels.data) == 0
    far = distance_transform_edt(kept) > 6  # beyond the soft edge
    assert far.sum() > 100
    assert np.abs(result.data[far] - content[far] / 255.0).max() < 2e-3
    assert np.abs(result.data[~kept] - content[~kept] / 255.0).mean() > 0.05


@pytest.mark.shared
def test_a_sweep_fills_the_grid_with_labelled_cells(qtbot, viewer, widget, tmp_path):
    """Explore: the "methods side by side" preset runs three cells into napari's grid, each an
    image with its label on the canvas; the layers go together; the contact sheet is saved."""
    shared_path("weights", "cd_wct_16x_decoder5.pth")
    before = list(viewer.layers)
    widget.show_explore.value = True
    assert not widget.explore.native.isHidden()
    widget.explore.preset.value = "methods"
    assert widget.explore.cols.value == "method"
    assert widget.explore.col_values.value == "optimize;predict;universal"
    widget.controls["size"].value = 40
    worker = widget.explore.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.explore.worker is None, timeout=120_000)
    layers = [layer for layer in viewer.layers if layer not in before]
    assert len(layers) == 6  # an image and a label per cell
    texts = [layer.text.values[0] for layer in layers if layer._type_string == "points"]
    assert texts == ["optimize", "predict", "universal"]  # the values on the canvas
    assert [
        layer.metadata["napari_nst"]["label"] for layer in layers if layer._type_string == "image"
    ] == ["method=optimize", "method=predict", "method=universal"]
    assert not any(layer in layers for _, layer in widget._image_layers())  # not as inputs
    grid = viewer.grid
    assert grid.enabled and tuple(grid.shape) == (1, 3) and grid.stride == 2
    assert [viewer.layers.index(layer) for layer in layers] == list(range(6))  # row-major
    assert not any(layer.visible for layer in before)
    widget.explore.save_sheet(tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").stat().st_size > 1000
    widget.explore.remove()
    assert list(viewer.layers) == before and all(layer.visible for layer in before)
    assert not viewer.grid.enabled
    widget.explore.rows.value, widget.explore.row_values.value = (
        "seed",
        ";".join(map(str, range(40))),
    )
    widget.explore.cols.value = "(none)"
    assert widget.explore.run() is None
    assert "tick 'allow more than 36 cells'" in widget.explore.status.value
    # a figure's preset says what it will run and cost as soon as it is chosen
    widget.explore.preset.value = "fig3"
    assert widget.explore.status.value.startswith(
        "fig3: 20 cells x 300 optimisation steps at 40 px (6000 steps; about"
    )


def test_closing_a_viewer_mid_run_stops_its_worker(qtbot, viewer, make_napari_viewer, random_vgg):
    """A second viewer keeps the application running: closing the first one mid-run stops its
    worker, and the results it had already queued are not added to the closed viewer."""
    from napari_nst import run_in_viewer

    other = make_napari_viewer()  # the newest: napari registers the worker with this window
    other.add_image(shared_image("the_scream.jpg", 40), name="scream", rgb=True)
    worker = run_in_viewer(viewer, "content", "style", vgg_weights=random_vgg, **LONG, start=False)
    finished, added = [], []
    worker.finished.connect(lambda: finished.append(True))
    emitted = _count_emitted(worker)
    worker.start()
    qtbot.waitUntil(lambda: len(_results(viewer)) >= 1, timeout=120_000)
    viewer.layers.events.inserted.connect(lambda event: added.append(event.value.name))
    _let_results_queue_up(emitted)
    viewer.close()
    qtbot.waitUntil(lambda: bool(finished), timeout=30_000)  # not the 5,000 steps
    assert worker.abort_requested and len(emitted) < LONG["steps"]
    assert added == [] and len(viewer.layers) == 0
    # the other viewer goes on working
    again = run_in_viewer(other, "scream", "scream", vgg_weights=random_vgg, **QUICK, start=False)
    with qtbot.waitSignal(again.finished, timeout=120_000):
        again.start()
    (folded,) = _results(other)
    assert folded.name.startswith("scream × scream · optimize") and folded.data.shape[0] == 3


def test_closing_a_viewer_mid_run_from_the_widget(qtbot, viewer, widget, make_napari_viewer):
    """Closing the viewer that holds the dock widget mid-run: its worker stops, and none of the
    widget's callbacks touches its deleted Qt widgets (pytest-qt fails the test on an exception
    in the Qt event loop; without napari's exception hook the process would abort)."""
    other = make_napari_viewer()
    for name in ("size", "steps", "emit_every"):
        widget.controls[name].value = LONG[name]
    worker = widget.run()
    finished, added = [], []
    worker.finished.connect(lambda: finished.append(True))
    emitted = _count_emitted(worker)
    qtbot.waitUntil(lambda: len(_results(viewer)) >= 1, timeout=120_000)
    viewer.layers.events.inserted.connect(lambda event: added.append(event.value.name))
    _let_results_queue_up(emitted)
    viewer.close()
    qtbot.waitUntil(lambda: bool(finished), timeout=30_000)  # the widget's callback ran before
    assert worker.abort_requested and added == [] and widget.worker is None
    other.add_image(shared_image("the_scream.jpg", 40), name="scream", rgb=True)
    _, again = other.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    assert [layer.name for layer in again.content.value] == ["scream"]


def test_a_finished_run_lets_go_of_its_copies_and_deleted_layers(qtbot, viewer, random_vgg):
    """napari's task registry keeps every finished worker for the life of the window, and with it
    the worker's jobs: those must not keep the input copies or deleted result layers alive."""
    from napari_nst import run_in_viewer

    worker = run_in_viewer(viewer, "content", "style", vgg_weights=random_vgg, **QUICK, start=False)
    copies = [weakref.ref(worker.jobs[0].content.data), weakref.ref(worker.jobs[0].style.data)]
    iterates = []  # the layers pushed while it ran, folded into one as it ended
    viewer.layers.events.inserted.connect(lambda event: iterates.append(weakref.ref(event.value)))
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        worker.start()
    results = _results(viewer)
    assert worker.jobs[0].results == results and len(results) == 1  # still named by the job
    assert results[0].data.shape[0] == 3 and len(iterates) == 3  # the last one became the fold
    assert worker.jobs[0].content.layer == viewer.layers["content"]
    deleted = [weakref.ref(layer) for layer in results]
    for layer in results:
        viewer.layers.remove(layer)
    del results, layer
    gc.collect()
    assert [copy() is None for copy in copies] == [True, True]  # the full-size input copies
    assert [ref() is None for ref in deleted] == [True]
    assert [ref() is None for ref in iterates] == [True] * 3  # folded-away iterates freed too
    assert worker.jobs[0].results == [] and worker.jobs[0].content.data is None


def test_a_stopped_run_lets_go_of_the_engine(qtbot, viewer, random_vgg):
    """A stopped worker's generator is never resumed: unless it is closed, its frames keep the
    engine's state (tensors, the last iterate) for as long as napari keeps the worker."""
    from napari_nst import run_in_viewer

    seen = []
    worker = run_in_viewer(
        viewer,
        "content",
        "style",
        vgg_weights=random_vgg,
        **LONG,
        start=False,
        on_iterate=lambda job, iterate: seen.append(weakref.ref(iterate)),
    )
    worker.start()
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        worker.quit()
    gc.collect()
    assert len(seen) < LONG["steps"] and [ref for ref in seen if ref() is not None] == []


def test_result_names_say_pair_method_and_what_differs():
    """Names list the settings the method reads that differ from the baseline, in the
    settings' order, in short words; the widget's baseline is its own defaults."""
    from types import SimpleNamespace

    from napari_nst._naming import run_name
    from napari_nst.registry import name_words

    job = SimpleNamespace(label="tubingen × starry_night")
    assert (
        run_name(job, Settings(method="predict", style_strength=0.3))
        == "tubingen × starry_night · predict · strength 0.3"
    )
    assert (
        run_name(job, Settings(method="predict", steps=50)) == "tubingen × starry_night · predict"
    )  # predict does not read steps
    assert name_words(
        Settings(
            steps=50, keep_colors=True, init="content", style_layers=("conv1_1",), min_size=64
        ),
        Settings(),
    ) == ["steps 50", "keep colors", "init content", "style layers conv1_1"]  # min size: only
    # with coarse-to-fine
    distilled = Settings(network="vgg19-distilled")
    assert name_words(distilled, Settings()) == ["network vgg19-distilled"]
    assert name_words(distilled, distilled) == []
    assert name_words(Settings(init_image=np.zeros((4, 4))), Settings()) == [
        "init content",
        "start image",
    ]


def test_iterates_fold_into_one_layer_with_a_step_slider(qtbot, viewer, widget):
    """Each emitted step is a layer while the run goes; when it ends they become ONE layer with
    a "step" axis (a coarse scale's smaller iterates at the final size), shown at the last step,
    named after the run; the next run of the pair gets its own name; "keep" keeps them."""
    widget.iterates.value = "fold"
    widget.controls["steps"].value = 6
    widget.controls["emit_every"].value = 2
    widget.controls["coarse_to_fine"].value = True
    widget.settings_overrides["min_size"] = 16
    pushed = []
    viewer.layers.events.inserted.connect(
        lambda event: pushed.append((event.value.name, event.value.data.shape))
    )
    widget.run()
    _wait_idle(qtbot, widget)
    (folded,) = _results(viewer)
    iterates = [p for p in pushed if " · step " in p[0]]
    assert [name.rsplit(" · step ", 1)[1] for name, _ in iterates] == ["2", "4", "6"]
    assert iterates[0][1] != iterates[-1][1]  # coarse to fine: the first is smaller
    assert folded.name == iterates[0][0].rsplit(" · step ", 1)[0]  # the run's name
    assert folded.data.shape == (3, *iterates[-1][1])
    assert viewer.dims.axis_labels[0] == "step" and viewer.dims.point[0] == 6
    assert tuple(folded.scale[:1]) == (2,) and tuple(folded.translate[:1]) == (2,)  # in steps
    record = folded.metadata["napari_nst"]
    assert [r["step"] for r in record["iterates"]] == [2, 4, 6] and record["step"] == 6
    assert viewer.layers.selection.active is folded
    widget.run()
    _wait_idle(qtbot, widget)
    assert _results(viewer)[-1].name == folded.name + " (2)"
    from napari_nst import run_in_viewer

    with pytest.raises(ValueError, match="iterates='nope' is not supported; choose one of fold"):
        run_in_viewer(viewer, "content", "style", iterates="nope")
    widget.iterates.value = "keep"
    widget.run()
    _wait_idle(qtbot, widget)
    assert [layer.name for layer in _results(viewer)[2:]] == [
        f"{folded.name} (3) · step {step}" for step in (2, 4, 6)
    ]


def test_a_stopped_run_folds_what_it_pushed(qtbot, viewer, widget):
    """Stop mid-run: the iterates pushed so far are folded, none lost."""
    widget.iterates.value = "fold"
    widget.controls["steps"].value = 400
    pushed = []
    viewer.layers.events.inserted.connect(lambda event: pushed.append(event.value.name))
    worker = widget.run()
    qtbot.waitUntil(lambda: len(pushed) >= 3, timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        widget.stop()
    qtbot.waitUntil(lambda: len(_results(viewer)) == 1, timeout=10_000)
    (folded,) = _results(viewer)
    assert folded.data.shape[0] == len([name for name in pushed if " · step " in name]) >= 3
    assert widget.status.value == "stopped"


def test_pickers_list_inputs_first_and_warn_when_content_is_style(qtbot, viewer, widget):
    worker = widget.run()
    _wait_idle(qtbot, widget)
    viewer.layers.move(viewer.layers.index(_results(viewer)[-1]), 0)  # a result at the bottom
    names = [layer.name for layer in widget.content.choices]
    assert names[:3] == ["content", "style", "scream"] and len(names) == 3 + len(
        worker.jobs[0].results
    )
    shown = lambda: not widget.same_layer.native.isHidden()  # noqa: E731 (the dock is hidden)
    assert not shown()
    widget.style.value = [viewer.layers["content"]]
    assert shown() and "content is both content and style" in widget.same_layer.value
    widget.style.value = [viewer.layers["style"]]
    assert not shown()


@pytest.mark.shared
def test_gui_opens_at_a_useful_size_with_every_layer_in_view(qtbot, make_napari_viewer):
    """``napari-nst gui``'s window: large enough for the layer list, canvas and widget, and the
    sample's two layers both in view once the canvas has its size."""
    from qtpy.QtWidgets import QApplication

    from napari_nst.cli.gui import GUI_SIZE, open_at_a_useful_size

    shared_path("images", "starry_night.jpg")
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-nst", "astronaut_painting")
    viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    width, height = open_at_a_useful_size(viewer)
    screen = QApplication.primaryScreen().availableGeometry()
    assert (width, height) == (
        min(GUI_SIZE[0], int(screen.width() * 0.95)),
        min(GUI_SIZE[1], int(screen.height() * 0.95)),
    )
    qtbot.wait(200)  # the deferred fit, after the window's new size is laid out
    window = viewer.window._qt_window  # the test may look inside; the code does not
    # at least that size (a small screen: no smaller than what the dock's controls need)
    assert window.width() >= width and window.height() >= height
    camera, canvas = viewer.scene.camera, np.asarray(viewer.canvas.size, dtype=float)
    half = canvas / 2 / camera.zoom
    seen = np.array([np.asarray(camera.center[-2:]) - half, np.asarray(camera.center[-2:]) + half])
    for layer in viewer.layers:  # every layer inside the visible world rectangle
        extent = np.asarray(layer.extent.world)[:, -2:]
        assert (extent[0] >= seen[0] - 1).all() and (extent[1] <= seen[1] + 1).all(), layer.name
    scene = np.asarray(viewer.layers.extent.world)[:, -2:]
    assert ((scene[1] - scene[0]) * camera.zoom / canvas).max() > 0.8  # fitted, not a thumbnail


def test_a_z_slice_run_folds_at_its_slice(qtbot, viewer, random_vgg):
    """A run of a z-stack's slice on screen folds into (steps, 1, H, W): the step axis comes in
    front of z, and the result sits at the slice it was made from."""
    (folded,) = _run_on_z_slice(qtbot, viewer, random_vgg, steps=4, emit_every=2)
    assert folded.data.shape == (2, 1, 26, 32)  # at size 32
    assert viewer.dims.axis_labels[0] == "step" and viewer.dims.ndim == 4
    assert tuple(folded.translate[:2]) == (2, 3)  # step 2 first; at z = 3
    assert viewer.dims.point[:2] == (4, 3)  # shown: the last step, the slice it came from
