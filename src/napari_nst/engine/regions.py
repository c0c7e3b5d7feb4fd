"""Regions: a style per label of an integer label image (a napari Labels layer), in every method.

The front ends pass ``regions`` (a label image of the content's spatial shape, or a plain scale
of it) and a style that is one image (or a blended list: every non-zero label gets it) or a dict
{label: style or list of styles}. ``assign_styles`` turns that into the run's flat list of styles
and one *group* per distinct blend of them (labels that share a blend are one group, rendered
once); labels that are not keys keep the content. ``Regions`` holds the labels at the content's
size with those groups, travels with the content (``PreparedImage.regions``) through every resize,
and gives each method what it works with:

* ``weights(shape)``: soft maps, one per group and the last for the kept pixels, that sum to 1 at
  every pixel: the labels resampled (nearest) to ``shape``, each group's indicator blurred by a
  Gaussian of ``edge`` pixels (``Settings.region_edge``, at the result's size);
* ``keep_content(result, content)``: the kept pixels back from the content (``finish_image``
  applies it, so every method's result keeps exactly what the user left unlabelled).

How each method uses the groups is its own (optimize: Gram matrices guided per group; universal:
the transform per group; predict: a render per group, composited).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..validation import check_label_array, normalized_blend_weights


@dataclass(frozen=True)
class Group:
    """Labels that share one blend of the run's styles (weights over them, summing to 1)."""

    labels: tuple[int, ...]
    blend: tuple[float, ...]


@dataclass(frozen=True)
class StyleAssignment:
    """Which styles go where: the groups, and the labels the style mapping names (None: every
    non-zero label, for a single style or blend given with ``regions``)."""

    groups: tuple[Group, ...]
    named: tuple[int, ...] | None

    def for_labels(self, present) -> tuple[Group, ...]:
        """The groups for labels ``present`` in a label image: "every non-zero label" made
        concrete, and each group restricted to the labels that occur."""
        present = {int(v) for v in present}
        if self.named is None:
            return (Group(tuple(sorted(present - {0})), self.groups[0].blend),)
        return tuple(
            Group(tuple(v for v in g.labels if v in present), g.blend) for g in self.groups
        )


def is_style_mapping(style) -> bool:
    return isinstance(style, Mapping)


def assign_styles(style, style_blend) -> tuple[list, StyleAssignment]:
    """(the run's styles, their assignment) from a ``style`` argument with ``regions``: one image,
    a list (blended with ``style_blend``), or a dict {label: image or list of images}. A style
    used for several labels (the same array) is prepared and encoded once."""
    if not is_style_mapping(style):
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        blend = tuple(normalized_blend_weights(style_blend, len(styles)))
        return styles, StyleAssignment((Group((), blend),), None)
    if not style:
        raise ValueError(
            "style: the dict {label: style} is empty; map at least one label of "
            "regions to a style image"
        )
    styles: list = []
    per_label: dict[int, tuple[float, ...]] = {}
    for key, value in style.items():
        label = _label_key(key)
        entries = list(value) if isinstance(value, (list, tuple)) else [value]
        if not entries:
            raise ValueError(
                f"style[{label}]: an empty list; give a style image, or leave the "
                "label out to keep the content there"
            )
        if style_blend is not None and len(entries) > 1 and len(entries) != len(style_blend):
            raise ValueError(
                f"style[{label}] has {len(entries)} styles but style_blend has "
                f"{len(style_blend)} weights; with a style dict, style_blend weighs "
                "the styles of each label that has several, so give each of them "
                "that many styles"
            )
        weights = normalized_blend_weights(style_blend if len(entries) > 1 else None, len(entries))
        blend: dict[int, float] = {}
        for entry, weight in zip(entries, weights):
            index = next((i for i, s in enumerate(styles) if s is entry), None)
            if index is None:
                index = len(styles)
                styles.append(entry)
            blend[index] = blend.get(index, 0.0) + weight
        per_label[label] = blend
    groups: dict[tuple, list[int]] = {}
    for label, blend in per_label.items():
        full = tuple(blend.get(i, 0.0) for i in range(len(styles)))
        groups.setdefault(full, []).append(label)
    return styles, StyleAssignment(
        tuple(Group(tuple(sorted(labels)), blend) for blend, labels in groups.items()),
        tuple(sorted(per_label)),
    )


