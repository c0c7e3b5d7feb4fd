"""Arbitrary-style prediction (Ghiasi et al. 2017) with Google's int8 TFLite weights.

Parity is checked against the reference runtime ai-edge-litert running the same files on real
images, at two levels:

* every convolution on its own, fed the reference's own (dequantised) input: TFLite accumulates
  int8 x int8 products exactly in int32 and rounds once when it requantises the output, so a
  correct float implementation is within half an output quantisation step, and anything else
  (a weight mapped to the wrong layer, a transposed kernel, wrong padding or stride, gamma and
  beta swapped) is off by many steps;
* the whole networks: TFLite also quantises every activation to int8 (steps of 0.04 to 0.5) and
  even the squared deviations inside the instance norms (steps up to 4.8, which biases its
  variances low by up to ~8 %), so the float network differs from it by a mean of 0.02-0.04 on
  the [0, 1] output; the tolerances below sit above that and far below the difference between
  two styles.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import napari_nst
from napari_nst.engine import weights as weights_module
from napari_nst.engine.methods.predict.magenta_weights import (
    converted_cache_path,
    layer_name,
    load_model,
    load_state_dict,
)
from napari_nst.engine.methods.predict.renderer import render
from napari_nst.engine.methods.predict.style_embedding import blend_embeddings, embed, style_crops
from napari_nst.engine.methods.predict.tflite import read_tflite
from napari_nst.engine.output import luminance
from napari_nst.engine.run import predict_batch
from napari_nst.engine.weights import (
    MAGENTA_PREDICTOR,
    MAGENTA_TRANSFORMER,
    WeightsError,
    sha256_of,
)
from tests.helpers import magenta_weights_dir, shared_image, skip_or_fail

from ._predict_helpers import (
    litert_embedding,
    litert_interpreter,
    litert_tensor,
    litert_transfer,
    square_image,
)

FAST = dict(method="predict", device="cpu", size=64)
STYLES = ("starry_night.jpg", "the_scream.jpg", "woman-with-hat-matisse.jpg")


@pytest.fixture(scope="module")
def weights_dir():
    return magenta_weights_dir()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("napari-nst-cache")


@pytest.fixture
def env(monkeypatch, weights_dir, cache_dir):
    """Weights from ../shared/weights (as CI and users without network do), converted state
    dicts into a temporary cache."""
    monkeypatch.setenv(weights_module.WEIGHTS_DIR_ENV, str(weights_dir))
    monkeypatch.setenv(weights_module.CACHE_DIR_ENV, str(cache_dir))
    return weights_dir


@pytest.fixture(scope="module")
def litert():
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        skip_or_fail(
            "ai-edge-litert (the reference TFLite runtime, a test dependency) is not "
            "installed: pip install ai-edge-litert"
        )


@pytest.fixture(scope="module")
def content():
    return shared_image("tubingen.jpg", 96)


@pytest.fixture(scope="module")
def style():
    return shared_image("starry_night.jpg", 128)


@pytest.fixture(scope="module")
def style2():
    return shared_image("the_scream.jpg", 128)


def models():
    return load_model("predictor"), load_model("transformer")


def working(image: np.ndarray, **settings) -> np.ndarray:
    """The content as the engine sees it: prepared and resized to the working size."""
    from napari_nst.engine.images import prepare_image
    from napari_nst.engine.methods.predict.ghiasi import working_content

    return working_content(prepare_image(image), napari_nst.Settings(**{**FAST, **settings})).rgb


def as_embedding(vector: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(vector, dtype=np.float32)).reshape(1, -1, 1, 1)


# --- the TFLite reader ---------------------------------------------------------------------------


@pytest.mark.shared
def test_reader_dequantises_like_the_reference_runtime(env, litert):
    """Every int8/int32 constant, dequantised with its per-channel scales, equals the reference
    runtime's own view of the same tensor."""
    path = env / MAGENTA_TRANSFORMER.filename
    graph = read_tflite(path)
    assert graph.inputs == {
        "content_image": (1, 384, 384, 3),
        "mobilenet_conv/Conv/BiasAdd": (1, 1, 1, 100),
    }
    interpreter = litert_interpreter(path)
    checked = 0
    for detail in interpreter.get_tensor_details():
        name = detail["name"]
        params = detail["quantization_parameters"]
        if name not in graph.constants or len(params["scales"]) < 2:
            continue
        raw = interpreter.get_tensor(detail["index"]).astype(np.float64)
        shape = [1] * raw.ndim
        shape[params["quantized_dimension"]] = -1
        expected = (raw - params["zero_points"].reshape(shape)) * params["scales"].reshape(shape)
        np.testing.assert_allclose(graph.constants[name], expected, rtol=1e-6, atol=1e-9)
        checked += 1
    assert checked >= 3 * 16  # all per-channel kernels and biases of the 16 + 26 convolutions
    kernel = graph.constants["transformer/contract/conv1/weights"]
    assert kernel.shape == (8, 9, 9, 3) and kernel.dtype == np.float32


