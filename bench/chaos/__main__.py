"""Run the chaos suite: ``python -m bench.chaos [--size small|medium|full] ...``.

Each case deploys the probe processor under a real agent on services of its
own, does harm, and prints what it counted (see docs/reliability.md). The run
folder (git repository, virtualenv cache, logs, SQLite files) is a temporary
folder removed at the end unless ``--keep``; PostgreSQL schemas, RabbitMQ
virtual hosts and private Redis servers are removed by each case.

The exit status is 0 when every case ran (whatever it found), 1 with
``--strict`` when a case missed a target, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.chaos.cases import CASES, SIZES, Run
from bench.chaos.network import make_repo
from bench.chaos.report import CaseResult, print_result, summary, to_json

STACKS = ("embedded", "real")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--stack", choices=[*STACKS, "both"], default="both")
    parser.add_argument("--case", choices=sorted(CASES), action="append",
                        help="a case to run (repeatable) [default: all]")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--venv-cache", type=Path, help="keep processor virtualenvs in this folder across runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run folder (logs)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a case missed a target")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    size = SIZES[args.size]
    stacks = STACKS if args.stack == "both" else (args.stack,)
    folder = Path(tempfile.mkdtemp(prefix="pyfi-chaos-"))
    results: list[CaseResult] = []
    started = time.monotonic()
    try:
        cache = args.venv_cache.resolve() if args.venv_cache else folder / "venvs"
        cache.mkdir(parents=True, exist_ok=True)
        # Next to a kept cache, the repository keeps its URL, so its venv is found again.
        repo = make_repo(cache if args.venv_cache else folder)
        run = Run(size, folder, cache, repo)
        for case in args.case or list(CASES):
            for stack in stacks:
                began = time.monotonic()
                try:
                    result = CASES[case](run, stack)
                except Exception as exc:  # a broken case is reported, not fatal
                    result = CaseResult(case, stack, size.name)
                    result.failures.append(f"the case broke: {type(exc).__name__}: {exc}")
                    traceback.print_exc(file=sys.stderr)
                result.seconds = time.monotonic() - began
                result.judge()
                print_result(result)
                sys.stdout.flush()
                results.append(result)
    finally:
        if args.keep:
            print(f"run folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{args.size} run, {time.monotonic() - started:.0f}s\n")
    print(summary(results))
    if args.json:
        args.json.write_text(to_json(results))
    failed = any(r.failures for r in results)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
