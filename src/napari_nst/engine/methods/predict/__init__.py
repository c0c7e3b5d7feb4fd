"""Predict: Ghiasi et al. 2017's arbitrary-style prediction, one forward pass (``ghiasi``: the
method's steps; ``renderer``: the tiled, streaming transformer; ``magenta``,
``magenta_weights``, ``tflite``: Magenta's networks and their TFLite weights;
``style_embedding``: the style predictor's embeddings)."""

from __future__ import annotations

from dataclasses import dataclass

from ...motion import Carry, blend_with_previous
from ...output import luminance
from .. import Method


@dataclass
class PredictTarget:
    """The styles' embeddings (one 100-d bottleneck each), on the CPU."""

    embeddings: list

    def on(self, device) -> list:
        return [e.to(device) for e in self.embeddings]


class Predict(Method):
    name = "predict"
    temporal_weight = 1.0

    def in_file_above(self, settings) -> int | None:
        from .ghiasi import STREAM_PIXELS

        return STREAM_PIXELS

    def regions_max_pixels(self, settings) -> int | None:
        from .ghiasi import STREAM_PIXELS

        return STREAM_PIXELS  # a render per group, in memory

    def streams(self, height, width, settings) -> bool:
        from .ghiasi import streams

        return streams(height, width, settings)

    def target(self, styles, settings, device) -> PredictTarget:
        import torch

        from .ghiasi import load_networks, style_embeddings_of

        predictor, _ = load_networks(settings, device)
        with torch.inference_mode():
            return PredictTarget(
                [e.cpu() for e in style_embeddings_of(predictor, styles, settings)]
            )

    def run(self, content, target, settings, device, *, initial=None):
        from .ghiasi import predict_iterates

        return predict_iterates(content, target.on(device), settings, device)

    def plane(self, content, target, settings, device, chain):
        """The plane's raw prediction, pulled towards the previous plane's moved result where a
        temporal weight is set: on the transformer's features after its residual blocks (which
        the upsampling layers then render crisp) and on its output pixels (motion finer than
        the features' 4-px grid), both in closed form (``motion.blend_with_previous``)."""
        import torch

        from .ghiasi import load_networks, stylize_one, weights_info, working_content

        predictor, transformer = load_networks(settings, device)
        working = working_content(content, settings)  # resized once, for the result and link
        weight = chain.temporal_weight
        # with regions, a render per group: the temporal pull is on the composited pixels only
        features_pull = weight > 0 and working.regions is None
        luma = luminance(working.rgb) if weight > 0 else None
        link = chain.link(luma, content.shape[0]) if weight > 0 else None
        previous = chain.previous
        carried = {}

        def pull_features(features):
            """The temporal pull on the features after the residual blocks (kept for the next
            plane): the upsampling layers render the pulled features as crisply as any, where a
            pull on the pixels alone averages two textures into a paler one."""
            if link is not None and previous.features is not None:
                moved, trust = link.move_features(previous.features)
                pulled = blend_with_previous(
                    _channels_last(features), _channels_last(moved), trust, weight
                )
                features = torch.from_numpy(pulled).permute(2, 0, 1)[None].to(features.device)
            carried["features"] = features.cpu().clone()
            return features

        with torch.inference_mode():  # raw: grayscale and keep_colors are applied at the end
            result = stylize_one(
                working,
                target.on(device),
                predictor,
                transformer,
                settings,
                finish=False,
                bottleneck=pull_features if features_pull else None,
            )
        if link is not None:
            result = blend_with_previous(result, link.image, link.trust, weight)
        return Carry(result, luma, carried.get("features")), weights_info(predictor, transformer)

    def plane_streamed(self, plane, index, target, settings, device, writer) -> dict:
        """A plane too big for memory (``ghiasi.predict_streamed``): read from the input a tile
        at a time, written to ``writer`` a block at a time."""
        import torch

        from ...lazy_images import prepare_lazy
        from ...stack_io import plane_name
        from .ghiasi import load_networks, predict_streamed, weights_info

        content = prepare_lazy(
            plane, settings.content_window, name=plane_name(index), size=settings.size
        )
        predictor, transformer = load_networks(settings, device)
        with torch.inference_mode():
            predict_streamed(
                content, target.on(device), predictor, transformer, settings, writer, index
            )
        return {**weights_info(predictor, transformer), "tiled": "streamed from and to zarr"}


def _channels_last(features):
    """(1, C, h, w) tensor -> (h, w, C) float32 array."""
    return features[0].permute(1, 2, 0).cpu().numpy()
