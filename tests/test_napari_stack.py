"""Whole stacks in a real napari viewer (under Xvfb): one result layer with the content's axes,
created when the run starts and filled in as planes finish; Stop keeps the planes done; lazy
(dask) layers are read plane by plane. Seeded random VGG-19, no downloads."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import gui_session

pytestmark = pytest.mark.gui

QUICK = dict(
    size=32,
    steps=2,
    emit_every=1,
    device="cpu",
    coarse_to_fine=False,
    min_working_size=32,
    init="content",
)  # random VGG weights: no predict start


@pytest.fixture(autouse=True)
def _display_and_config(tmp_path, monkeypatch):
    gui_session(tmp_path, monkeypatch)


def _pan(planes: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A uint16 z-stack: one random texture shifted 2 px per plane, brighter plane by plane."""
    texture = np.random.default_rng(0).integers(200, 3000, (height, width + 2 * planes))
    return np.stack([texture[:, 2 * i : 2 * i + width] + 50 * i for i in range(planes)]).astype(
        np.uint16
    )


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(_pan(4), name="zstack", scale=(2.0, 0.5, 0.5), translate=(0, 10, 20))
    style = np.random.default_rng(1).random((40, 40, 3)).astype(np.float32)
    viewer.add_image(style, name="style", rgb=True)
    return viewer


def test_whole_stack_fills_one_layer_in_place(qtbot, viewer, random_vgg, tmp_path):
    import napari_nst

    source = viewer.layers["zstack"].data.copy()
    seen = []  # (planes done, result layers present, planes filled) at every finished plane

    def on_plane(job, plane):
        layer = job.results[0]
        filled = int((np.asarray(layer.data).reshape(4, -1).max(axis=1) > 0).sum())
        seen.append((plane.done, len(job.results), filled))

    store = tmp_path / "result.zarr"
    worker = napari_nst.run_in_viewer(
        viewer,
        "zstack",
        "style",
        scope="stack",
        out=str(store),
        vgg_weights=random_vgg,
        on_iterate=on_plane,
        **QUICK,
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: len(seen) == 4, timeout=10_000)

    results = [layer for layer in viewer.layers if "napari_nst" in layer.metadata]
    assert len(results) == 1  # one layer for the stack, not one per plane or step
    layer = results[0]
    assert layer.data.shape == (4, 24, 32) and not layer.rgb  # grayscale content: one channel
    np.testing.assert_allclose(layer.scale, (2.0, 1.0, 1.0))  # the content's z; pixels 2x larger
    np.testing.assert_allclose(layer.translate, (0.0, 10.25, 20.25))
    # the layer existed from the first plane on and filled plane by plane
    assert [s[0] for s in seen] == [1, 2, 3, 4] and all(s[1] == 1 for s in seen)
    assert [s[2] for s in seen] == [1, 2, 3, 4]
    record = layer.metadata["napari_nst"]
    assert record["scope"] == "stack" and record["planes"] == 4 and record["planes_done"] == 4
    assert record["temporal_weight"] > 0  # planes of a z-stack follow each other by default
    assert record["method"] == "optimize" and record["device"] == "cpu"
    assert store.exists() and os.fspath(store) in record["store"]
    import zarr

    np.testing.assert_array_equal(
        zarr.open_array(os.fspath(store), mode="r")[..., 0], np.asarray(layer.data)
    )
    np.testing.assert_array_equal(viewer.layers["zstack"].data, source)  # input untouched


def test_stop_keeps_the_planes_done(qtbot, viewer, random_vgg):
    import napari_nst

    viewer.add_image(_pan(12), name="long", scale=(2.0, 0.5, 0.5))
    worker = napari_nst.run_in_viewer(
        viewer,
        "long",
        "style",
        scope="stack",
        vgg_weights=random_vgg,
        on_iterate=lambda job, plane: worker.quit(),
        **{**QUICK, "steps": 20},
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: worker.jobs[0].run is None, timeout=30_000)  # the run has closed
    layer = viewer.layers[-1]
    done = layer.metadata["napari_nst"]["planes_done"]
    filled = np.asarray(layer.data).reshape(12, -1).max(axis=1) > 0
    # the planes reported stay; the one under way when Stop came is finished, kept and counted
    assert 1 <= done < 12 and filled[:done].all() and filled.sum() == done
    assert not filled[-1]  # stopped before the end


def test_lazy_rgb_stack_and_bad_scope(qtbot, viewer, random_vgg):
    import dask.array as da

    import napari_nst

    planes = np.random.default_rng(2).integers(0, 255, (3, 40, 40, 3), dtype=np.uint8)
    lazy = da.from_array(planes, chunks=(1, 40, 40, 3))
    viewer.add_image(lazy, name="lazy", rgb=True)
    worker = napari_nst.run_in_viewer(
        viewer, "lazy", "style", scope="stack", vgg_weights=random_vgg, **QUICK
    )
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    layer = viewer.layers[-1]
    assert layer.rgb and layer.data.shape == (3, 32, 32, 3)
    assert (np.asarray(layer.data).reshape(3, -1).max(axis=1) > 0).all()
    with pytest.raises(
        ValueError, match="scope='volume' is not supported; choose one of slice, stack"
    ):
        napari_nst.run_in_viewer(viewer, "lazy", "style", scope="volume")
    with pytest.raises(ValueError, match="names one store"):
        napari_nst.run_in_viewer(viewer, ["lazy", "zstack"], "style", scope="stack", out="x.zarr")


def test_widget_runs_the_whole_stack(qtbot, viewer, random_vgg):
    _, widget = viewer.window.add_plugin_dock_widget("napari-nst", "Style transfer")
    widget.settings_overrides["vgg_weights"] = random_vgg
    for name, value in {**QUICK, "method": "optimize", "network": "vgg19"}.items():
        widget.controls[name].value = value
    widget.content.value, widget.style.value = [viewer.layers["zstack"]], [viewer.layers["style"]]
    shown = lambda control: not control.native.isHidden()  # noqa: E731
    widget.show_advanced.value = True
    assert not shown(widget.scheduler)
    widget.scope.value = "stack"
    # the cluster address and how planes follow each other: whole-stack, advanced settings
    assert shown(widget.scheduler) and shown(widget.planes)
    widget.planes.value = "own"  # tiles or positions: no temporal term
    widget.show_advanced.value = False
    assert not shown(widget.scheduler) and not shown(widget.planes)
    statuses = []
    worker = widget.run()
    # connected after the widget's own handler: sees the status line each event left
    worker.yielded.connect(lambda _: statuses.append(widget.status.value))
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: widget.worker is None, timeout=10_000)
    results = [layer for layer in viewer.layers if "napari_nst" in layer.metadata]
    assert len(results) == 1 and results[0].data.shape == (4, 24, 32)
    assert results[0].metadata["napari_nst"]["temporal_weight"] == 0.0
    assert any("plane 4/4" in text for text in statuses), statuses
    assert widget.status.value.startswith("done")
    assert results[0].name.endswith(" · whole stack") and not shown(widget.iterates)
    viewer.dims.set_point(0, 2 * results[0].scale[0])  # slice 2 on screen: Compare shows it
    widget.compare.value = True
    cell = viewer.layers[f"compare: {results[0].name}"]
    np.testing.assert_array_equal(np.asarray(cell.data), np.asarray(results[0].data[2]))
    widget.compare.value = False
    assert not any(layer.name.startswith("compare:") for layer in viewer.layers)
