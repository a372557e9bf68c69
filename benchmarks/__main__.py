"""`python -m benchmarks [NAME ...] [--quick]`: run benchmarks, write JSON + plots, print tables."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from importlib import import_module

from benchmarks import common

# name -> module whose run(quick: bool) -> common.Report it is; imported when run, so a
# benchmark's own needs (torch for speed, opencv for warp errors) matter only to it.
REGISTRY = {
    "speed": "speed",
    "temporal": "temporal",
    "batch": "batch",
    "pipeline": "pipeline",
    "memory": "memory",
    "clip": "clip",  # derived from the results above: keep it last
}
# Run only when named: longer studies whose figures docs/performance.md and README quote.
EXTRA = {
    "temporal_long": "temporal:run_long",
    "fast": "fast",  # needs the shipped model, assets/models/starry_night_fast.keras
    "seams": "seams",
    "scale_out": "scale_out",  # a real server, moto S3 and process workers
}


def _runner(target: str) -> Callable[[bool], common.Report]:
    module, _, function = target.partition(":")
    return getattr(import_module(f"benchmarks.{module}"), function or "run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(REGISTRY)}; also {', '.join(EXTRA)})",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    args = parser.parse_args(argv)
    known = REGISTRY | EXTRA
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")

    machine = common.machine_info()
    print(f"machine: {common.machine_line(machine)}\n", flush=True)
    for name in args.names or list(REGISTRY):
        load_before = common.load_snapshot()
        started = time.perf_counter()
        report = _runner(known[name])(args.quick)
        seconds = time.perf_counter() - started
        load_after = common.load_snapshot()
        payload = {
            "benchmark": name,
            "machine": machine,
            "command": common.command_line(),
            "quick": args.quick,
            "config": report.config,
            "results": report.results,
            **report.extra,
            "load": {
                "before": load_before,
                "after": load_after,
                "during": common.interference(load_before, load_after),
            },
            "wall_seconds": round(seconds, 1),
            "created": common.now_iso(),
        }
        json_path = common.RESULTS_DIR / f"{name}.json"
        common.write_json(json_path, payload)
        written = [json_path]
        if report.plot:
            png_path = json_path.with_suffix(".png")
            report.plot(png_path)
            written.append(png_path)
        print(f"## {name}\n\n{report.table}\n", flush=True)
        rel = ", ".join(str(p.relative_to(common.REPO_ROOT)) for p in written)
        print(f"({seconds:.0f} s; wrote {rel})\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
