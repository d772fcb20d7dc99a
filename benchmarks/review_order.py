"""The review queue's order: the planted error removed by the first 10 % of the queue, in gain and label_score order.

    .venv/bin/python benchmarks/review_order.py [--audit sample_data/audit] [--noise sample_data/truth/noise.csv]
                                                [--fraction 0.1]

On the synthetic benchmark audit (its planted errors in `noise.csv`), `auditor.evaluate.error_removed_by_queue`
for each order, with a swapped face as one item (the queue now) and as one item per point (the queue before), for
two curators: one who accepts every fix, one who puts exactly the wrong labels right. Prints a table and, last, one
line of key=value pairs (the ratios: gain over label_score order).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from auditor.audit_dir import load_audit
from auditor.evaluate import error_removed_by_queue, read_noise

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit", type=Path, default=REPO / "sample_data" / "audit")
    parser.add_argument("--noise", type=Path, default=REPO / "sample_data" / "truth" / "noise.csv")
    parser.add_argument("--fraction", type=float, default=0.1, help="the share of the queue's items reviewed")
    args = parser.parse_args()
    audit, noise = load_audit(args.audit), read_noise(args.noise)
    runs = {(order, grouped): error_removed_by_queue(audit, noise, order=order, fraction=args.fraction,
                                                     group_faces=grouped)
            for grouped in (True, False) for order in ("gain", "score")}
    first = runs["gain", True]
    print(f"review order: {args.audit}, planted error {first['planted_nme']:.1f} NME "
          f"({first['planted_points_nme']:.1f} outside swapped faces), the first {args.fraction:.0%} of the queue")
    header = (f"{'queue':22} {'order':6} {'items':>6} {'reviewed':>8} {'accept all':>11} {'fix wrong':>10} "
              f"{'points: accept':>15} {'points: fix':>12}")
    print(header)
    print("-" * len(header))
    for (order, grouped), r in runs.items():
        queue = "swapped face: 1 item" if grouped else "one item per point"
        print(f"{queue:22} {order:6} {r['items']:>6} {r['reviewed']:>8} {r['accepted_nme']:>11.2f} "
              f"{r['fixed_nme']:>10.2f} {r['accepted_points_nme']:>15.2f} {r['fixed_points_nme']:>12.2f}")

    def ratio(a: tuple, b: tuple, key: str) -> float:
        return runs[a][key] / runs[b][key] if runs[b][key] else float("nan")

    keys = {"gain_nme": first["accepted_nme"], "score_nme": runs["score", True]["accepted_nme"],
            "ratio": ratio(("gain", True), ("score", True), "accepted_nme"),
            "ratio_points": ratio(("gain", True), ("score", True), "accepted_points_nme"),
            "ratio_fixed": ratio(("gain", True), ("score", True), "fixed_nme"),
            "ratio_vs_per_point_score": ratio(("gain", True), ("score", False), "accepted_nme")}
    print(" ".join(f"{k}={v:.3f}" for k, v in keys.items()))


if __name__ == "__main__":
    main()