def test_reader_rejects_a_file_that_is_not_tflite(tmp_path):
    from napari_nst.engine.methods.predict.tflite import TFLiteError

    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(TFLiteError, match="not a TFLite model"):
        read_tflite(bad)


# --- parity with the reference runtime ------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("kind", ["predictor", "transformer"])
def test_every_convolution_matches_the_reference_within_half_a_step(env, litert, kind):
    entry = MAGENTA_PREDICTOR if kind == "predictor" else MAGENTA_TRANSFORMER
    path = env / entry.filename
    style256 = square_image(shared_image("the_scream.jpg"), 256)
    predictor_rt = litert_interpreter(env / MAGENTA_PREDICTOR.filename, keep_intermediates=True)
    embedding = litert_embedding(predictor_rt, style256)
    if kind == "predictor":
        interpreter = predictor_rt
    else:
        interpreter = litert_interpreter(path, keep_intermediates=True)
        litert_transfer(interpreter, square_image(shared_image("tubingen.jpg"), 384), embedding)
    model = load_model(kind)
    layers = dict(model.named_modules())
    details = {d["name"]: d for d in interpreter.get_tensor_details()}
    convolutions = [
        op for op in read_tflite(path).operators if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")
    ]
    assert len(convolutions) == (53 if kind == "predictor" else 42)
    for op in convolutions:
        layer = layers[layer_name(op.inputs[1])]
        x, _ = litert_tensor(interpreter, op.inputs[0])
        expected, step = litert_tensor(interpreter, op.outputs[0])
        with torch.inference_mode():
            x = torch.from_numpy(x)
            if op.options["padding"] == "VALID":  # the transformer: input already mirror-padded
                y = torch.nn.functional.conv2d(
                    x, layer.weight, layer.bias, stride=op.options["stride"]
                )
            else:
                y = layer(x)
            y = {"relu": y.relu(), "relu6": y.clamp(0, 6), None: y}[op.options["activation"]]
        scale, zero_point = details[op.outputs[0]]["quantization"]
        y = y.clamp((-128 - zero_point) * scale, (127 - zero_point) * scale).numpy()  # int8 range
        error = np.abs(y - expected).max() / step
        assert error <= 0.5 + 1e-3, f"{op.outputs[0]}: {error:.2f} quantisation steps off"


@pytest.mark.shared
def test_style_embedding_matches_the_reference(env, litert):
    """Max difference within 3 steps of the bottleneck's int8 grid (0.0227; measured 1.2-1.4),
    mean within 0.75 of a step (measured 0.35-0.45); different styles differ by far more."""
    interpreter = litert_interpreter(env / MAGENTA_PREDICTOR.filename)
    predictor = load_model("predictor")
    ours, theirs = [], []
    for name in STYLES:
        image = square_image(shared_image(name), 256)
        theirs.append(litert_embedding(interpreter, image))
        with torch.inference_mode():
            ours.append(predictor(torch.from_numpy(image).permute(2, 0, 1)[None]).flatten().numpy())
    step = 0.0227
    for a, b in zip(ours, theirs):
        difference = np.abs(a - b)
        assert difference.max() < 3 * step and difference.mean() < 0.75 * step
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.9995
    assert np.abs(theirs[0] - theirs[1]).mean() > 20 * np.abs(ours[0] - theirs[0]).mean()


