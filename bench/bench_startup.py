"""What a command costs before it reads any data: ``python bench/bench_startup.py [--repeats 15]
[--tea-tasting-python PATH]``.

Each row is a whole fresh process (median wall seconds over the repeats, largest peak RSS), through the
timing wrapper of ``bench_analyze.py``:

- Python itself (``python -c pass``) and ``import duckdb``: the floor under any DuckDB tool;
- ``promolab --version``;
- ``promolab validate experiments/channel.yaml``;
- analyze's fixed cost: the modules ``promolab analyze`` imports and the spec loaded (no data read);
- tea-tasting's imports (``import tea_tasting``), when this Python or ``--tea-tasting-python`` has it.

Targets (issue 19): ``--version`` under 0.15 s, analyze's fixed cost under 0.45 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from bench_analyze import ROOT, SPEC, _python_c, measure, promolab_startup

PROMOLAB = [sys.executable, "-m", "promolab"]


def rows(tea_tasting_python: str | None) -> dict[str, list[str] | None]:
    """The argv of each measured start-up (None: not available here)."""
    tea = tea_tasting_python or sys.executable
    has_tea = (
        subprocess.run([tea, "-c", "import tea_tasting"], capture_output=True, check=False).returncode == 0
    )
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import duckdb": [sys.executable, "-c", "import duckdb"],
        "promolab --version": [*PROMOLAB, "--version"],
        "promolab validate (one spec)": [*PROMOLAB, "validate", str(ROOT / "experiments" / "channel.yaml")],
        "promolab analyze: fixed cost": _python_c(promolab_startup, str(SPEC)),
        "import tea_tasting": [tea, "-c", "import tea_tasting"] if has_tea else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tea-tasting-python", default=None)
    args = parser.parse_args()
    print(f"{'start-up':<32} {'median s':>9} {'min s':>7} {'peak MB':>8}")
    for name, argv in rows(args.tea_tasting_python).items():
        if argv is None:
            print(f"{name:<32} {'not installed here (--tea-tasting-python PATH)':>26}")
            continue
        runs = [measure(argv) for _ in range(args.repeats)]
        failed = [r for r in runs if r.returncode != 0]
        if failed:
            raise SystemExit(f"{name}: exit {failed[0].returncode}: {failed[0].stderr.strip()[-300:]}")
        seconds = [r.seconds for r in runs]
        peak = max(r.peak_mb for r in runs)
        print(f"{name:<32} {statistics.median(seconds):>9.3f} {min(seconds):>7.3f} {peak:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
