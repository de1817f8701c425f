"""The GPU rows of issues 13, 14 and 15, as one short script for a lent GPU machine.

Each row runs in its own subprocess under its own time limit and prints one line; the
whole script stays within about ten minutes on one GPU:

1. issue 15: ``certify`` at d = 3, N = 2,000 (six Gaussian clusters, ``lam = 0.2 lam_max``)
   with ``backend="torch", device="cuda"`` (above the CPU size refusal; verified in float64
   on the host), target <= 60 s;
2. issue 13: the fixed-width branch and bound at d = 2, N = 12, K = 3 with the leaf
   relaxations on the GPU against numpy, side by side;
3. issue 14: ``bench_compare_scale.py --preset gpu`` (d_in = 768, width = 16,384,
   N = 10^6), target <= 5 min.

    python benchmarks/bench_gpu.py            # all rows (skips those that need CUDA on a CPU)
    python benchmarks/bench_gpu.py --rows 15  # one row
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

ROW_15 = """
import time, numpy as np, convexdict as cd
from convexdict.convex.atoms import affine_frame
from convexdict_solvers.pricing.exact import price
rng = np.random.default_rng(0)
n, d = {n}, 3
centres = rng.normal(size=(6, d)) * 1.5
X = centres[rng.integers(0, 6, n)] + 0.4 * rng.normal(size=(n, d))
t0 = time.perf_counter()
frame = affine_frame(X)
lam_max = price(frame.coords(X), X - X.mean(axis=0)).max_value
t1 = time.perf_counter()
cert = cd.certify(X, 0.2 * lam_max, backend="torch", device="{device}", tol=1e-6,
                  time_limit=540)
t2 = time.perf_counter()
print(f"issue 15 | d=3 N={{n}} | lam_max pricing {{t1 - t0:.1f}} s | certify {{t2 - t1:.1f}} s"
      f" | certified {{cert.certified}} | rel gap {{cert.relative_gap:.1e}} | K* "
      f"{{cert.width_needed}} | target <= 60 s")
"""

ROW_13 = """
import time, numpy as np, convexdict as cd
X = np.random.default_rng(0).normal(size=(12, 2))
for backend in ("cvxpy", "torch"):
    t0 = time.perf_counter()
    cert = cd.certify(X, 0.1, width=3, tol=1e-4, time_limit=120, backend=backend,
                      device="{device}" if backend == "torch" else None)
    s = cert.search
    print(f"issue 13 | d=2 N=12 K=3 | leaves on {{'{device}' if backend == 'torch' else 'numpy'}}"
          f" | {{time.perf_counter() - t0:.1f}} s | relaxations {{s['nodes_evaluated']:,}} | "
          f"certified {{cert.certified}} | rel gap {{cert.relative_gap:.1e}}")
"""


def _run(name: str, code: str | list[str], limit: float) -> None:
    cmd = [sys.executable, "-c", code] if isinstance(code, str) else code
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        text = out.stdout.strip() or out.stderr.strip().splitlines()[-1]
    except subprocess.TimeoutExpired:
        text = f"timed out after {limit:.0f} s"
    print(f"[{name}, {time.perf_counter() - t0:.0f} s wall]\n{text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=["15", "13", "14"],
                        choices=["13", "14", "15"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n15", type=int, default=2000, help="N of the issue-15 row")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: the GPU rows are not run (use --device cpu to try them)")
        return
    print(f"device: {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device.startswith("cuda") else ""))
    if "15" in args.rows:
        _run("issue 15", ROW_15.format(n=args.n15, device=args.device), 600)
    if "13" in args.rows:
        _run("issue 13", ROW_13.format(device=args.device), 300)
    if "14" in args.rows:
        _run("issue 14", [sys.executable, "benchmarks/bench_compare_scale.py", "--preset",
                          "gpu", "--device", args.device], 600)


if __name__ == "__main__":
    main()
