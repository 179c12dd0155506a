"""Tables of experiments/table1.sh: MolPeg's Table 1 protocol on HIV, as Markdown.

Usage: python experiments/table1_summary.py runs/exp-table1 PIPELINE [--csv FILE] [--archive DIR] [--prior CSV]

Reads <root>/seed*/<pipeline>/finetune-<tag>/{summary.json,metrics.parquet} (tags: full, molpeg-<r>,
molpeg-scratch-<r>, infobatch-<r>, random-<r>) and prints
1. test ROC-AUC at the best-validation epoch, strategy × keep, mean ± std over seeds (n seeds);
2. samples seen (training forward/backward passes) and wall time (training + evaluation) per cell;
3. time to accuracy: per run, the wall time at which its test ROC-AUC first reaches the full-data run's
   test ROC-AUC (at that run's best-validation epoch) of the same seed, or "never"; and the same in
   samples seen (training passes), which does not depend on how loaded the machine was;
4. InfoBatch at MolPeg's budget: InfoBatch's knob (the pruned share of below-mean-loss samples) cannot
   reach small keep ratios, so besides the run as it is we report it restricted to the epochs whose
   cumulative samples seen stay within the MolPeg run's total at the same keep and seed (best-valid
   epoch among those, its test ROC-AUC) — "matched samples seen".
--archive DIR (repeatable) reads the same layout under DIR too (experiments/table1.sh copies every
finished run to experiments/results/table1-hiv/cells, which is committed); a run found in several
places counts once. --prior CSV adds rows of a CSV this script wrote earlier (--csv) for cells whose run
directories are gone (experiments/results/table1-hiv/session11_runs.csv); those rows have no per-epoch
curve, so they are in every table but not in the figure.
--csv writes one row per run (seed, strategy, keep, valid/test, samples, seconds, time to accuracy).
--figure PATH.png draws time to accuracy: test ROC-AUC against wall time for every run of one seed
(the lowest with the most runs) at keep 0.3 and 0.4 and full data, with the full-data run's test
ROC-AUC as a dashed line (needs matplotlib).
--pyg RESULTS.jsonl adds the cross-check against bench/molpeg_pyg.py (an independent PyTorch Geometric
implementation of the same protocol): full data and dynamic MolPeg at keep 0.3, both from scratch, at
the same layers/width/epochs; the means agree when |Δ| ≤ max(0.015, 1.5 × pooled std).
"""
import csv
import glob
import json
import os
import statistics
import sys

import pyarrow.parquet as pq

STRATEGIES = [
    ("full", "full data"),
    ("molpeg", "dynamic MolPeg (pretrained)"),
    ("infobatch", "InfoBatch (pretrained), as run"),
    ("infobatch@budget", "InfoBatch (pretrained), at MolPeg's samples seen"),
    ("random", "hard random (pretrained)"),
    ("molpeg-scratch", "dynamic MolPeg from scratch"),
    ("full-scratch", "full data from scratch"),
]
KEEPS = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]
# MolPeg (NeurIPS 2024) Table 1, HIV ROC-AUC (%) at 90/80/70/60/40/20% pruned, i.e. keep 0.1 … 0.8.
PAPER = {
    "full": "85.1 ± 0.3 (all keeps)",
    "molpeg": [83.7, 84.8, 85.3, 85.5, 86.0, 85.6],
    "infobatch": [82.9, None, None, None, None, 85.2],
    "random": [77.7, None, None, None, None, 85.0],
}


def split_tag(tag):
    if tag in ("full", "full-scratch"):
        return tag, 1.0
    strategy, _, keep = tag.rpartition("-")
    return strategy, float(keep)


