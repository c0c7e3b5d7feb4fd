"""A sweep's cells as one labelled image: the column labels on top, the row labels on the left,
the cells in a grid with thin gaps, on white (what the paper's figures look like)."""

from __future__ import annotations

import textwrap

import numpy as np

GAP = 6
BACKGROUND = 255


def _font(pixels: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=pixels)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _text_block(lines: list[str], width: int, font, line_height: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    block = Image.new("RGB", (width, line_height * len(lines) + 4), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(block)
    for i, line in enumerate(lines):
        box = draw.textbbox((0, 0), line, font=font)
        draw.text(
            ((width - (box[2] - box[0])) // 2, 2 + i * line_height),
            line,
            fill=(20, 20, 20),
            font=font,
        )
    return np.asarray(block)


def _wrapped(text: str, width_chars: int) -> list[str]:
    """Lines of at most ``width_chars``, broken after "=", "," and "+" (never inside a layer
    name such as conv1_1)."""
    spaced = text.replace("=", "= ").replace("+", "+ ").replace(", ", ",  ")
    lines = textwrap.wrap(
        spaced, max(8, width_chars), break_on_hyphens=False, break_long_words=False
    )
    return [line.replace("= ", "=").replace("+ ", "+").strip() for line in lines] or [""]


def contact_sheet(sweep, cell: int | None = None) -> np.ndarray:
    """uint8 RGB (H, W, 3): ``sweep``'s cells (a ``explore.Sweep``) with readable labels; cells not
    done are left grey. ``cell``: the longer side of a cell (default: the cells' own)."""
    from PIL import Image

    rows, cols = sweep.shape
    images = sweep.images[..., :3]
    height, width = images.shape[2:4]
    if cell is not None and cell != max(height, width):
        scale = cell / max(height, width)
        height, width = max(1, round(height * scale)), max(1, round(width * scale))
    font_px = max(11, min(22, width // 14))
    font, line = _font(font_px), font_px + 4
    chars = int(width / (font_px * 0.55))

    def tile(r: int, c: int) -> np.ndarray:
        if not sweep.done[r, c]:
            return np.full((height, width, 3), 200, np.uint8)
        pixels = (np.clip(images[r, c], 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        if pixels.shape[:2] != (height, width):
            pixels = np.asarray(
                Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS)
            )
        return pixels

    col_lines = [_wrapped(sweep.col_label(c), chars) for c in range(cols)]
    header_lines = max(len(lines) for lines in col_lines) if sweep.col_name else 0
    row_width = 0
    if sweep.row_name:
        row_width = min(
            int(width * 0.9),
            max(
                int(max(len(sweep.row_label(r)) for r in range(rows)) * font_px * 0.55) + 12,
                font_px * 6,
            ),
        )
    row_chars = int(row_width / (font_px * 0.55))
    strips = []
    if sweep.title:
        total_width = row_width + cols * (width + GAP) + GAP
        strips.append(_text_block([sweep.title], total_width, _font(font_px + 2), line + 2))
    if header_lines:
        header = [np.full((line * header_lines + 4, row_width + GAP, 3), BACKGROUND, np.uint8)]
        for c in range(cols):
            lines = col_lines[c] + [""] * (header_lines - len(col_lines[c]))
            header += [
                _text_block(lines, width, font, line),
                np.full((line * header_lines + 4, GAP, 3), BACKGROUND, np.uint8),
            ]
        strips.append(np.concatenate(header, axis=1))
    for r in range(rows):
        parts = [np.full((height, GAP, 3), BACKGROUND, np.uint8)]
        if row_width:
            label = _text_block(_wrapped(sweep.row_label(r), row_chars), row_width, font, line)
            block = np.full((height, row_width, 3), BACKGROUND, np.uint8)
            top = max(0, (height - label.shape[0]) // 2)
            block[top : top + min(height, label.shape[0])] = label[: height - top]
            parts = [block, parts[0]]
        for c in range(cols):
            parts += [tile(r, c), np.full((height, GAP, 3), BACKGROUND, np.uint8)]
        strips += [
            np.concatenate(parts, axis=1),
            np.full((GAP, sum(p.shape[1] for p in parts), 3), BACKGROUND, np.uint8),
        ]
    widest = max(s.shape[1] for s in strips)
    strips = [
        np.pad(s, ((0, 0), (0, widest - s.shape[1]), (0, 0)), constant_values=BACKGROUND)
        for s in strips
    ]
    return np.concatenate(strips, axis=0)
