"""``convexdict verify CERT DATA``: check a certificate file exactly, independently.

CERT is a file written by ``Certificate.save`` (or ``convexdict certify --save``); DATA is
anything :func:`convexdict.data.datasets.load_data` reads, the same data the certificate was
computed on. Exit codes: 0 verified, 1 refuted, 2 bad input or out of reach. The verdict,
the rigorous intervals and the reason are printed on one line each; ``--json PATH``
writes the whole :class:`convexdict.verification.Verification`.
"""

from __future__ import annotations

import argparse
from typing import Any

EXIT_CODES = {"verified": 0, "refuted": 1, "out_of_reach": 2}


def register(subparsers: Any) -> None:
    """Add the ``verify`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "verify",
        help="check a certificate file exactly (exit 0 verified, 1 refuted, 2 bad input or "
             "out of reach)",
        description="Re-check a certificate file's claims on the data with exact arithmetic: "
                    "the model's loss, the dual point on every vertex of E0, and the gap. "
                    "Shares no code with the solver that produced it.",
    )
    p.add_argument("cert", metavar="CERT", help="certificate file (.npz) from Certificate.save")
    p.add_argument("data", metavar="DATA",
                   help=".npy, .npz, .csv, .safetensors or toy:NAME: the certified data")
    p.add_argument("--target", default=None, metavar="PATH",
                   help="the target of a transcoder certificate")
    p.add_argument("--targets", nargs="+", default=None, metavar="PATH",
                   help="the layers of a crosscoder certificate, in order")
    p.add_argument("--float", dest="exact", action="store_false",
                   help="plain float64 checks instead of exact ones (not rigorous)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the verification here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify, print the verdict, return the exit code."""
    from convexdict.cli import CLIError
    from convexdict.cli.paths import check_output_file
    from convexdict.data.datasets import load_data
    from convexdict.verification import verify

    if args.target is not None and args.targets is not None:
        raise CLIError("--target and --targets are exclusive (transcoder vs crosscoder).")
    check_output_file(args.json, "--json")
    from pathlib import Path

    if not Path(args.cert).is_file():
        raise FileNotFoundError(f"certificate file '{args.cert}' does not exist.")
    X = load_data(args.data)
    target = load_data(args.target) if args.target is not None else None
    targets = [load_data(t) for t in args.targets] if args.targets is not None else None
    result = verify(args.cert, X, target=target, targets=targets, exact=args.exact)
    lo, up = result.lower_interval, result.upper_interval
    print(f"{result.status}: {result.reason}")
    print(f"upper bound in [{up[0]!r}, {up[1]!r}]; lower bound in [{lo[0]!r}, {lo[1]!r}]; "
          f"tol {result.tol:g}; {result.timings.get('total', 0.0):.2f} s"
          + ("" if result.exact else " (float checks, not rigorous)"))
    if args.json is not None:
        from convexdict.cli.certify import write_json_atomic

        write_json_atomic(args.json, result.to_dict())
    return EXIT_CODES[result.status]