def metric_rows(path):
    t = pq.read_table(path).to_pylist()
    epochs = {}
    for r in t:
        # Schema 2 adds per-task rows (task = name); the averages have task null (older files: no column).
        if r.get("task") is not None:
            continue
        e = epochs.setdefault(r["epoch"], {"samples": r["samples_seen"], "seconds": r["seconds"]})
        if r["metric"] == "roc_auc" and r["split"] in ("valid", "test"):
            e[r["split"]] = r["value"]
        e["samples"] = max(e["samples"], r["samples_seen"])
        e["seconds"] = max(e["seconds"], r["seconds"])
    return [dict(epoch=k, **v) for k, v in sorted(epochs.items())]


def best_within(epochs, budget=None):
    """(valid, test, epoch) at the first best-valid epoch among epochs within the samples budget."""
    best = None
    for e in epochs:
        if budget is not None and e["samples"] > budget:
            break
        v = e.get("valid")
        if v is not None and (best is None or v > best[0]):
            best = (v, e.get("test"), e["epoch"])
    return best


def load(roots, pipeline):
    runs, seen = [], set()
    paths = [p for root in roots for p in sorted(glob.glob(f"{root}/seed*/{pipeline}/finetune-*/summary.json"))]
    for path in paths:
        d = os.path.dirname(path)
        if not os.path.exists(os.path.join(d, "manifest.json")):
            continue  # unfinished
        seed = int(d.split("/seed")[-1].split("/")[0])
        strategy, keep = split_tag(os.path.basename(d)[len("finetune-"):])
        if (seed, strategy, keep) in seen:
            continue
        seen.add((seed, strategy, keep))
        s = json.load(open(path))
        runs.append(dict(seed=seed, strategy=strategy, keep=keep, summary=s, epochs=metric_rows(os.path.join(d, "metrics.parquet"))))
    return runs


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def fmt(ms, scale=100.0, digits=1):
    if ms is None:
        return "–"
    m, s, n = ms
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f} ({n})"


def option_values(name):
    return [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == name]


def read_prior(path):
    def num(v):
        if v in ("", "None"):
            return None
        if v == "never":
            return v
        return float(v) if any(c in v for c in ".e") else int(v)
    with open(path, newline="") as f:
        return [{k: (num(v) if k != "strategy" else v) for k, v in row.items()} for row in csv.DictReader(f)]


