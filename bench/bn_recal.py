"""Does recomputing the classifier head's BatchNorm statistics before each validation help?

`ClassifierTrainConfig.bn_recal` (see `ulmfit.train.classify.recalibrate_batchnorm`) sets the head's
BatchNorm statistics to the exact mean and variance of evaluation-mode features before each
validation, instead of the running averages of training. This runs the same classifier with it off
and on, side by side in one process, on the sample-efficiency subsets of `bench/accuracy.py`
(same stratified samples, same seeds, same recipes: ULMFiT semi-supervised and from scratch), and
prints paired differences. Rows go to bench/results/bn_recal.jsonl (experiment `bn_recal:off` /
`bn_recal:on`); `--sizes all` runs every training label: there `ulmfit-semi` is the forward model
of the main table (its recipe, `accuracy.recipe`), reported as `ulmfit-fwd (main recipe)`.

    .venv/bin/python bench/bn_recal.py run --dataset rotten-tomatoes --sizes 100 200 500 1000 --seeds 0 1 2
    .venv/bin/python bench/bn_recal.py report
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy as A  # noqa: E402  (bench/accuracy.py: data, LMs, recipes, results file)

RESULTS = A.ROOT / "bench" / "results" / "bn_recal.jsonl"
METHODS = ["ulmfit-semi", "scratch"]
VARIANTS = ["off", "on"]


def machine() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
        # keys end in tabs in /proc/cpuinfo ("model name\t: ..."): stripped, or none would match
        kv = {k.strip(): v for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
        return (f"{kv.get('model name', '?').strip()} family {kv.get('cpu family', '?').strip()} "
                f"model {kv.get('model', '?').strip()}")
    except OSError:
        return "unknown"


def run(ds: str, sizes: list, seeds: list[int], methods: list[str], variants: list[str], rerun: bool) -> None:
    folder, train, test = A.load_dataset(ds)
    train_csv = folder / "train.csv"
    res = A.Results(RESULTS, rerun=rerun)
    cpu = machine()
    for size in sizes:
        for seed in seeds:
            sub = train if size == "all" else A.stratified_sample(train, int(size), seed)
            n = len(sub)
            for method in methods:
                for v in variants:
                    if method == "scratch":
                        cfg = A.scratch_recipe(ds, n, seed)
                    elif size == "all":
                        cfg = A.recipe(ds, n, seed)
                    else:
                        cfg = A.clf_config(n, seed)
                    cfg = dataclasses.replace(cfg, bn_recal=v == "on")
                    out = A.WORK / ds / f"bnrecal-{size}-{method}-{v}-s{seed}"

                    def go(cfg=cfg, out=out, method=method):
                        lm_dir, _ = A.target_lm(ds, False, train_csv)
                        r = A.train_and_eval(lm_dir, sub, test, out, cfg, pretrained=method != "scratch")
                        A.shutil.rmtree(out, ignore_errors=True)
                        return {**r, "machine": cpu}

                    A._guard(res, dict(experiment=f"bn_recal:{v}", dataset=ds, method=method, n_labels=size,
                                       seed=seed), go)


def report(path: Path = RESULTS) -> str:
    res = A.Results(path)
    rows = {(r["experiment"].split(":")[1], r["dataset"], r["method"], str(r["n_labels"]), r["seed"]): r
            for r in res.latest() if r.get("accuracy") is not None}
    cells = sorted({k[1:4] for k in rows}, key=lambda c: (c[0], c[1], int(c[2]) if c[2].isdigit() else 10**9))
    lines = ["| dataset | method | labels | off: accuracy | on: accuracy | on - off (paired) | off: macro-F1 | "
             "on: macro-F1 | seeds |", "|---|---|---:|---|---|---|---|---|---:|"]

    def ms(xs):
        return f"{100 * statistics.mean(xs):.2f}" + (f" ± {100 * statistics.stdev(xs):.2f}" if len(xs) > 1 else "")

    for ds, method, size in cells:
        seeds = sorted(s for (v, d, m, n, s) in rows if v == "off" and (d, m, n) == (ds, method, size)
                       and ("on", d, m, n, s) in rows)
        if not seeds:
            continue
        get = lambda v, key: [rows[(v, ds, method, size, s)][key] for s in seeds]  # noqa: E731
        off, on = get("off", "accuracy"), get("on", "accuracy")
        diff = [b - a for a, b in zip(off, on)]
        name = "ulmfit-fwd (main recipe)" if method == "ulmfit-semi" and size == "all" else method
        lines.append(f"| {ds} | {name} | {size} | {ms(off)} | {ms(on)} | {100 * statistics.mean(diff):+.2f} "
                     f"({', '.join(f'{100 * d:+.1f}' for d in diff)}) | {ms(get('off', 'macro_f1'))} | "
                     f"{ms(get('on', 'macro_f1'))} | {len(seeds)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["run", "report"])
    p.add_argument("--dataset", default="rotten-tomatoes", choices=A.DATASETS)
    p.add_argument("--sizes", nargs="+", default=[str(s) for s in A.SIZES], help="label counts, or 'all'")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--rerun", action="store_true")
    a = p.parse_args()
    if a.cmd == "report":
        print(report())
        return
    A._maybe_jemalloc()
    run(a.dataset, a.sizes, a.seeds, a.methods.split(","), a.variants.split(","), a.rerun)
    print(report())


if __name__ == "__main__":
    main()
