"""The method contract: every registered method, through the same API, with the same inputs.

A new method registered in ``engine.methods.REGISTRY`` runs through all of these without a line
added here. Real weights from ../shared/weights (the distilled VGG-19 for optimize).
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_nst
from napari_nst.engine import methods
from tests.helpers import magenta_weights_dir, shared_image

#: Per method, what keeps its run short here (a handful of optimisation steps at the size).
QUICK = {"optimize": dict(steps=4, network="vgg19-distilled", min_working_size=64, min_size=64)}


@pytest.fixture(autouse=True)
def weights_here(shared_weights, request):
    """Every test here reads ../shared/weights; predict, and optimize from its default start
    (init="predict"), the Magenta files there too."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("method") in ("predict", "optimize"):
        magenta_weights_dir()


def quick(method: str, **settings) -> dict:
    return {"method": method, "device": "cpu", "size": 64, **QUICK.get(method, {}), **settings}


@pytest.fixture(scope="module")
def content():
    return shared_image("tubingen.jpg", 80)


@pytest.fixture(scope="module")
def style():
    return shared_image("starry_night.jpg", 64)


def test_every_method_is_registered_and_declares_what_it_can_do(method):
    impl = methods.get(method)
    assert isinstance(impl, methods.Method) and impl.name == method
    assert isinstance(impl.iterates, bool) and isinstance(impl.warm_starts, bool)
    assert impl.temporal_weight >= 0
    assert methods.get(method) is impl  # one instance per process


def test_rgb_in_float32_rgb_out_at_the_working_size(method, content, style):
    result = napari_nst.stylize(content, style, **quick(method))
    assert result.shape == (48, 64, 3) and result.dtype == np.float32
    assert 0.0 <= result.min() and result.max() <= 1.0 and np.isfinite(result).all()
    assert result.std() > 0.02  # an image, not a constant


def test_grayscale_content_gives_a_grey_result(method, content, style):
    gray = content.mean(axis=2).astype(np.uint8)
    result = napari_nst.stylize(gray, style, **quick(method))
    assert result.shape == (48, 64, 3)
    assert np.abs(result - result[..., :1]).max() < 1e-6  # three equal channels


def test_rgba_keeps_its_alpha(method, content, style):
    alpha = np.tile(np.linspace(0, 255, content.shape[1]).astype(np.uint8), (content.shape[0], 1))
    result = napari_nst.stylize(np.dstack([content, alpha]), style, **quick(method))
    assert result.shape == (48, 64, 4)
    assert np.corrcoef(result[..., 3].ravel(), np.tile(np.linspace(0, 1, 64), 48))[0, 1] > 0.99


def test_uint16_with_contrast_limits_comes_back_in_its_own_units(method, content, style):
    raw = (content.mean(axis=2) * 10 + 300).astype(np.uint16)  # 300 .. 2850
    low, high = float(raw.min()), float(raw.max())
    result = napari_nst.stylize(
        raw, style, **quick(method, content_window=(low, high), output_range="content")
    )
    assert result.dtype == np.uint16 and result.shape == (48, 64, 3)
    assert low <= result.min() and result.max() <= high
    assert result.max() - result.min() > 0.1 * (high - low)


def test_a_stack_slice_and_the_whole_stack_agree(method, content, style):
    """A z-stack through ``stylize_stack``: each plane as ``stylize`` makes it (planes on their
    own), and a plane of a chained run stays close to it."""
    stack = np.stack([content, np.roll(content, 3, axis=1), content[::-1]])
    settings = quick(method)
    own = napari_nst.stylize_stack(stack, style, temporal_weight=0, warm_start=False, **settings)
    assert own.shape == (3, 48, 64, 3) and own.dtype == np.float32
    single = napari_nst.stylize(stack[1], style, **settings)
    np.testing.assert_allclose(own[1], single, atol=2e-3)
    chained = napari_nst.stylize_stack(stack, style, **settings)
    assert chained.shape == own.shape and np.isfinite(chained).all()
    assert np.abs(chained[0] - own[0]).max() < 2e-3  # the first plane has nothing to follow


def count_targets(monkeypatch, name: str) -> list:
    """The calls of the registered ``name`` method's ``target`` from now to the test's end: the
    real method runs, each call's arguments are recorded."""
    impl = methods.get(name)
    real = impl.target
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setitem(vars(impl), "target", counting)  # removed again at the test's end
    return calls


def test_a_batch_shares_one_style_target(method, content, style, monkeypatch):
    calls = count_targets(monkeypatch, method)
    images = napari_nst.predict_batch([content, content[:50]], style, **quick(method))
    assert len(calls) == 1  # two contents, one style target
    assert [image.shape for image in images] == [(48, 64, 3), (40, 64, 3)]
    single = napari_nst.stylize(content, style, **quick(method))
    assert len(calls) == 2  # a run of its own computes its own
    np.testing.assert_allclose(images[0], single, atol=2e-3)


def test_a_batch_shares_the_style_target_of_its_start_image(
    content, style, monkeypatch, magenta_weights
):
    """optimize's default start (init="predict") needs predict's style target too: once for
    the batch, like optimize's own."""
    calls = count_targets(monkeypatch, "predict")
    napari_nst.predict_batch([content, content[:50]], style, **quick("optimize", init="predict"))
    assert len(calls) == 1


def test_a_stopped_stack_keeps_the_planes_done(method, content, style):
    stack = np.stack([content] * 4)
    run = napari_nst.iter_stack(stack, style, temporal_weight=0, warm_start=False, **quick(method))
    planes = iter(run)
    first = next(planes)
    planes.close()  # napari's Stop, a break
    assert 1 <= run.done < 4
    written = [bool(run.output[i].any()) for i in range(4)]
    assert sum(written) == run.done and written[first.index[0]]


def test_closing_a_run_early_stops_it(method, content, style):
    steps = napari_nst.run_steps(content, style, **quick(method, emit_every=1))
    first = next(steps)
    steps.close()
    assert first.step == 1
    assert first.total_steps == (4 if methods.get(method).iterates else 1)


def test_results_say_what_made_them(method, content, style):
    final = list(napari_nst.iterate(content, style, **quick(method)))[-1]
    assert final.done
    assert final.info["method"] == method and final.info["device"] == "cpu"
    assert final.info["weights"]  # which files, for provenance


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((10, 40, 3), np.uint8), "too small"),
        (np.zeros((40, 40, 2), np.uint8), "channel"),
        (np.full((40, 40), np.nan, np.float32), "finite"),
    ],
)
def test_bad_content_is_a_clear_error_before_any_work(method, style, bad, message):
    with pytest.raises(ValueError, match=message):
        napari_nst.stylize(bad, style, **quick(method))


def test_a_flat_content_and_a_flat_style_give_a_finite_result(method):
    flat = np.full((48, 48, 3), 120, np.uint8)
    result = napari_nst.stylize(flat, flat, **quick(method, size=48))
    assert np.isfinite(result).all() and result.shape == (48, 48, 3)
