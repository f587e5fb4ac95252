"""Ship a leaderboard with the app: ``morl leaderboard`` output -> assets/leaderboard/findings.json.

Usage::

    morl leaderboard --out BENCH_OUT --dest benchmarks/results/leaderboard
    python scripts/publish_leaderboard.py [benchmarks/results/leaderboard/leaderboard.json]
        [--note "what a reader must know beside the numbers"]

The Benchmark page shows the shipped file as the published results (the table of
``docs/findings.md``): every row of the leaderboard, with its suite's objectives, intervals and
tie marks, plus the date and the setting it was measured in.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core.bench.suites import load_suite  # noqa: E402
from morl_core.runfolder import write_json_atomic  # noqa: E402

SHIPPED = ROOT / "assets" / "leaderboard" / "findings.json"
SETTING = (
    "embedded 6.9M-parameter model, each suite's own budget (benchmarks/suites), evaluation "
    "protocol {protocol}; mean [95% t interval over training seeds]"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "leaderboard",
        nargs="?",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "leaderboard" / "leaderboard.json",
    )
    parser.add_argument(
        "--note", default="", help="what a reader must know beside the numbers (shown after them)"
    )
    args = parser.parse_args(argv)
    try:
        board = json.loads(args.leaderboard.read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"leaderboard: cannot read {args.leaderboard} ({exc}); run morl leaderboard")
    objectives = {s: list(load_suite(s).objectives) for s in {r["suite"] for r in board["rows"]}}
    protocols = sorted({str(p) for r in board["rows"] for p in [r.get("protocol_version")] if p})
    write_json_atomic(
        SHIPPED,
        {
            "source": "docs/findings.md",
            "date": datetime.now(UTC).date().isoformat(),
            "setting": SETTING.format(protocol=", ".join(protocols) or "as recorded")
            + (f". {args.note.rstrip('.')}" if args.note else ""),
            "statistics": board.get("statistics"),
            "rows": [{**r, "objectives": objectives[r["suite"]]} for r in board["rows"]],
        },
    )
    print(f"wrote {SHIPPED.relative_to(ROOT)}: {len(board['rows'])} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
