"""`make bench`: run the benchmarks, print the table, write results.json and the plots.

python -m benchmarks.run [--only engine|cluster|all] [--repeat N] [--argo-repeat N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from . import report
from .figures import ARGO, OPERATOR, Figure, Samples, merge

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="make bench", description=__doc__)
    ap.add_argument("--only", choices=("engine", "cluster", "all"), default="all")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (ours)")
    ap.add_argument("--argo-repeat", type=int, default=1, help="runs of each Argo scenario")
    ap.add_argument("--out", type=Path, default=HERE, help="where results.json and out/ go")
    ap.add_argument(
        "--scenario",
        action="append",
        help="only this cluster scenario (repeatable); results.json keeps the other figures",
    )
    ap.add_argument(
        "--system",
        action="append",
        choices=(OPERATOR, ARGO),
        help="only this system's cluster runs (repeatable); results.json keeps the other's",
    )
    args = ap.parse_args(argv)
    figures: list[Figure] = []
    samples: list[Samples] = []
    failures: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns) as progress:
        if args.only in ("engine", "all"):
            from . import engine

            f, s = engine.run(args.repeat, progress)
            figures, samples = figures + f, samples + s
        if args.only in ("cluster", "all"):
            from . import cluster  # needs the local cluster: brings it up

            chosen = set(args.scenario or ())
            f, s = cluster.run(
                args.repeat,
                progress,
                argo_repeat=args.argo_repeat,
                systems=tuple(args.system or (OPERATOR, ARGO)),
                only=lambda sc: not chosen or sc.name in chosen,
            )
            figures, samples = figures + f, samples + s
            failures = cluster.FAILURES
    merged = merge(figures)
    if args.scenario or args.system:  # what was re-measured replaces its own; the rest is kept
        merged, samples = report.keep_others(args.out / "results.json", merged, samples)
    report.show(merged)
    meta = report.machine() | {
        "repeat": args.repeat,
        "argo_repeat": args.argo_repeat,
        "only": args.only,
    }
    args.out.mkdir(parents=True, exist_ok=True)  # --out may name a folder not made yet
    report.write_json(args.out / "results.json", merged, samples, meta)
    written = report.plots(args.out / "out", merged, samples)
    (args.out / "out" / "summary.md").write_text(report.markdown(merged))
    print(f"wrote {args.out / 'results.json'} and {len(written)} plots in {args.out / 'out'}")
    if failures:
        raise SystemExit("some runs failed (left out of the figures):\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    main()