def main():
    valued = {"--csv", "--archive", "--prior", "--figure", "--pyg"}
    args = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and sys.argv[i - 1] not in valued]
    root, pipeline = args[0], args[1]
    csv_path = sys.argv[sys.argv.index("--csv") + 1] if "--csv" in sys.argv else None
    runs = load([root] + option_values("--archive"), pipeline)
    have = {(r["seed"], r["strategy"], r["keep"]) for r in runs}
    prior = [x for p in option_values("--prior") for x in read_prior(p)
             if (x["seed"], x["strategy"].replace("infobatch@budget", "infobatch"), float(x["keep"])) not in have]
    full_test = {r["seed"]: r["summary"]["test_at_best"].get("roc_auc") for r in runs if r["strategy"] == "full"}
    full_test.update({x["seed"]: x["test"] for x in prior if x["strategy"] == "full"})
    molpeg_budget = {(r["seed"], r["keep"]): r["summary"]["samples_seen"] for r in runs if r["strategy"] == "molpeg"}
    rows = []
    for r in runs:
        s = r["summary"]
        target = full_test.get(r["seed"])
        reach = reach_samples = None
        if target is not None:
            hit = next((e for e in r["epochs"] if e.get("test") is not None and e["test"] >= target), None)
            reach = hit["seconds"] if hit else "never"
            reach_samples = hit["samples"] if hit else "never"
        rows.append(dict(seed=r["seed"], strategy=r["strategy"], keep=r["keep"], valid=s["best_valid"].get("roc_auc"),
                         test=s["test_at_best"].get("roc_auc"), best_epoch=s["best_epoch"], samples=s["samples_seen"],
                         seconds=r["epochs"][-1]["seconds"] if r["epochs"] else s["train_seconds"], reach=reach,
                         reach_samples=reach_samples))
        if r["strategy"] == "infobatch" and (r["seed"], r["keep"]) in molpeg_budget:
            budget = molpeg_budget[(r["seed"], r["keep"])]
            b = best_within(r["epochs"], budget)
            used = max((e for e in r["epochs"] if e["samples"] <= budget), key=lambda e: e["epoch"], default=None)
            rows.append(dict(seed=r["seed"], strategy="infobatch@budget", keep=r["keep"], valid=b and b[0], test=b and b[1],
                             best_epoch=b and b[2], samples=used["samples"] if used else 0,
                             seconds=used["seconds"] if used else 0.0, reach=None, reach_samples=None))
    rows += prior

    def cell(strategy, keep, field):
        return [x[field] for x in rows if x["strategy"] == strategy and (strategy.startswith("full") or x["keep"] == keep)]

    seeds = sorted({x["seed"] for x in rows})
    print(f"Pipeline `{pipeline}`, seeds with results: {seeds}. Test ROC-AUC (%) at the best-validation epoch, mean ± std (seeds).\n")
    header = "| strategy | " + " | ".join(f"keep {k} ({round((1 - k) * 100)}% pruned)" for k in KEEPS) + " |"
    print(header)
    print("|---|" + "---|" * len(KEEPS))
    for key, label in STRATEGIES:
        if key.startswith("full"):
            print(f"| {label} | " + fmt(mean_std(cell(key, None, "test"))) + " (every keep) |" + " |" * (len(KEEPS) - 1))
            continue
        print(f"| {label} | " + " | ".join(fmt(mean_std(cell(key, k, "test"))) for k in KEEPS) + " |")
    print("\nThe paper's Table 1 (HIV, %): full data " + PAPER["full"] + "; MolPeg " + " / ".join(f"{v}" for v in PAPER["molpeg"])
          + "; InfoBatch 82.9 … 85.2; hard random 77.7 … 85.0 (keep 0.1 … 0.8).\n")

    print("Samples seen (mean over seeds, thousands) / wall time (mean, minutes: training + per-epoch evaluation):\n")
    print("| strategy | " + " | ".join(f"keep {k}" for k in KEEPS) + " |")
    print("|---|" + "---|" * len(KEEPS))
    for key, label in STRATEGIES:
        def one(k):
            sam, sec = cell(key, k, "samples"), cell(key, k, "seconds")
            return "–" if not sam else f"{statistics.mean(sam) / 1000:,.0f}k / {statistics.mean(sec) / 60:.1f}"
        if key.startswith("full"):
            print(f"| {label} | {one(None)} (every keep) |" + " |" * (len(KEEPS) - 1))
        else:
            print(f"| {label} | " + " | ".join(one(k) for k in KEEPS) + " |")

    print("\nTime to accuracy: wall time (median, min) / samples seen (median, thousands) at which a run's test ROC-AUC"
          " first reaches the same seed's full-data test ROC-AUC (runs reaching / runs):\n")
    print("| strategy | " + " | ".join(f"keep {k}" for k in KEEPS) + " |")
    print("|---|" + "---|" * len(KEEPS))
    for key, label in STRATEGIES:
        if key == "infobatch@budget":
            continue
        def one(k):
            reach = [v for v in cell(key, k, "reach") if v is not None]
            if not reach:
                return "–"
            hit = [v for v in reach if v not in (None, "never")]
            hit_samples = [v for v in cell(key, k, "reach_samples") if v not in (None, "never")]
            if not hit:
                return f"never (0/{len(reach)})"
            return f"{statistics.median(hit) / 60:.1f} min / {statistics.median(hit_samples) / 1000:,.0f}k ({len(hit)}/{len(reach)})"
        if key.startswith("full"):
            print(f"| {label} | {one(None)} |" + " |" * (len(KEEPS) - 1))
        else:
            print(f"| {label} | " + " | ".join(one(k) for k in KEEPS) + " |")
    if "--figure" in sys.argv:
        figure(runs, full_test, sys.argv[sys.argv.index("--figure") + 1])
    if "--pyg" in sys.argv:
        crosscheck(rows, sys.argv[sys.argv.index("--pyg") + 1])
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["seed"])
            w.writeheader()
            for x in sorted(rows, key=lambda x: (x["strategy"], x["keep"] or 0, x["seed"])):
                w.writerow(x)


