"""Gatys et al. 2015's Figures 1 and 3 on the shared images with the distilled VGG-19, as contact
sheets in docs/, with the seconds of each cell.

    python benchmarks/paper_figures.py             # 256 px cells, ~3 min on two cores
    python benchmarks/paper_figures.py --smoke     # tiny and short: keeps it working

Fig. 3: rows are the style matched on the growing layer sets (conv1_1; conv1_1, conv2_1; ... all
five), columns the content/style balance (``content_weight`` 0.01 ... 10 against the default
style weight), the Neckarfront (tubingen.jpg) with The Starry Night (Kandinsky's Composition VII,
the paper's painting, is not among the shared images). Fig. 1: reconstructions from white noise,
the content (Tübingen) matched at one layer each, the style (The Starry Night) at the growing
sets. Every cell is a full optimize run (300 L-BFGS steps by default) at 256 px, the working size
floor lowered to 256 so that a cell costs what its size does.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from quality import HERE, load_rgb, smoke_arguments

DOCS = HERE.parent / "docs"


def main() -> None:
    args = smoke_arguments(__doc__)
    from PIL import Image

    import napari_nst
    from napari_nst.engine.explore import GROWING_STYLE_LAYERS

    size = 64 if args.smoke else 256
    settings = dict(
        network="vgg19-distilled",
        size=size,
        min_working_size=size,
        min_size=min(128, size),
        device="cpu",
        steps=3 if args.smoke else 300,
    )
    from_content = dict(init="content", coarse_to_fine=True)  # Fig. 3 (Fig. 1 starts from noise)
    content, style = load_rgb("tubingen.jpg"), load_rgb("starry_night.jpg")
    folder = Path(tempfile.mkdtemp()) if args.smoke else DOCS  # smoke: not into docs/
    report = {}

    start = time.perf_counter()
    fig3 = napari_nst.sweep(
        content,
        style,
        rows=("style_layers", list(GROWING_STYLE_LAYERS)),
        cols=("content_weight", [0.01, 0.1, 1.0, 10.0]),
        **settings,
        **from_content,
        progress=lambda cell: print(f"  fig. 3 {cell.label}: {cell.seconds:.1f} s"),
    )
    fig3.title = "Fig. 3: style layer sets (rows) x content weight (columns), distilled VGG-19"
    report["fig3"] = {"seconds": time.perf_counter() - start, "per_cell": fig3.seconds.tolist()}
    Image.fromarray(fig3.contact_sheet()).save(folder / "fig3_layers_by_ratio.jpg", quality=88)

    start = time.perf_counter()
    content_rows = napari_nst.reconstruct(content, "content", **settings)
    style_rows = napari_nst.reconstruct(style, "style", **settings)
    report["fig1"] = {
        "seconds": time.perf_counter() - start,
        "content_per_cell": content_rows.seconds.tolist(),
        "style_per_cell": style_rows.seconds.tolist(),
    }
    content_rows.title = "Fig. 1: content reconstructions from noise (one layer each)"
    style_rows.title = "Fig. 1: style reconstructions from noise (growing layer sets)"
    sheets = [content_rows.contact_sheet(), style_rows.contact_sheet(cell=size)]
    width = max(s.shape[1] for s in sheets)
    sheets = [
        np.pad(s, ((0, 0), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in sheets
    ]
    Image.fromarray(np.concatenate(sheets, axis=0)).save(
        folder / "fig1_reconstructions.jpg", quality=88
    )
    print(
        f"\nFig. 3: {fig3.done.size} cells in {report['fig3']['seconds']:.0f} s "
        f"({np.mean(fig3.seconds):.1f} s a cell); Fig. 1: "
        f"{content_rows.done.size + style_rows.done.size} cells in "
        f"{report['fig1']['seconds']:.0f} s; written to {folder}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