def _label_key(key) -> int:
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise ValueError(
            f"style: the key {key!r} is not a label; a style dict maps integer "
            "label values of regions (0 = background) to style images, "
            "e.g. {1: style_a, 2: style_b}"
        )
    if key < 0:
        raise ValueError(
            f"style: the key {key} is negative; label values are 0 (background) or positive"
        )
    return int(key)


def warn_if_unlabelled(
    present, assignment: StyleAssignment, name: str = "regions", stacklevel: int = 3
) -> bool:
    """Warn, and say so, when no pixel is labelled: ``present`` (the label values that occur)
    is only 0, and no style is given for 0, so the content comes back unchanged."""
    present = np.asarray(present)
    groups = assignment.for_labels(present)
    if present.size and present.max() == 0 and not any(0 in g.labels for g in groups):
        warnings.warn(
            f"{name}: no pixel is labelled (every value is 0, the background), so "
            "the content is kept unchanged; paint labels (1, 2, ...) where the "
            "styles should go, or run without regions to style the whole image",
            UserWarning,
            stacklevel=stacklevel,
        )
        return True
    return False


def check_not_negative(labels: np.ndarray, name: str = "regions") -> None:
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0:
        raise ValueError(
            f"{name}: label values below 0 (min {int(labels.min())}); labels are "
            "0 (background) or positive, as in a napari Labels layer"
        )


def fitted_labels(
    labels, shape: tuple[int, int], name: str = "regions", to: tuple[int, int] | None = None
) -> np.ndarray:
    """A 2-D label image checked against the content's spatial ``shape`` (the same, or a plain
    scale of it: the same aspect ratio) and resampled (nearest) to ``to`` (default: ``shape``),
    in its own integer dtype (bool as uint8): segmentation tools write uint32/uint64 ids, which
    a cast to int32 would wrap (3_000_000_000 negative, 2**32 + 1 onto 1)."""
    array = check_label_array(labels, name)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(
            f"{name}: shape {tuple(array.shape)} is not a 2-D label image; pass "
            f"labels of the content's spatial shape {tuple(shape)}"
        )
    rows, cols = array.shape
    if (rows, cols) != tuple(shape):
        scale = rows / shape[0]
        if abs(cols - shape[1] * scale) > max(1.0, scale):
            raise ValueError(
                f"{name}: labels of shape {(rows, cols)} do not fit the content of "
                f"shape {tuple(shape)} (nor a plain scale of it); pass labels of "
                "the content's height and width"
            )
    array = np.asarray(array)
    check_not_negative(array, name)
    if array.dtype == bool:
        array = array.view(np.uint8)
    return nearest(array, shape if to is None else to)


