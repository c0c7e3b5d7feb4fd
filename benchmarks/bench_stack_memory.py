"""Peak memory and throughput of whole-stack runs on zarr stacks on disk (issue 14), as a table.

Each case runs in a fresh process: a (planes, 2048, 2048) uint16 zarr stack is stylised with
predict into a zarr store, with dask's local scheduler or a LocalCluster of N worker processes;
the planes are independent (``temporal_weight=0``), so that workers can run them in parallel.
Peak RSS is this process's (VmHWM), and with a cluster also the largest worker's. A stack read
plane by plane should need the same memory for 16 and for 160 planes.

    python benchmarks/bench_stack_memory.py                  # 16 and 160 planes, 1 and 2 workers
    python benchmarks/bench_stack_memory.py --smoke          # 4 and 8 planes of 256 px, local
    python benchmarks/bench_stack_memory.py --huge 8192      # 2 planes of 8192², at full size
    python benchmarks/bench_stack_memory.py --huge 8192 --huge-size 6144

``--huge SIDE``: planes too big to hold their result in memory (a float32 RGB result plane of
SIDE² x 12 bytes), stylised at their own size: they go tile by tile from the input store to the
output store (``predict.STREAM_PIXELS``), so the peak should stay far below one result plane.
``--huge-size SIZE`` stylises them at SIZE instead (resized a band of rows at a time into a
temporary file, then streamed likewise when SIZE² is above ``predict.STREAM_PIXELS``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import quality  # noqa: F401  (points NAPARI_NST_WEIGHTS_DIR at ../shared/weights)


def make_stack(path: str, planes: int, side: int) -> None:
    """A uint16 zarr stack of smooth, different planes (compressible, like microscopy)."""
    import zarr

    chunk = min(side, 2048)
    stack = zarr.open_array(
        path, mode="w", shape=(planes, side, side), dtype=np.uint16, chunks=(1, chunk, chunk)
    )
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for i in range(planes):
        plane = 1000 + 800 * np.sin(6 * x + i * 0.1) * np.cos(5 * y - i * 0.05)
        stack[i] = plane.astype(np.uint16)


def child(stack_path: str, workers: int, size: int) -> dict:
    """Run one case in this process and report its figures."""
    import zarr
    from memory import proc_status

    import napari_nst

    stack = zarr.open_array(stack_path, mode="r")
    style = quality.load_rgb("starry_night.jpg")
    out = tempfile.mkdtemp(prefix="bench-stack-") + "/out.zarr"
    client = cluster = None
    if workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
    start = time.perf_counter()
    # temporal_weight=0: independent planes (tiles, positions), which workers run in parallel
    napari_nst.stylize_stack(
        stack,
        style,
        method="predict",
        size=size,
        device="cpu",
        out=out,
        client=client,
        temporal_weight=0,
    )
    seconds = time.perf_counter() - start
    worker_peak = 0
    if client is not None:
        worker_peak = max(client.run(lambda: proc_status("VmHWM")).values())
        client.close()
        cluster.close()
    return {
        "planes": stack.shape[0],
        "seconds": seconds,
        "peak": proc_status("VmHWM"),
        "worker_peak": worker_peak,
    }


def run_child(path: str, workers: int, size: int) -> dict:
    """One case in a fresh process (its own peak RSS)."""
    # the child finds quality.py beside itself; relative paths in the environment
    # (NAPARI_NST_WEIGHTS_DIR=../shared/weights) stay relative to this directory
    done = subprocess.run(
        [sys.executable, __file__, "--child", path, str(workers), str(size)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"case {path}, {workers} workers failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def huge(side: int, size: int | None = None, planes: int = 2) -> list:
    """Planes of side² stylised at ``size`` (their own by default), streamed from store to
    store."""
    size = size or side
    path = os.path.join(tempfile.mkdtemp(prefix="bench-stack-"), "huge.zarr")
    make_stack(path, planes, side)
    row = run_child(path, 0, size)
    plane_mb, result_mb = side * side * 2 / 2**20, size * size * 12 / 2**20
    at = "their own size" if size == side else f"size {size}"
    print(
        f"\n{planes} planes of {side}x{side} uint16 (zarr on disk, {plane_mb:.0f} MB each), "
        f"predict at {at} (tiles of 1024), results into a zarr store.\n"
    )
    print("| planes | seconds | s/plane | peak RSS | one input plane | one float32 result plane |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {planes} | {row['seconds']:.1f} | {row['seconds'] / planes:.1f} | "
        f"{row['peak'] / 2**20:.0f} MB | {plane_mb:.0f} MB | {result_mb:.0f} MB |"
    )
    return [row]


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--huge", type=int, metavar="SIDE", default=None)
    parser.add_argument(
        "--huge-size",
        type=int,
        metavar="SIZE",
        default=None,
        help="the huge planes' working size (default: SIDE)",
    )
    parser.add_argument("--child", nargs=3, metavar=("STACK", "WORKERS", "SIZE"))
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return []
    if args.huge:
        return huge(args.huge, args.huge_size)
    counts, side, size, workers = (
        ((4, 8), 256, 128, (0,)) if args.smoke else ((16, 160), 2048, 512, (0, 1, 2))
    )
    folder = tempfile.mkdtemp(prefix="bench-stack-")
    rows = []
    for planes in counts:
        path = os.path.join(folder, f"stack{planes}.zarr")
        make_stack(path, planes, side)
        for n in workers:
            rows.append({**run_child(path, n, size), "workers": n})
    print(
        f"\nStacks of {side}x{side} uint16 planes (zarr on disk), predict at size {size}, "
        "results into a zarr store.\n"
    )
    print(
        "| planes | workers | seconds | planes/s | peak RSS (this process) | peak RSS (largest worker) |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        n = row["workers"]
        where = "local (threads)" if not n else f"{n} worker process{'es' if n > 1 else ''}"
        worker = f"{row['worker_peak'] / 2**20:.0f} MB" if row["workers"] else "-"
        print(
            f"| {row['planes']} | {where} | {row['seconds']:.1f} | "
            f"{row['planes'] / row['seconds']:.2f} | {row['peak'] / 2**20:.0f} MB | {worker} |"
        )
    small, large = (next(r for r in rows if r["planes"] == c and r["workers"] == 0) for c in counts)
    ratio = large["peak"] / small["peak"]
    print(
        f"\n| target | met | figures |\n|---|---|---|\n| peak RSS, {counts[1]} planes <= 1.2x "
        f"{counts[0]} planes (local) | {'yes' if ratio <= 1.2 else 'NO'} | {ratio:.2f}x |"
    )
    return rows


if __name__ == "__main__":
    main()
