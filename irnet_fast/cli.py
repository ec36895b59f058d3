"""Command line: ``irnet-fast info | demo | bench``."""
from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    from . import backends
    print(json.dumps(backends.info(), indent=2, default=str))
    return 0


def _demo(args) -> int:
    from . import demo
    summary = demo.run(args.out, args.height, args.width, args.seed, reference=args.reference)
    print(f"random walk on a generated {args.height}x{args.width} scene (stride-4 grid)")
    print(f"{'backend':<10} {'ms':>9}  max rel diff")
    for name, row in summary["backends"].items():
        diff = next((v for k, v in row.items() if k.startswith("max_rel_diff")), 0.0)
        print(f"{name:<10} {row['ms']:>9.2f}  {diff:.2e}")
    print(f"CAM mIoU {summary['cam_miou']:.1f} -> random-walk mIoU {summary['rw_miou']:.1f}")
    print(f"wrote {args.out}/random_walk_demo.png and {args.out}/summary.json")
    return 0


def _bench(args) -> int:
    try:
        from benchmarks import report
    except ImportError:
        print("irnet-fast bench: run it from the repository root (the benchmarks/ folder is not installed)",
              file=sys.stderr)
        return 2
    return report.main(["--quick"] if args.quick else []) or 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="irnet-fast", description="Fast, faithful IRNet.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, compiled extension and available backends")
    p.set_defaults(func=_info)
    p = sub.add_parser("demo", help="random walk on a generated scene: backends compared, PNG written")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--height", type=int, default=94, help="grid height at stride 4 (default 94)")
    p.add_argument("--width", type=int, default=125, help="grid width at stride 4 (default 125)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", action="store_true", help="also run the dense reference (<= 64x64 only)")
    p.set_defaults(func=_demo)
    p = sub.add_parser("bench", help="run the benchmarks and write benchmarks/RESULTS.md")
    p.add_argument("--quick", action="store_true", help="small sizes only")
    p.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    if getattr(args, "height", 1) < 1 or getattr(args, "width", 1) < 1:
        parser.error("--height and --width expected >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
