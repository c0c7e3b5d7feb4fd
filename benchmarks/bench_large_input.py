"""Peak memory and time of large inputs: preparing a big RGB uint8 image and stylising it with
predict, at a small working size and at full size (tiled), printed as a markdown table.

    NAPARI_NST_WEIGHTS_DIR=../shared/weights python benchmarks/bench_large_input.py
    NAPARI_NST_WEIGHTS_DIR=../shared/weights python benchmarks/bench_large_input.py --sizes 8192 \
        --cases prepare predict-small
    NAPARI_NST_WEIGHTS_DIR=../shared/weights python benchmarks/bench_large_input.py --smoke

Every case runs in a fresh process (so that memory kept by an earlier case does not hide or
inflate it). That process imports torch, loads the two Magenta networks and stylises a small image
once, so that the libraries' own memory is in place; then the peak resident set is reset
(``/proc/self/clear_refs``) and the resident set read as the baseline. The input image is made
after that -- a real photograph tiled to N x N (random pixels without ../shared) -- so the peak
includes the input itself: the ratio is (peak - baseline) / the input's bytes, and 1.0 means
nothing but the input. A result rendered through files is a memory map of a temporary file,
whose pages count only once read: such a result is then read once, and the resident set after
that is shown too ("once read"). Linux only.

Cases: ``prepare`` (``prepare_image`` at full size), ``prepare-small`` (``prepare_image`` with
``size``, as ``stylize`` calls it), ``predict-small`` (``stylize(method="predict")`` at
``--work-size``), ``predict-full`` (at size N, tiled with the default ``tile_size``: above
``predict.STREAM_PIXELS`` rendered through files, the float32 result in memory),
``predict-full-content`` (the same with ``output_range="content"``: a uint8 result),
``predict-resized-content`` (at 3/4 of N: the working image is resized, and above
``predict.STREAM_PIXELS`` kept in files, with a uint8 result) and
``stack-zarr`` (``stylize_stack`` of the image at size N into a zarr store on disk); on request
(``--cases``), ``render-zarr``: the renderer alone at full size, tiled, from the prepared image
into a zarr array on disk with its features in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from memory import proc_status

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CASES = (
    "prepare",
    "prepare-small",
    "predict-small",
    "predict-full",
    "predict-full-content",
    "predict-resized-content",
    "stack-zarr",
    "render-zarr",
)
DEFAULT_CASES = CASES[:7]
TITLES = {
    "prepare": "prepare_image, full size",
    "prepare-small": "prepare_image, size {work}",
    "predict-small": "predict, size {work}",
    "predict-full": "predict, full size (tiled {tile}): float32 result",
    "predict-full-content": "predict, full size (tiled {tile}): uint8 result "
    '(output_range="content")',
    "predict-resized-content": "predict, size 3/4 of it (tiled {tile}): uint8 result",
    "stack-zarr": "stylize_stack, full size (tiled {tile}) into a zarr store",
    "render-zarr": "render_into a zarr array, full size (tiled {tile}), features in memory",
}


def _image(side: int) -> np.ndarray:
    """An N x N RGB uint8 image: a 1024 px photograph tiled (random pixels without ../shared)."""
    path = SHARED / "images" / "tubingen.jpg"
    if not path.exists():
        return np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    from PIL import Image

    with Image.open(path) as image:
        tile = np.asarray(image.convert("RGB").resize((1024, 1024), Image.Resampling.LANCZOS))
    reps = -(-side // 1024)
    return np.tile(tile, (reps, reps, 1))[:side, :side]


def _style() -> np.ndarray:
    path = SHARED / "images" / "starry_night.jpg"
    if not path.exists():
        return np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def child(case: str, side: int, work: int, tile: int) -> dict:
    """One case in this (fresh) process; returns the measurements."""
    import torch  # noqa: F401  (part of the baseline)

    import napari_nst
    from napari_nst.engine.images import prepare_image

    style = _style()
    settings = dict(method="predict", device="cpu", tile_size=tile)
    napari_nst.stylize(_image(64), style, size=64, **settings)  # networks loaded, libraries warm
    if case == "render-zarr":
        import tempfile

        import zarr

        from napari_nst.engine.methods.predict.magenta_weights import load_model
        from napari_nst.engine.methods.predict.renderer import render_into
        from napari_nst.engine.methods.predict.style_embedding import embed

        transformer = load_model("transformer")
        embedding = embed(load_model("predictor"), prepare_image(style).rgb)
        folder = tempfile.TemporaryDirectory()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    baseline = proc_status("VmRSS")
    data = _image(side)
    start = time.perf_counter()
    if case == "prepare":
        prepared = prepare_image(data)
        # (rgb only for a comparison with the code before issue 12, which had no values)
        result = prepared.values if hasattr(prepared, "values") else prepared.rgb
    elif case == "prepare-small":
        result = prepare_image(data, size=work).values
    elif case == "render-zarr":
        result = zarr.open_array(
            f"{folder.name}/result.zarr",
            mode="w",
            shape=(side, side, 3),
            chunks=(tile, tile, 3),
            dtype="float32",
        )
        render_into(transformer, prepare_image(data), embedding, result, tile_size=tile)
    elif case == "stack-zarr":
        import tempfile

        folder = tempfile.TemporaryDirectory()
        result = napari_nst.stylize_stack(
            data, style, out=f"{folder.name}/result.zarr", size=side, **settings
        )
    else:
        size = {"predict-small": work, "predict-resized-content": side * 3 // 4}.get(case, side)
        output_range = "content" if case.endswith("-content") else "unit"
        result = napari_nst.stylize(data, style, size=size, output_range=output_range, **settings)
    seconds = time.perf_counter() - start
    peak = proc_status("VmHWM")
    row = {
        "case": case,
        "side": side,
        "input_bytes": int(data.nbytes),
        "baseline": baseline,
        "peak": peak,
        "ratio": (peak - baseline) / data.nbytes,
        "seconds": seconds,
        "result_shape": list(result.shape),
        "result_dtype": str(result.dtype),
        "result_kind": (
            "memory map"
            if isinstance(result, np.memmap)
            else "in memory"
            if isinstance(result, np.ndarray)
            else "on disk"
        ),
    }
    if row["result_kind"] == "memory map":  # its pages count once read: read it all once
        for r0 in range(0, result.shape[0], 256):
            float(result[r0 : r0 + 256].sum())
        row["read_ratio"] = (proc_status("VmRSS") - baseline) / data.nbytes
    return row


def run_case(case: str, side: int, work: int, tile: int, timeout: float) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        case,
        "--sizes",
        str(side),
        "--work-size",
        str(work),
        "--tile-size",
        str(tile),
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    except subprocess.TimeoutExpired:
        return {"case": case, "side": side, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"case": case, "side": side, "error": reason[:160]}
    return json.loads(lines[-1])


def table(rows: list[dict], work: int, tile: int) -> str:
    out = [
        "| input | case | peak RSS | above baseline | ratio to input | time | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        side = row["side"]
        name = TITLES[row["case"]].format(work=work, tile=tile)
        megabytes = side * side * 3 / 2**20
        label = f"{side}² RGB uint8 ({megabytes:.{0 if megabytes >= 10 else 2}f} MB)"
        if "error" in row:
            out.append(f"| {label} | {name} | failed: {row['error']} | | | | |")
            continue
        result = row["result_kind"]
        if "read_ratio" in row:
            result += f" ({row['read_ratio']:.2f}x once read)"
        out.append(
            f"| {label} | {name} | {row['peak'] / 2**20:.0f} MB | "
            f"{(row['peak'] - row['baseline']) / 2**20:.0f} MB | {row['ratio']:.2f}x | "
            f"{row['seconds']:.1f} s | {result} |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[8192, 16384],
        help="input sides N (N x N RGB uint8)",
    )
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(DEFAULT_CASES))
    parser.add_argument("--work-size", type=int, default=512, help="the small working size")
    parser.add_argument("--tile-size", type=int, default=1024, help="predict's tile_size")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per case")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny size (320 px: 2.5 tiles of 128, a ragged edge; working size 64)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.work_size, args.tile_size = [320], 64, 128
    if args.child:
        print(json.dumps(child(args.child, args.sizes[0], args.work_size, args.tile_size)))
        return 0

    rows = []
    for side in args.sizes:
        for case in args.cases:
            rows.append(run_case(case, side, args.work_size, args.tile_size, args.timeout))
            print(f"done: {side} {case}", file=sys.stderr, flush=True)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
        f"ratio = (peak RSS - baseline) / input bytes, the input included\n"
    )
    print(table(rows, args.work_size, args.tile_size))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"rows": rows, "work_size": args.work_size, "tile_size": args.tile_size}, indent=1
            )
        )
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