@pytest.mark.shared
def test_stylised_output_matches_the_reference(env, litert):
    """The transformer on the same embedding, and the whole pipeline, at the export size 384."""
    predictor_rt = litert_interpreter(env / MAGENTA_PREDICTOR.filename)
    transfer_rt = litert_interpreter(env / MAGENTA_TRANSFORMER.filename)
    predictor, transformer = models()
    content384 = square_image(shared_image("tubingen.jpg"), 384)
    outputs = []
    for name in STYLES[:2]:
        style256 = square_image(shared_image(name), 256)
        embedding = litert_embedding(predictor_rt, style256)
        expected = litert_transfer(transfer_rt, content384, embedding)
        same_embedding = render(transformer, content384, as_embedding(embedding))
        whole_pipeline = render(transformer, content384, embed(predictor, style256))
        for ours in (same_embedding, whole_pipeline):
            difference = np.abs(ours - expected)
            assert difference.mean() < 0.06, difference.mean()
            assert np.percentile(difference, 99) < 0.25
        outputs.append((same_embedding, expected))
    between_styles = np.abs(outputs[0][1] - outputs[1][1]).mean()
    assert between_styles > 3 * np.abs(outputs[0][0] - outputs[0][1]).mean()


# --- the readable reference module (the renderer's own tests: tests/test_renderer.py) ----------


@pytest.mark.shared
def test_module_rejects_sizes_that_are_not_multiples_of_4(env):
    transformer = load_model("transformer")
    with pytest.raises(ValueError, match="multiples of 4"):
        transformer(torch.rand(1, 3, 18, 20), torch.zeros(1, 100, 1, 1))


# --- tiling ---------------------------------------------------------------------------------------


