"""Engine tests: losses against hand-computed values, the optimisation loop, the input contract."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import napari_nst
from napari_nst import Settings
from napari_nst.engine.images import prepare_image
from napari_nst.engine.methods.optimize.gatys import scale_sizes, steps_per_scale
from napari_nst.engine.methods.optimize.losses import (
    StyleTransferLoss,
    gram_matrix,
    normalized_blend_weights,
    relative_squared_error,
    total_variation,
)
from napari_nst.engine.vgg import LAYER_NAMES, VGGFeatures
from tests.helpers import shared_image

# the engine's mechanics from the content (the default predict start needs Magenta's weights)
FAST = dict(
    size=48,
    steps=4,
    emit_every=2,
    device="cpu",
    coarse_to_fine=False,
    min_working_size=16,
    init="content",
)


def test_import_does_not_load_torch():
    code = "import napari_nst, sys; napari_nst.Settings; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- losses, by hand ---------------------------------------------------------------------------


def test_gram_matrix_by_hand():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)  # 2 channels, 2 positions
    expected = torch.tensor([[1 + 4, 3 + 8], [3 + 8, 9 + 16]]) / 2.0
    assert torch.allclose(gram_matrix(features)[0], expected)


def test_gram_matrix_gradient_matches_finite_differences():
    features = torch.rand(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (features,))
    # and the one-matmul backward equals autograd's own on the plain expression
    flat = features.detach().reshape(2, 3, 20).requires_grad_(True)
    weights = torch.rand(2, 3, 3, dtype=torch.float64)
    ((flat @ flat.transpose(1, 2) / 20) * weights).sum().backward()
    (gram_matrix(features) * weights).sum().backward()
    assert torch.allclose(features.grad.reshape(2, 3, 20), flat.grad)


def test_relative_squared_error_by_hand():
    value = relative_squared_error(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 5.0]))
    assert value.item() == pytest.approx((1 + 4 + 4) / 25)
    assert relative_squared_error(torch.ones(3), torch.ones(3)).item() == 0.0


def test_relative_error_is_free_of_feature_scale_and_pulls_like_a_spring():
    """The same value whatever a network's activation scale (so one set of weights serves both
    networks), and a gradient that grows in proportion to the distance from the target (so the
    content and style terms balance instead of one winning everywhere)."""
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.random((1, 8, 6, 6), dtype=np.float32))
    direction = torch.from_numpy(rng.standard_normal((1, 8, 6, 6), dtype=np.float32))
    near = relative_squared_error(target + 0.1 * direction, target)
    assert relative_squared_error(
        1e3 * (target + 0.1 * direction), 1e3 * target
    ).item() == pytest.approx(near.item(), rel=1e-5)
    norms = []
    for distance in (0.1, 0.4):
        point = (target + distance * direction).requires_grad_(True)
        relative_squared_error(point, target).backward()
        norms.append(point.grad.norm().item())
    assert norms[1] / norms[0] == pytest.approx(4.0, rel=1e-4)


def test_total_variation_by_hand():
    image = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    # vertical differences 2, 3 -> mean square 6.5; horizontal 1, 2 -> 2.5
    assert total_variation(image).item() == pytest.approx(9.0)


def test_loss_normalisation_is_size_free():
    """The style term of an image against itself scaled up has the same order at any size."""
    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.random((1, 8, 16, 16), dtype=np.float32))
    big = torch.nn.functional.interpolate(small, scale_factor=4, mode="nearest")
    target = gram_matrix(torch.from_numpy(rng.random((1, 8, 16, 16), dtype=np.float32)))
    a = relative_squared_error(gram_matrix(small), target)
    b = relative_squared_error(gram_matrix(big), target)
    assert a.item() == pytest.approx(b.item(), rel=1e-4)


def test_style_loss_weights_layers_and_gradient_flows(random_vgg):
    features = VGGFeatures(random_vgg, ["conv4_2", "conv1_1", "conv2_1"])
    content = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    loss_fn = StyleTransferLoss(
        features,
        content,
        [style],
        content_layers=["conv4_2"],
        style_layers=["conv1_1", "conv2_1"],
        style_layer_weights=[3, 1],
    )
    assert loss_fn.style_layer_weights == pytest.approx([0.75, 0.25])
    image = content.clone().requires_grad_(True)
    total, terms = loss_fn(image)
    assert terms["content"].item() == 0.0  # the content itself has no content loss
    assert terms["style"].item() > 0
    total.backward()
    assert (
        image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    )
    # the VGG weights are frozen: only the pixels are optimised
    assert all(p.grad is None for p in features.parameters())


def test_bfloat16_passes_keep_float32_losses_close_to_float32(random_vgg):
    """precision=bfloat16 runs only the VGG passes in bf16: the terms come back float32, and the
    loss and its gradient stay close to the float32 ones."""
    features = VGGFeatures(random_vgg, ["conv4_2", "conv1_1", "conv3_1", "conv5_1"])
    generator = torch.Generator().manual_seed(3)
    content, style = (torch.rand(1, 3, 64, 64, generator=generator) for _ in range(2))
    image = (content + 0.1 * torch.randn(1, 3, 64, 64, generator=generator)).clamp(0, 1)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        loss_fn = StyleTransferLoss(
            features,
            content,
            [style],
            content_layers=["conv4_2"],
            style_layers=["conv1_1", "conv3_1", "conv5_1"],
            compute_dtype=dtype,
        )
        pixels = image.clone().requires_grad_(True)
        total, terms = loss_fn(pixels)
        total.backward()
        assert total.dtype == torch.float32 and all(
            t.dtype == torch.float32 for t in terms.values()
        )
        assert all(loss.target.dtype == torch.float32 for loss in loss_fn.style_losses)
        results[dtype] = (total.item(), pixels.grad.flatten())
    (loss32, grad32), (loss16, grad16) = results[torch.float32], results[torch.bfloat16]
    assert loss16 == pytest.approx(loss32, rel=0.03)
    assert torch.nn.functional.cosine_similarity(grad32, grad16, dim=0) > 0.97
    assert not torch.equal(grad32, grad16)  # bf16 really ran


def test_precision_setting(random_vgg, content_small, style_small):
    from napari_nst.engine.devices import resolve_dtype

    cpu = torch.device("cpu")
    assert resolve_dtype("float32", cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_dtype("auto", cpu) is (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("auto", torch.device("cuda", 0)) is torch.float32  # not measured there
    with pytest.raises(ValueError, match="precision='half' is not supported"):
        napari_nst.Settings(precision="half")
    for precision in ("float32", "bfloat16"):
        final = list(
            napari_nst.iterate(
                content_small, style_small, **FAST, precision=precision, vgg_weights=random_vgg
            )
        )[-1]
        assert final.info["precision"] == precision
        assert final.image.dtype == np.float32 and np.isfinite(final.image).all()


def test_blend_weights_are_normalised_or_rejected():
    assert normalized_blend_weights([2, 6], 2) == pytest.approx([0.25, 0.75])
    assert normalized_blend_weights(None, 4) == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError, match="one weight per style"):
        normalized_blend_weights([1], 2)
    with pytest.raises(ValueError, match="must not hold negative weights"):
        normalized_blend_weights([1, -1], 2)
    with pytest.raises(ValueError, match="positive sum"):
        normalized_blend_weights([0, 0], 2)


def test_vgg_layer_names_and_cut(random_vgg):
    assert LAYER_NAMES[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert "conv5_4" in LAYER_NAMES and "relu5_4" in LAYER_NAMES
    features = VGGFeatures(random_vgg, ["conv3_1"], pooling="avg")
    assert len(features.body) == LAYER_NAMES.index("conv3_1") + 1
    assert isinstance(features.body[4], torch.nn.AvgPool2d)
    assert isinstance(
        VGGFeatures(random_vgg, ["conv3_1"], pooling="max").body[4], torch.nn.MaxPool2d
    )
    out = features(torch.rand(1, 3, 32, 32))
    assert list(out) == ["conv3_1"] and out["conv3_1"].shape == (1, 256, 8, 8)
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        VGGFeatures(random_vgg, ["conv6_1"])


# --- the optimisation loop ---------------------------------------------------------------------


def test_total_loss_falls_on_real_images(random_vgg, content_small, style_small):
    iterates = list(
        napari_nst.iterate(
            content_small,
            style_small,
            vgg_weights=random_vgg,
            **{**FAST, "steps": 12, "emit_every": 3},
        )
    )
    totals = [it.losses["total"] for it in iterates]
    assert [it.step for it in iterates] == [3, 6, 9, 12]
    assert totals[-1] < 0.7 * totals[0]
    final = iterates[-1].image
    assert final.dtype == np.float32 and final.shape == (36, 48, 3)
    assert 0.0 <= final.min() and final.max() <= 1.0
    assert not np.allclose(final, prepare_image(content_small).rgb[:36, :48], atol=0.02)


def test_adam_and_noise_init(random_vgg, content_small, style_small):
    iterates = list(
        napari_nst.iterate(
            content_small,
            style_small,
            vgg_weights=random_vgg,
            optimizer="adam",
            learning_rate=0.05,
            **{**FAST, "steps": 10, "emit_every": 5, "init": "noise"},
        )
    )
    assert iterates[-1].losses["total"] < iterates[0].losses["total"]


def test_seed_makes_runs_reproducible(random_vgg, content_small, style_small):
    def run(seed):
        return napari_nst.stylize(
            content_small,
            style_small,
            vgg_weights=random_vgg,
            seed=seed,
            **{**FAST, "init": "noise"},
        )

    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_coarse_to_fine_schedule(random_vgg, content_small, style_small):
    assert scale_sizes(512, 128, True) == [128, 181, 256, 362, 512]
    assert scale_sizes(512, 128, False) == [512]
    assert scale_sizes(100, 128, True) == [100]
    assert steps_per_scale(10, 3) == [3, 3, 4]
    assert steps_per_scale(2, 5) == [1, 1]
    steps = list(
        napari_nst.run_steps(
            content_small,
            style_small,
            vgg_weights=random_vgg,
            size=48,
            min_size=24,
            steps=6,
            min_working_size=48,
            emit_every=100,
            device="cpu",
            init="content",
            coarse_to_fine=True,
        )
    )
    scales = [it.scale for it in steps]
    assert scales[0] == (18, 24)  # 24 px long side and scales[-1] == (36, 48)
    assert len(steps) == 6 and steps[-1].emitted and not any(it.emitted for it in steps[:-1])
    # the work done counts a step by its pixels: a coarse scale's steps are the cheap ones
    pixels = [h * w for h, w in scales]
    expected = np.cumsum(pixels) / sum(pixels)
    np.testing.assert_allclose([it.progress for it in steps], expected)
    assert steps[2].progress < 0.4  # half the steps, under half the work
    halfway = steps[2]
    assert halfway.seconds_left > halfway.elapsed  # not "as long again" as step counting says


def test_size_and_style_scale(random_vgg, content_small, style_small):
    image = napari_nst.stylize(
        content_small,
        style_small,
        vgg_weights=random_vgg,
        **{**FAST, "size": 40, "style_scale": 0.5},
    )
    assert image.shape == (30, 40, 3)


def test_a_result_below_the_working_floor_is_the_floors_result_shrunk(random_vgg, style_small):
    """size 32 with min_working_size 48 optimises exactly as a 48 px run (the same content,
    enlarged; the style at 48 px) and hands out that image shrunk to 32 px, every iterate."""
    import torch.nn.functional as F

    content = shared_image("tubingen.jpg", 32)  # 24 x 32: both runs enlarge the same pixels
    run = dict(FAST, vgg_weights=random_vgg, steps=3, emit_every=1, min_working_size=0)
    small = list(
        napari_nst.iterate(content, style_small, **dict(run, size=32, min_working_size=48))
    )
    large = list(napari_nst.iterate(content, style_small, **dict(run, size=48)))
    assert [it.scale for it in small] == [(36, 48)] * 3  # worked at the floor
    assert [it.losses for it in small] == [it.losses for it in large]
    for a, b in zip(small, large):
        assert a.image.shape == (24, 32, 3) and b.image.shape == (36, 48, 3)
        shrunk = F.interpolate(
            torch.from_numpy(b.image).permute(2, 0, 1)[None],
            size=(24, 32),
            mode="bicubic",
            antialias=True,
            align_corners=False,
        )
        np.testing.assert_allclose(
            a.image, shrunk[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6
        )
    assert Settings(size=256, min_working_size=512).working_size() == 512
    assert Settings(size=256).working_size() == 256  # no floor by default: the predict start
    assert Settings(size=1024, min_working_size=512).working_size() == 1024
    assert Settings(method="predict", size=256).working_size() == 256  # predict has no floor


def test_keep_colors_keeps_content_chroma(random_vgg, content_small, style_small):
    from skimage.color import rgb2yiq  # an independent definition of YIQ

    free = napari_nst.stylize(content_small, style_small, vgg_weights=random_vgg, **FAST)
    kept = napari_nst.stylize(
        content_small, style_small, vgg_weights=random_vgg, keep_colors=True, **FAST
    )
    content = prepare_image(content_small).rgb[:36, :48]
    chroma = lambda rgb: rgb2yiq(rgb)[..., 1:]  # noqa: E731
    assert (
        np.abs(chroma(kept) - chroma(content)).mean()
        < np.abs(chroma(free) - chroma(content)).mean()
    )


def test_grayscale_content_gives_grayscale_result(random_vgg, style_small, content_small):
    gray = (content_small.astype(np.float32) @ [0.3, 0.6, 0.1]).astype(np.uint16) * 200
    image = napari_nst.stylize(gray, style_small, vgg_weights=random_vgg, **FAST)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(
        image[..., 0], image[..., 2]
    )


def test_init_array_and_strength_zero(random_vgg, content_small, style_small):
    start = np.full((36, 48, 3), 0.5, np.float32)
    first = next(
        napari_nst.iterate(
            content_small,
            style_small,
            vgg_weights=random_vgg,
            init_image=start,
            **{**FAST, "emit_every": 1, "steps": 1},
        )
    )
    assert abs(first.image.mean() - 0.5) < 0.1
    only_content = list(
        napari_nst.iterate(
            content_small, style_small, vgg_weights=random_vgg, style_strength=0.0, **FAST
        )
    )[-1]
    full = list(napari_nst.iterate(content_small, style_small, vgg_weights=random_vgg, **FAST))[-1]
    # strength 0: the style targets are the content's own statistics, so the content is the optimum
    assert np.abs(only_content.image - prepare_image(content_small).rgb).mean() < 0.01
    assert only_content.losses["style"] < 1e-2 * full.losses["style"]


def test_style_strength_moves_style_targets_from_content_to_style(random_vgg):
    features = VGGFeatures(random_vgg, ["conv4_2", "conv1_1", "conv2_1"])
    generator = torch.Generator().manual_seed(4)
    content, style = (torch.rand(1, 3, 32, 32, generator=generator) for _ in range(2))
    targets = {}
    for strength in (0.0, 0.25, 1.0):
        loss_fn = StyleTransferLoss(
            features,
            content,
            [style],
            content_layers=["conv4_2"],
            style_layers=["conv1_1", "conv2_1"],
            style_strength=strength,
        )
        targets[strength] = [loss.target for loss in loss_fn.style_losses]
    with torch.no_grad():
        own, styled = features(content), features(style)
    for i, name in enumerate(["conv1_1", "conv2_1"]):
        assert torch.allclose(targets[0.0][i], gram_matrix(own[name]))
        assert torch.allclose(targets[1.0][i], gram_matrix(styled[name]))
        assert torch.allclose(
            targets[0.25][i], 0.75 * targets[0.0][i] + 0.25 * targets[1.0][i], rtol=1e-5, atol=1e-6
        )


# --- input contract ----------------------------------------------------------------------------


def test_intensity_mapping_rules():
    u8 = np.array([[0, 255], [51, 102]], np.uint8).repeat(8, 0).repeat(8, 1)
    assert prepare_image(u8).rgb[0, 0, 0] == 0.0 and prepare_image(u8).rgb[0, 15, 0] == 1.0
    assert prepare_image(u8).grayscale
    # uint8 RGB is read as 0..255, not stretched
    rgb8 = np.full((16, 16, 3), 100, np.uint8)
    assert prepare_image(rgb8).rgb.max() == pytest.approx(100 / 255)
    # float RGB inside [0, 1] is taken as it is
    rgbf = np.full((16, 16, 3), 0.25, np.float32)
    rgbf[0, 0] = 0.5
    assert prepare_image(rgbf).rgb[1, 1, 0] == pytest.approx(0.25)
    # uint16 uses its own min..max
    u16 = np.linspace(1000, 3000, 256).reshape(16, 16).astype(np.uint16)
    prepared = prepare_image(u16)
    assert prepared.rgb.min() == 0.0 and prepared.rgb.max() == 1.0
    # an intensity window (napari's contrast limits) wins and clips
    windowed = prepare_image(u16, window=(2000, 2500)).rgb[..., 0]
    assert windowed.min() == 0.0 and windowed.max() == 1.0 and (windowed == 1.0).sum() > 50
    # float RGB out of [0, 1] and signed ints are stretched by their finite range
    assert prepare_image(np.linspace(-5, 5, 768).reshape(16, 16, 3)).rgb.max() == 1.0
    assert prepare_image(np.arange(-128, 128, dtype=np.int8).reshape(16, 16)).rgb.min() == 0.0


def test_rgba_nan_and_inputs_untouched():
    rgba = np.random.default_rng(0).random((20, 20, 4)).astype(np.float32)
    rgba[0, 0, 0] = np.nan
    before = rgba.copy()
    prepared = prepare_image(rgba)
    assert prepared.rgb.shape == (20, 20, 3) and not prepared.grayscale
    assert np.isfinite(prepared.rgb).all()
    assert np.array_equal(rgba, before, equal_nan=True)
    assert prepare_image(rgba[..., :1]).grayscale


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((0, 20, 3), np.uint8), "empty"),
        (np.full((20, 20), np.nan), "no finite values"),
        (np.full((20, 20, 3), np.inf), "no finite values"),
        (np.zeros((2, 20, 20, 3), np.uint8), "4 dimensions"),
        (np.zeros((20, 20, 5), np.uint8), "5 channels"),
        (np.zeros((10, 20), np.uint8), "too small"),
        (np.array([["a"] * 20] * 20), "not an image"),
        (np.zeros((20, 20), bool), "not an image"),
        (np.zeros(20, np.uint8), "1 dimension"),
    ],
)
def test_bad_input_errors(data, message, random_vgg):
    with pytest.raises(ValueError, match=message) as info:
        napari_nst.iterate(data, np.zeros((20, 20, 3), np.uint8), vgg_weights=random_vgg)
    assert "content" in str(info.value)


def test_bad_style_and_settings_errors(random_vgg, content_small):
    with pytest.raises(ValueError, match="style: .*too small"):
        napari_nst.iterate(content_small, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="optimizer='sgd' is not supported"):
        napari_nst.iterate(content_small, content_small, optimizer="sgd")
    with pytest.raises(ValueError, match="steps=0 is out of range"):
        napari_nst.iterate(content_small, content_small, steps=0)
    with pytest.raises(TypeError, match="unknown setting"):
        napari_nst.iterate(content_small, content_small, stpes=3)
    with pytest.raises(ValueError, match="content_window"):
        napari_nst.iterate(content_small, content_small, content_window=(5, 1))


def test_snapshot_between_emissions_is_the_image_of_that_step(
    random_vgg, content_small, style_small
):
    """What the CLI writes on Ctrl-C between emissions: a non-emitted step's snapshot is the
    image an emission at that step would have given (no extra pass changes the run)."""
    from napari_nst import run_steps

    settings = dict(FAST, steps=5, vgg_weights=random_vgg)
    every_step = {
        it.step: it.image
        for it in run_steps(content_small, style_small, **{**settings, "emit_every": 1})
    }
    for it in run_steps(content_small, style_small, **{**settings, "emit_every": 100}):
        if it.step == 3:
            assert not it.emitted and it.snapshot is not None
            np.testing.assert_array_equal(it.snapshot(), every_step[3])
            break
    else:
        pytest.fail("no step 3")