def figure(runs, full_test, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_seed = {}
    for r in runs:
        by_seed.setdefault(r["seed"], []).append(r)
    if not by_seed:
        return
    seed = max(sorted(by_seed), key=lambda k: len(by_seed[k]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colors = {"full": "black", "full-scratch": "grey", "molpeg": "tab:red", "infobatch": "tab:blue", "random": "tab:green", "molpeg-scratch": "tab:orange"}
    for ax, keep in zip(axes, (0.3, 0.4)):
        for r in sorted(by_seed[seed], key=lambda r: r["strategy"]):
            if not (r["strategy"].startswith("full") or r["keep"] == keep):
                continue
            pts = [(e["seconds"] / 60, e["test"]) for e in r["epochs"] if e.get("test") is not None]
            label = r["strategy"] if r["strategy"].startswith("full") else f"{r['strategy']} {keep}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colors.get(r["strategy"]), lw=1.2, label=label)
        if full_test.get(seed) is not None:
            ax.axhline(full_test[seed], color="black", ls="--", lw=0.8, label="full data, test at best valid")
        ax.set_title(f"HIV, keep {keep} ({round((1 - keep) * 100)}% pruned), seed {seed}")
        ax.set_xlabel("wall time (min, 1 CPU thread)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test ROC-AUC (per epoch)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", file=sys.stderr)  # stdout is the Markdown pasted into EXPERIMENTS.md


def crosscheck(rows, pyg_path):
    pyg = [json.loads(line) for line in open(pyg_path) if line.strip()]
    print("\nCross-check against the independent PyG implementation (both from scratch; test ROC-AUC at the best-valid epoch):\n")
    print("| run | molpeg (seeds) | PyG (seeds) | Δ | pooled std | tolerance max(0.015, 1.5·std) | agree |")
    print("|---|---|---|---|---|---|---|")
    for label, mine, theirs in [
        ("full data", "full-scratch", lambda r: r["strategy"] == "full"),
        ("dynamic MolPeg keep 0.3", ("molpeg-scratch", 0.3), lambda r: r["strategy"] == "molpeg" and abs(r["keep"] - 0.3) < 1e-9),
    ]:
        if isinstance(mine, tuple):
            a = [x["test"] for x in rows if x["strategy"] == mine[0] and x["keep"] == mine[1]]
        else:
            a = [x["test"] for x in rows if x["strategy"] == mine]
        b = [r["test_auc"] for r in pyg if theirs(r) and r.get("epochs") == 100 and not r.get("limit") and not r.get("pretrained")]
        if not a or not b:
            print(f"| {label} | {len(a)} runs | {len(b)} runs | – | – | – | not yet |")
            continue
        ma, mb = statistics.mean(a), statistics.mean(b)
        va = statistics.variance(a) if len(a) > 1 else 0.0
        vb = statistics.variance(b) if len(b) > 1 else 0.0
        pooled = (((len(a) - 1) * va + (len(b) - 1) * vb) / max(len(a) + len(b) - 2, 1)) ** 0.5
        tol = max(0.015, 1.5 * pooled)
        print(f"| {label} | {ma:.4f} ({len(a)}) | {mb:.4f} ({len(b)}) | {ma - mb:+.4f} | {pooled:.4f} | {tol:.4f} | "
              f"{'yes' if abs(ma - mb) <= tol else 'NO'}{'' if min(len(a), len(b)) >= 3 else ' (fewer than 3 seeds)'} |")


if __name__ == "__main__":
    main()