@pytest.mark.shared
def test_tile_size_setting_reaches_the_renderer(env, content, style):
    whole = napari_nst.stylize(content, style, **{**FAST, "size": 160}, tile_size=1024)
    tiled = napari_nst.stylize(content, style, **{**FAST, "size": 160}, tile_size=64)
    assert whole.shape == tiled.shape == (120, 160, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


@pytest.mark.shared
@pytest.mark.parametrize("case", ["rgb", "rgba, keep_colors, strength", "gray16, content range"])
def test_a_result_too_big_for_memory_goes_through_files(
    env, content, style, monkeypatch, tmp_path, case
):
    """Above ``STREAM_PIXELS`` a working image is rendered through files (the features and the
    raw output on disk, finished a block at a time, into a file the result maps): the result is
    the in-memory one, for every kind of input and output, and no temporary file is left
    behind."""
    import tempfile

    from napari_nst.engine.methods.predict import ghiasi as predict_module

    image = content
    options = dict(FAST, size=96, tile_size=64)
    if case.startswith("rgba"):
        image = np.concatenate(
            [
                content,
                np.arange(content[..., :1].size, dtype=np.uint8).reshape(content.shape[:2] + (1,)),
            ],
            axis=2,
        )
        options.update(keep_colors=True, style_strength=0.5)
    elif case.startswith("gray16"):
        image = content[..., 1].astype(np.uint16) * 200
        options.update(output_range="content")
    expected = napari_nst.stylize(image, style, **options)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(predict_module, "STREAM_PIXELS", 50 * 50)
    monkeypatch.setattr(predict_module, "STREAM_BLOCK", 40)  # blocks across the tiles
    (final,) = napari_nst.iterate(image, style, **options)
    assert final.info["tiled"] == "through files"
    assert final.image.shape == expected.shape and final.image.dtype == expected.dtype
    # the result is a map of an unnamed file: read where needed, writable like any array
    assert isinstance(final.image, np.memmap) and final.image.flags.writeable
    if case.startswith("gray16"):
        assert np.abs(final.image.astype(np.int32) - expected).max() <= 200  # rounding only
    else:
        np.testing.assert_allclose(final.image, expected, atol=1e-6)
    assert not list(tmp_path.iterdir())
    (batched,) = predict_batch([image], style, **options)
    np.testing.assert_array_equal(batched, final.image)


# --- the engine's input contract -----------------------------------------------------------------


@pytest.mark.shared
def test_iterate_yields_one_final_iterate(env, content, style):
    iterates = list(napari_nst.iterate(content, style, **FAST))
    assert len(iterates) == 1
    final = iterates[0]
    assert (final.step, final.total_steps, final.losses) == (1, 1, {})
    assert final.done and final.elapsed > 0
    assert final.image.shape == (48, 64, 3) and final.scale == (48, 64)
    assert final.image.dtype == np.float32
    assert 0.0 <= final.image.min() and final.image.max() <= 1.0
    assert np.abs(final.image - working(content)).mean() > 0.05  # it did stylise


@pytest.mark.shared
def test_odd_and_tiny_sizes(env, content, style):
    tiny = content[:17, :23]
    result = napari_nst.stylize(tiny, style, **{**FAST, "size": 23})
    assert result.shape == (17, 23, 3) and np.isfinite(result).all()
    odd = napari_nst.stylize(content[:61, :45], style, **{**FAST, "size": 61})
    assert odd.shape == (61, 45, 3)


@pytest.mark.shared
def test_grayscale_rgba_and_16_bit_inputs(env, content, style):
    rgb = napari_nst.stylize(content, style, **FAST)
    rgba = np.concatenate([content, np.full(content.shape[:2] + (1,), 7, np.uint8)], axis=2)
    with_alpha = napari_nst.stylize(rgba, style, **FAST)
    np.testing.assert_array_equal(with_alpha[..., :3], rgb)  # alpha does not change the colours
    np.testing.assert_allclose(with_alpha[..., 3], 7 / 255, atol=1e-6)  # and is kept

    wide = content.astype(np.uint16) * 257  # 16 bits, mapped by its own min..max
    low, high = float(content.min()), float(content.max())
    stretched = (content.astype(np.float32) - low) / (high - low)
    np.testing.assert_allclose(
        napari_nst.stylize(wide, style, **FAST),
        napari_nst.stylize(stretched, style, **FAST),
        atol=1e-5,
    )

    gray = napari_nst.stylize(content[..., 1], style, **FAST)
    assert gray.shape == (48, 64, 3)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 1], gray[..., 2])


@pytest.mark.shared
def test_keep_colors_keeps_the_content_chroma(env, content, style):
    from napari_nst.engine.output import _RGB_TO_YIQ

    kept = napari_nst.stylize(content, style, **FAST, keep_colors=True)
    plain = napari_nst.stylize(content, style, **FAST)
    small = working(content)
    chroma = lambda image: (image @ _RGB_TO_YIQ.T)[..., 1:]  # noqa: E731
    inside = (kept > 0.01).all(axis=2) & (kept < 0.99).all(axis=2)  # not clipped
    assert np.abs(chroma(kept) - chroma(small))[inside].mean() < 0.03
    assert (
        np.abs(chroma(plain) - chroma(small)).mean()
        > 2 * np.abs(chroma(kept) - chroma(small)).mean()
    )
    np.testing.assert_allclose(luminance(kept)[inside], luminance(plain)[inside], atol=0.02)


# --- strength, blending, crops, batches -----------------------------------------------------------


@pytest.mark.shared
def test_strength_interpolates_from_the_contents_own_style(env, content, style):
    predictor, transformer = models()
    rgb = working(content)
    own = render(transformer, rgb, embed(predictor, rgb))
    full = render(transformer, rgb, embed(predictor, style.astype(np.float32) / 255))
    np.testing.assert_allclose(
        napari_nst.stylize(content, style, **FAST, style_strength=0.0), own, atol=1e-6
    )
    np.testing.assert_allclose(
        napari_nst.stylize(content, style, **FAST, style_strength=1.0), full, atol=1e-6
    )
    half = napari_nst.stylize(content, style, **FAST, style_strength=0.5)
    assert 0.2 < np.abs(half - own).mean() / np.abs(full - own).mean() < 0.8


