"""Build the embedded base model in ``assets/embedded-model`` with one seeded command.

    python scripts/build_embedded_model.py                # all stages, CPU or GPU
    python scripts/build_embedded_model.py --stage corpus # or: tokenize, fit, card

Stages: ``corpus`` (fetch Debian packages with apt-get download, extract English text, add the
seeded grammar) -> ``tokenize`` (byte-level BPE + token id arrays) -> ``fit`` (GPT-2 from
scratch for a time budget; the GPU is used when present) -> ``card`` (samples and README).
Work files go to ``.corpus/`` (gitignored); only the final model folder is committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "embedded_model"))

import card  # noqa: E402
import corpus  # noqa: E402
import train  # noqa: E402

ROOT = HERE.parent
WORK = ROOT / ".corpus"
MODEL = ROOT / "assets" / "embedded-model"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stage", choices=["all", "corpus", "tokenize", "fit", "card"], default="all"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=120.0, help="training wall-time budget")
    parser.add_argument("--out", type=Path, default=MODEL)
    args = parser.parse_args()
    stages = ["corpus", "tokenize", "fit", "card"] if args.stage == "all" else [args.stage]
    if "corpus" in stages:
        print(corpus.build(WORK / "debs", WORK / "text", seed=args.seed))
    if "tokenize" in stages:
        print(train.tokenize(WORK / "text", WORK / "tokens"))
    if "fit" in stages:
        args.out.mkdir(parents=True, exist_ok=True)
        train.fit(WORK / "tokens", args.out, minutes=args.minutes, seed=args.seed)
    if "card" in stages:
        card.write(args.out, WORK / "text" / "manifest.json", seed=args.seed)


if __name__ == "__main__":
    main()
