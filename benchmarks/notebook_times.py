"""Wall time of each notebook at quick size on this machine (the budget is 120 s each).

Writes nothing back: the stored outputs are untouched. Last line: one JSON object {notebook: seconds, ..., "total": s}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tvgkit.notebooks import execute

BUDGET_S = 120.0


def main() -> None:
    root = Path(__file__).resolve().parent.parent / "notebooks"
    paths = sorted(root.glob("[0-9][0-9]_*.ipynb"))
    times: dict[str, float] = {}
    for path in paths:
        times[path.stem] = round(execute(path, inplace=False), 1)
        verdict = "ok" if times[path.stem] <= BUDGET_S else "OVER BUDGET"
        print(f"{path.stem:<40} {times[path.stem]:>7.1f} s  {verdict}", file=sys.stderr, flush=True)
    total = round(sum(times.values()), 1)
    print(f"{'notebook':<40} {'seconds':>8}")
    for name, seconds in times.items():
        print(f"{name:<40} {seconds:>8.1f}")
    print(f"{'total':<40} {total:>8.1f}")
    print(json.dumps({**times, "total": total}))


if __name__ == "__main__":
    main()