@pytest.mark.shared
def test_blend_weights_are_normalised_and_validated(env, content, style, style2):
    both = [style, style2]
    equal = napari_nst.stylize(content, both, **FAST)
    np.testing.assert_allclose(
        napari_nst.stylize(content, both, **FAST, style_blend=(3, 3)), equal, atol=1e-6
    )
    only_first = napari_nst.stylize(content, both, **FAST, style_blend=(2.0, 0.0))
    np.testing.assert_allclose(only_first, napari_nst.stylize(content, style, **FAST), atol=1e-6)
    assert np.abs(equal - only_first).mean() > 0.01
    for bad in ((1.0, -0.5), (0.0, 0.0)):
        with pytest.raises(ValueError, match="style_blend"):
            napari_nst.stylize(content, both, **FAST, style_blend=bad)
    with pytest.raises(ValueError, match="one weight per style"):
        napari_nst.stylize(content, both, **FAST, style_blend=(1.0,))


def test_blend_embeddings_arithmetic():
    a, b, own = (
        torch.full((1, 100, 1, 1), 1.0),
        torch.full((1, 100, 1, 1), 3.0),
        torch.zeros(1, 100, 1, 1),
    )
    assert blend_embeddings([a, b], (1, 3)).flatten()[0].item() == pytest.approx(2.5)
    assert blend_embeddings([a, b], None, own, 0.5).flatten()[0].item() == pytest.approx(1.0)


def test_style_crops_cover_a_large_style_image():
    image = np.zeros((1200, 2000, 3), np.float32)
    assert style_crops(image, 1) == [(0, 400, 1200)]
    crops = style_crops(image, 6)
    assert len(crops) == 6 and len(set(crops)) == 6
    for top, left, side in crops:
        assert side == 490 and 0 <= top <= 1200 - side and 0 <= left <= 2000 - side
    assert min(c[1] for c in crops) == 0 and max(c[1] + c[2] for c in crops) == 2000
    small = np.zeros((100, 300, 3), np.float32)
    assert all(side == 100 for _, _, side in style_crops(small, 4))  # never beyond the image


@pytest.mark.shared
def test_style_crops_average_the_embeddings(env):
    predictor = load_model("predictor")
    large = shared_image("the_scream.jpg").astype(np.float32) / 255  # 1528 x 1200
    averaged = embed(predictor, large, crops=4)
    per_crop = [
        embed(predictor, large[top : top + s, left : left + s])
        for top, left, s in style_crops(large, 4)
    ]
    torch.testing.assert_close(averaged, torch.stack(per_crop).mean(0), atol=1e-4, rtol=1e-4)
    assert (averaged - embed(predictor, large)).abs().mean() > 0.01
    content = shared_image("tubingen.jpg", 64)
    one = napari_nst.stylize(content, large, method="predict", device="cpu", size=64)
    four = napari_nst.stylize(
        content, large, method="predict", device="cpu", size=64, style_crops=4
    )
    assert np.abs(one - four).mean() > 0.005


@pytest.mark.shared
def test_predict_batch_equals_single_runs(env, content, style):
    other = shared_image("golden_gate.jpg", 80)
    results = predict_batch([content, other], style, **FAST)
    assert [r.shape for r in results] == [(48, 64, 3), (48, 64, 3)]
    for single, batched in zip((content, other), results):
        np.testing.assert_allclose(batched, napari_nst.stylize(single, style, **FAST), atol=1e-6)
    assert predict_batch([], style, **FAST) == []
    assert napari_nst.predict_batch is predict_batch


@pytest.mark.shared
def test_predict_as_initial_image_for_optimize(env, content, style, vgg_file):
    result = napari_nst.stylize(
        content,
        style,
        method="optimize",
        init="predict",
        steps=1,
        size=32,
        device="cpu",
        coarse_to_fine=False,
        min_working_size=32,
        vgg_weights=vgg_file,
    )
    assert result.shape == (24, 32, 3)


