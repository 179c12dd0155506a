"""Tabulates fine-tuning runs of an experiment directory as Markdown (mean ± std over seeds).

Usage: python experiments/summarize.py runs/exp-molpeg [DATASET]
Reads every <root>/seed*/<dataset>/finetune-<tag>/summary.json and groups by tag.
"""
import glob
import json
import os
import statistics
import sys


def main() -> None:
    root = sys.argv[1]
    dataset = sys.argv[2] if len(sys.argv) > 2 else "hiv"
    runs = {}
    for path in sorted(glob.glob(f"{root}/seed*/{dataset}/finetune-*/summary.json")):
        tag = os.path.basename(os.path.dirname(path))[len("finetune-"):]
        s = json.load(open(path))
        runs.setdefault(tag, []).append(s)
    def order(tag):
        kind, _, keep = tag.rpartition("-")
        return (0, 0, "") if tag == "full" else (1, float(keep) if keep.replace(".", "").isdigit() else 0, kind)
    print("| run | seeds | test ROC-AUC (mean ± std) | valid ROC-AUC | samples seen | train s |")
    print("|---|---|---|---|---|---|")
    for tag in sorted(runs, key=order):
        rs = runs[tag]
        def ms(values):
            values = [v for v in values if v is not None]
            if not values:
                return "n/a"
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.4f} ± {sd:.4f}"
        test = ms([r["test_at_best"].get("roc_auc") for r in rs])
        valid = ms([r["best_valid"].get("roc_auc") for r in rs])
        seen = statistics.mean(r["samples_seen"] for r in rs)
        secs = statistics.mean(r["train_seconds"] for r in rs)
        print(f"| {tag} | {len(rs)} | {test} | {valid} | {seen:,.0f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
