"""Tabulates fine-tuning runs of an experiment directory as Markdown (mean ± std over seeds).

Usage: python experiments/summarize.py runs/exp-molpeg [DATASET] [--pivot]
Reads every <root>/seed*/<dataset>/finetune-<tag>/summary.json and groups by tag. Tags are
`full`, `<strategy>-<keep>` for static coresets and `dynamic-<policy>-<keep>` for dynamic pruning.
--pivot adds a strategy × keep table of test ROC-AUC (mean ± std, seeds) with each column's best in bold.
--positives adds, for static coresets (select-<tag>/coreset.parquet), the share of positive labels
(first task) in the coreset, mean over seeds: class skew explains much of how the rules behave.
"""
import glob
import json
import os
import statistics
import sys


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(ms):
    return "n/a" if ms is None else f"{ms[0]:.4f} ± {ms[1]:.4f}"


def split_tag(tag):
    """(strategy, keep) of a tag; keep is None for `full` and other tags without a keep suffix."""
    strategy, _, keep = tag.rpartition("-")
    try:
        return strategy, float(keep)
    except ValueError:
        return tag, None


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0]
    dataset = args[1] if len(args) > 1 else "hiv"
    runs = {}
    for path in sorted(glob.glob(f"{root}/seed*/{dataset}/finetune-*/summary.json")):
        tag = os.path.basename(os.path.dirname(path))[len("finetune-"):]
        runs.setdefault(tag, []).append(json.load(open(path)))

    def order(tag):
        strategy, keep = split_tag(tag)
        return (keep is not None, keep or 0.0, strategy.startswith("dynamic-"), strategy)

    print("| run | kind | seeds | test ROC-AUC (mean ± std) | valid ROC-AUC | samples seen | train s |")
    print("|---|---|---|---|---|---|---|")
    for tag in sorted(runs, key=order):
        rs = runs[tag]
        strategy, keep = split_tag(tag)
        kind = "full data" if keep is None else ("dynamic" if strategy.startswith("dynamic-") else "static")
        test = fmt(mean_std([r["test_at_best"].get("roc_auc") for r in rs]))
        valid = fmt(mean_std([r["best_valid"].get("roc_auc") for r in rs]))
        seen = statistics.mean(r["samples_seen"] for r in rs)
        secs = statistics.mean(r["train_seconds"] for r in rs)
        print(f"| {tag} | {kind} | {len(rs)} | {test} | {valid} | {seen:,.0f} | {secs:.0f} |")

    if "--pivot" in sys.argv:
        print_pivot(runs)
    if "--positives" in sys.argv:
        print_positives(root, dataset, runs)


def print_pivot(runs) -> None:
    cells, keeps, strategies = {}, set(), []
    for tag, rs in runs.items():
        strategy, keep = split_tag(tag)
        if keep is None:
            continue
        keeps.add(keep)
        if strategy not in strategies:
            strategies.append(strategy)
        cells[strategy, keep] = (mean_std([r["test_at_best"].get("roc_auc") for r in rs]), len(rs))
    keeps = sorted(keeps)
    best = {k: max((c[0][0] for (s, kk), c in cells.items() if kk == k and c[0]), default=None) for k in keeps}
    strategies.sort(key=lambda s: (s.startswith("dynamic-"), s))
    print()
    print("| strategy | " + " | ".join(f"keep {k:g}" for k in keeps) + " |")
    print("|---|" + "---|" * len(keeps))
    for strategy in strategies:
        row = []
        for k in keeps:
            cell = cells.get((strategy, k))
            if cell is None or cell[0] is None:
                row.append("—")
                continue
            text = f"{fmt(cell[0])} ({cell[1]})"
            row.append(f"**{text}**" if cell[0][0] == best[k] else text)
        print(f"| {strategy} | " + " | ".join(row) + " |")


def print_positives(root, dataset, runs) -> None:
    import pyarrow.parquet as pq

    by_strategy = {}
    for seed_dir in sorted(glob.glob(f"{root}/seed*/{dataset}")):
        graphs = pq.read_table(f"{seed_dir}/featurize/graphs.parquet", columns=["mol_id", "labels"])
        first_label = {m: (ls[0] if ls else None) for m, ls in zip(graphs["mol_id"].to_pylist(), graphs["labels"].to_pylist())}
        for tag in runs:
            strategy, keep = split_tag(tag)
            coreset = f"{seed_dir}/select-{tag.removeprefix('static-')}/coreset.parquet"
            if keep is None or not os.path.exists(coreset):
                continue
            labels = [first_label[m] for m in pq.read_table(coreset, columns=["mol_id"])["mol_id"].to_pylist()]
            labels = [v for v in labels if v is not None]
            by_strategy.setdefault(strategy, {}).setdefault(keep, []).append(sum(v > 0.5 for v in labels) / len(labels))
    keeps = sorted({k for per_keep in by_strategy.values() for k in per_keep})
    print()
    print("| coreset positives (share) | " + " | ".join(f"keep {k:g}" for k in keeps) + " |")
    print("|---|" + "---|" * len(keeps))
    for strategy in sorted(by_strategy):
        cells = [f"{statistics.mean(v):.1%}" if (v := by_strategy[strategy].get(k)) else "—" for k in keeps]
        print(f"| {strategy} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