@pytest.mark.shared
@pytest.mark.parametrize("strength", [1.0, 0.5, 0.0])
def test_optimize_starts_from_predicts_result_by_default(env, content, style, vgg_file, strength):
    """optimize's default start (init="predict", ``optimize.start_from``) is predict's result
    for the same content, style and size, mixed with the content by style_strength (0: the
    content itself). One Adam step of 1e-5 moves no pixel by more than that."""
    assert napari_nst.Settings().init == "predict"
    first = next(
        iter(
            napari_nst.iterate(
                content,
                style,
                method="optimize",
                device="cpu",
                size=64,
                steps=1,
                optimizer="adam",
                learning_rate=1e-5,
                coarse_to_fine=False,
                vgg_weights=vgg_file,
                style_strength=strength,
            )
        )
    )
    predicted = napari_nst.stylize(content, style, **FAST)  # at full strength: mixed once
    plain = working(content)
    expected = strength * predicted + (1.0 - strength) * plain
    assert first.step == 1 and first.image.shape == expected.shape == (48, 64, 3)
    np.testing.assert_allclose(first.image, expected, atol=1e-4)
    if strength > 0:  # not the content's start
        assert np.abs(first.image - plain).mean() > 0.03 * strength


@pytest.mark.shared
def test_device_is_honoured(env, content, style):
    with pytest.raises(napari_nst.DeviceError):
        napari_nst.stylize(content, style, method="predict", device="cuda:7", size=64)


@pytest.mark.shared
@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device: the GPU half of the device test (cuda vs cpu) was not run",
)
def test_a_cuda_run_matches_the_cpu_run(env, content, style):
    on_gpu = napari_nst.stylize(content, style, **{**FAST, "device": "cuda"})
    np.testing.assert_allclose(on_gpu, napari_nst.stylize(content, style, **FAST), atol=2e-3)


# --- weights: lookup, cache and every error path --------------------------------------------------


@pytest.mark.shared
def test_explicit_paths_are_used(env, tmp_path, monkeypatch, content, style):
    monkeypatch.delenv(weights_module.WEIGHTS_DIR_ENV)
    for entry in (MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER):
        shutil.copy(env / entry.filename, tmp_path / entry.filename)
    result = napari_nst.stylize(
        content,
        style,
        **FAST,
        predictor_weights=tmp_path / MAGENTA_PREDICTOR.filename,
        transformer_weights=tmp_path / MAGENTA_TRANSFORMER.filename,
    )
    assert result.shape == (48, 64, 3)