def nearest(labels: np.ndarray, shape) -> np.ndarray:
    """``labels`` resampled to ``shape`` by nearest neighbour (pixel centres)."""
    shape = (int(shape[0]), int(shape[1]))
    if labels.shape[:2] == shape:
        return labels
    rows = ((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(np.intp)
    cols = ((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(np.intp)
    return labels[
        np.minimum(rows, labels.shape[0] - 1)[:, None],
        np.minimum(cols, labels.shape[1] - 1)[None, :],
    ]


@dataclass(frozen=True)
class Regions:
    """A content's label image at the content's size, the groups of the run's styles, and the
    soft edge (Gaussian sigma in pixels of ``labels``)."""

    labels: np.ndarray
    groups: tuple[Group, ...]
    edge: float

    @classmethod
    def of(
        cls,
        labels,
        content_shape,
        shape,
        assignment: StyleAssignment,
        edge: float,
        name: str = "regions",
        warn: bool = True,
    ) -> Regions:
        """The regions of a content of spatial ``content_shape``, at ``shape`` (its prepared
        size; ``edge`` in pixels there), with a warning when no pixel is labelled (all 0, and no
        style for 0: the content comes back unchanged), else for each label the style mapping
        names that does not occur."""
        fitted = fitted_labels(labels, content_shape, name, to=shape)
        present = np.unique(fitted)
        groups = assignment.for_labels(present)
        if (
            warn
            and not warn_if_unlabelled(present, assignment, name, stacklevel=4)
            and assignment.named is not None
        ):
            missing = sorted(set(assignment.named) - {int(v) for v in present})
            if missing:
                warnings.warn(
                    f"{name}: label(s) {', '.join(map(str, missing))} of the style "
                    "mapping do not occur in the label image; they style nothing",
                    UserWarning,
                    stacklevel=3,
                )
        return cls(fitted, groups, float(edge))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.labels.shape[:2])

    def resized(self, shape) -> Regions:
        """These regions at ``shape``: the labels resampled (nearest), the edge scaled."""
        shape = (int(shape[0]), int(shape[1]))
        if shape == self.shape:
            return self
        scale = max(shape) / max(self.shape)
        return Regions(nearest(self.labels, shape), self.groups, self.edge * scale)

    def crop(self, rows: slice, cols: slice) -> Regions:
        return Regions(self.labels[rows, cols], self.groups, self.edge)

    def index_map(self, shape=None) -> np.ndarray:
        """(h, w) int: each pixel's group (0 .. G-1), or G where the content is kept."""
        labels = self.labels if shape is None else nearest(self.labels, shape)
        index = np.full(labels.shape, len(self.groups), np.int32)
        ids, numbers = self._group_ids(labels.dtype)
        if ids.size:
            at = np.minimum(np.searchsorted(ids, labels), ids.size - 1)
            hit = ids[at] == labels
            index[hit] = numbers[at[hit]]
        return index

    def _group_ids(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """(the groups' label ids sorted, in ``dtype``; the group of each): what ``index_map``
        looks pixels up in. A search over the distinct ids, not a table indexed by label value
        (ids of segmentations reach 2**32 and beyond), and in the labels' own dtype (mixing
        uint64 with int64 compares in float64, which merges ids above 2**53)."""
        limits = np.iinfo(dtype)
        pairs = sorted(
            (label, number)
            for number, group in enumerate(self.groups)
            for label in group.labels
            if limits.min <= label <= limits.max
        )
        return (
            np.array([label for label, _ in pairs], dtype),
            np.array([number for _, number in pairs], np.int32),
        )

    def _sigma(self, shape) -> float:
        return self.edge * max(shape) / max(self.shape)

    @staticmethod
    def _soft(index: np.ndarray, number: int, sigma: float) -> np.ndarray:
        """Group ``number``'s indicator blurred by the soft edge (Gaussian, ``sigma`` px)."""
        from scipy.ndimage import gaussian_filter

        plane = (index == number).astype(np.float32)
        return gaussian_filter(plane, sigma, mode="nearest") if sigma > 0 else plane

    def weights(self, shape=None) -> np.ndarray:
        """(G + 1, h, w) float32 soft maps at ``shape`` (default: the labels' own), one per
        group and the last for the kept pixels, summing to 1 at every pixel."""
        shape = self.shape if shape is None else (int(shape[0]), int(shape[1]))
        index, sigma = self.index_map(shape), self._sigma(shape)
        maps = np.stack(
            [self._soft(index, number, sigma) for number in range(len(self.groups) + 1)]
        )
        maps /= np.maximum(maps.sum(axis=0), 1e-6)
        return maps

    def keep_content(self, result: np.ndarray, content_rgb) -> np.ndarray:
        """``result`` (h, w, 3) with the kept pixels taken back from ``content_rgb`` (a function
        of the shape, giving the content's RGB there), blended over the soft edge. Only the
        kept pixels' map is made (the blurred indicators sum to 1 already)."""
        shape = result.shape[:2]
        index = self.index_map(shape)
        kept = len(self.groups)
        if not (index == kept).any():
            return result
        keep = np.clip(self._soft(index, kept, self._sigma(shape)), 0.0, 1.0)[..., None]
        return (keep * content_rgb(shape) + (1.0 - keep) * result).astype(np.float32)

    def describe(self, style_names=None) -> dict:
        """{label: the styles it gets (names and weights)}, for a result's metadata; labels not
        listed keep the content."""
        names = style_names or [
            f"style {i + 1}" for i in range(len(self.groups[0].blend) if self.groups else 0)
        ]
        out = {}
        for group in self.groups:
            parts = {names[i]: round(w, 4) for i, w in enumerate(group.blend) if w > 0}
            for label in group.labels:
                out[int(label)] = parts
        return out


__all__ = [
    "Group",
    "Regions",
    "StyleAssignment",
    "assign_styles",
    "check_label_array",
    "fitted_labels",
    "is_style_mapping",
    "nearest",
]
