"""Time hash assignment: ``python bench/bench_assign.py``.

Each case runs in its own process so that its peak RSS is its own. Ids are built before the clock
starts; "peak RSS" is the process's peak, "assign RSS" how much assignment added to the peak.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

from promolab.design.assignment import assign_units

ARMS = [("control", 0.25), ("pct15", 0.25), ("save10", 0.25), ("bogo", 0.25)]
CASES = [("int", 1_000_000), ("int", 10_000_000), ("str", 1_000_000)]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(kind: str, n: int) -> dict[str, float]:
    """Assign ``n`` ids of ``kind`` ('int' or 'str') to 4 arms with a 5% holdout; time and memory."""
    ids = np.arange(n, dtype=np.int64) * 7 + 1_000_000_007
    unit_ids = ids if kind == "int" else np.array([f"cust-{i}" for i in ids.tolist()], dtype=object)
    before = _peak_mb()
    start = time.perf_counter()
    assignment = assign_units(unit_ids, ARMS, salt="spring-discount-2026", holdout=0.05)
    seconds = time.perf_counter() - start
    assert len(assignment.table) == n
    return {"seconds": seconds, "peak_mb": _peak_mb(), "assign_mb": _peak_mb() - before}


def main() -> int:
    print(f"{'ids':>12} {'kind':>4} {'seconds':>8} {'ids/s':>12} {'peak RSS MB':>12} {'assign RSS MB':>14}")
    for kind, n in CASES:
        done = subprocess.run(
            [sys.executable, __file__, kind, str(n)], capture_output=True, text=True, check=True
        )
        r = json.loads(done.stdout)
        print(
            f"{n:>12,} {kind:>4} {r['seconds']:>8.2f} {n / r['seconds']:>12,.0f} "
            f"{r['peak_mb']:>12,.0f} {r['assign_mb']:>14,.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3:
        print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]))))
        raise SystemExit(0)
    raise SystemExit(main())
