"""A default optimize run alone and beside another torch job on the same cores, for OpenMP's
waiting policies. Prints a markdown table (issue 29: beside one other job, at most 2.5x alone).

    python benchmarks/bench_under_load.py             # 512 and 256 px (about 2 minutes, 2 cores)
    python benchmarks/bench_under_load.py --smoke     # 64 px, one policy

Each timing runs in a fresh process (the policy is read when torch starts its threads):
``OMP_WAIT_POLICY`` unset as napari-nst sets it (PASSIVE) and ACTIVE (spinning, OpenMP's
throughput setting). The other job is a second process running convolutions on torch's default
threads. The run: distilled VGG-19, the defaults, tubingen x starry_night, after a warm-up run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from quality import smoke_arguments

OTHER_JOB = (
    "import torch\nx = torch.randn(1, 64, 256, 256); w = torch.randn(64, 64, 3, 3)\n"
    "while True:\n    torch.nn.functional.conv2d(x, w, padding=1)\n"
)
ONE_RUN = """
import sys, time
sys.path.insert(0, {here!r})
from quality import load_rgb
import napari_nst
content, style = load_rgb("tubingen.jpg"), load_rgb("starry_night.jpg")
options = dict(network="vgg19-distilled", device="cpu")
napari_nst.stylize(content, style, size=64, steps=2, **options)
start = time.perf_counter()
napari_nst.stylize(content, style, size={size}, **options)
print(time.perf_counter() - start)
"""


def timed_run(size: int, policy: str | None, timeout: float) -> float:
    env = dict(os.environ)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    else:
        env.pop("OMP_WAIT_POLICY", None)
    code = ONE_RUN.format(here=os.path.dirname(os.path.abspath(__file__)), size=size)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1])


def beside_other_job(size: int, policy: str | None, timeout: float) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    other = subprocess.Popen([sys.executable, "-c", OTHER_JOB], env=env)
    try:
        time.sleep(3)  # its threads started
        return timed_run(size, policy, timeout)
    finally:
        other.kill()
        other.wait()


def main() -> None:
    args = smoke_arguments(__doc__)
    sizes = (64,) if args.smoke else (512, 256)
    policies = (
        ((None, "napari-nst's (PASSIVE)"),)
        if args.smoke
        else ((None, "napari-nst's (PASSIVE)"), ("ACTIVE", "ACTIVE (spin)"))
    )
    print(
        "| size | OMP_WAIT_POLICY | alone (s) | beside another torch job (s) | ratio | "
        "target (2.5x) |\n|---:|---|---:|---:|---:|---|"
    )
    for size in sizes:
        for policy, name in policies:
            alone = timed_run(size, policy, 300)
            beside = beside_other_job(size, policy, 300)
            ratio = beside / alone
            print(
                f"| {size} | {name} | {alone:.2f} | {beside:.2f} | {ratio:.2f}x | "
                f"{'met' if ratio <= 2.5 else 'missed'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