@pytest.mark.shared
def test_missing_explicit_file(env, content, style, tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        napari_nst.stylize(content, style, **FAST, predictor_weights=tmp_path / "nope.tflite")


@pytest.mark.shared
def test_corrupt_explicit_file(env, content, style, tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"definitely not a flatbuffer" * 100)
    with pytest.raises(WeightsError, match="cannot read the Magenta .* transformer"):
        napari_nst.stylize(content, style, **FAST, transformer_weights=bad)


@pytest.mark.shared
def test_wrong_explicit_file(env, content, style):
    with pytest.raises(WeightsError, match="is not the Magenta .* style predictor"):
        napari_nst.stylize(
            content, style, **FAST, predictor_weights=env / MAGENTA_TRANSFORMER.filename
        )


@pytest.mark.shared
def test_hash_mismatch_in_the_weights_directory(env, monkeypatch, tmp_path, content, style):
    directory = tmp_path / "weights"
    directory.mkdir()
    shutil.copy(env / MAGENTA_PREDICTOR.filename, directory)
    (directory / MAGENTA_TRANSFORMER.filename).write_bytes(b"\x00" * 1000)
    monkeypatch.setenv(weights_module.WEIGHTS_DIR_ENV, str(directory))
    with pytest.raises(WeightsError, match="sha256") as info:
        napari_nst.stylize(content, style, **FAST)
    assert MAGENTA_TRANSFORMER.filename in str(info.value)


@pytest.mark.shared
def test_download_failure_is_a_clear_error(mirror, content, style):
    # the mirror does not have the files: HTTP 404
    with pytest.raises(WeightsError) as info:
        napari_nst.stylize(content, style, **FAST)
    message = str(info.value)
    assert mirror.url in message and "404" in message
    assert MAGENTA_PREDICTOR.url in message and MAGENTA_PREDICTOR.filename in message
    assert weights_module.WEIGHTS_DIR_ENV in message


@pytest.mark.shared
def test_download_of_a_bad_file_is_rejected_and_removed(mirror, content, style):
    (mirror.folder / MAGENTA_PREDICTOR.filename).write_bytes(b"<html>captive portal</html>")
    with pytest.raises(WeightsError, match="sha256"):
        napari_nst.stylize(content, style, **FAST)
    cache = MAGENTA_PREDICTOR.cache_dir()
    assert not cache.exists() or not any(cache.iterdir())  # no file, no partial file


@pytest.mark.shared
def test_download_then_cache(mirror, weights_dir, content, style):
    for entry in (MAGENTA_PREDICTOR, MAGENTA_TRANSFORMER):
        shutil.copy(weights_dir / entry.filename, mirror.folder)
    first = napari_nst.stylize(content, style, **FAST)
    assert sorted(mirror.requests) == sorted(
        [MAGENTA_PREDICTOR.filename, MAGENTA_TRANSFORMER.filename]
    )
    assert (MAGENTA_TRANSFORMER.cache_dir() / MAGENTA_TRANSFORMER.filename).is_file()
    second = napari_nst.stylize(content, style, **FAST)  # from the cache: no second download
    assert len(mirror.requests) == 2
    np.testing.assert_array_equal(first, second)


@pytest.mark.shared
def test_predict_results_carry_provenance(env, content, style):
    """The same provenance as optimize: method and device stamped by the dispatcher, the weights
    files and the arithmetic by the method."""
    final = list(napari_nst.iterate(content, style, **FAST))[-1]
    assert final.info == {
        "method": "predict",
        "device": "cpu",
        "precision": "float32",
        "weights": f"file:{MAGENTA_PREDICTOR.filename} + file:{MAGENTA_TRANSFORMER.filename}",
        "weights_sha256": {
            MAGENTA_PREDICTOR.filename: MAGENTA_PREDICTOR.sha256,
            MAGENTA_TRANSFORMER.filename: MAGENTA_TRANSFORMER.sha256,
        },
    }


@pytest.mark.shared
def test_weights_dir_setting_finds_the_files_without_a_download(
    mirror, weights_dir, content, style
):
    napari_nst.stylize(content, style, weights_dir=str(weights_dir), **FAST)
    assert mirror.requests == []


@pytest.mark.shared
def test_converted_state_dict_is_cached_by_hash(env, monkeypatch, tmp_path):
    monkeypatch.setenv(weights_module.CACHE_DIR_ENV, str(tmp_path))
    path = env / MAGENTA_TRANSFORMER.filename
    state = load_state_dict("transformer", path)
    cached = converted_cache_path(MAGENTA_TRANSFORMER, sha256_of(path))
    assert cached.is_file() and cached.parent.parent == tmp_path

    import napari_nst.engine.methods.predict.magenta_weights as magenta_weights

    def no_parsing(path):
        raise AssertionError("the cached conversion should have been used")

    parse = magenta_weights.read_tflite
    monkeypatch.setattr(magenta_weights, "read_tflite", no_parsing)
    again = load_state_dict("transformer", path)
    assert again.keys() == state.keys()
    assert all(torch.equal(again[k], state[k]) for k in state)

    monkeypatch.setattr(magenta_weights, "read_tflite", parse)
    cached.write_bytes(b"damaged")  # a damaged cache entry is converted again
    repaired = load_state_dict("transformer", path)
    assert all(torch.equal(repaired[k], state[k]) for k in state)
    assert load_state_dict("transformer", path).keys() == state.keys()
