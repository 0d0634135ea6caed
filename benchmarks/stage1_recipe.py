"""Stage 1, the official recipe against the improved one (docs/stage1_recipe.md), over feature
scales, widths and seeds, in one command.

    python benchmarks/stage1_recipe.py                # official vs plus: ~15 min on 2 CPU cores
    python benchmarks/stage1_recipe.py --ablation     # each change alone, on the selection set
    python benchmarks/stage1_recipe.py --quick        # a tiny grid in seconds (the tests run it)
    python benchmarks/stage1_recipe.py --out t.json   # also write the record as JSON
    python benchmarks/stage1_recipe.py --long --data-seeds 1 --train-seeds 0 1 2 --workdir runs/
                      # official vs official + unit-norm rows at the official budget

Data: the demo feature generator (datasets/demo.py: the real ShanghaiTech split, lengths and masks;
all-positive I3D-like rows of L2 norm ~3.5) at data seed s and width D, every row multiplied by a
scale (x1: the calibrated setting in which the official recipe trains; x4: norm ~14, a raw I3D
magnitude). Each recipe is a YAML of configs/shanghaitech/ (+ overrides for the ablations) run by
engine.sweep (tools/sweep.py) with the same overrides: STAGE1.EPOCHS (one iteration per epoch),
DATA.VAL_FRACTION 0.2 (every recipe trains on the same 80 % of the training videos and reports the
frame AUC of the held-out 20 %: the recipe was chosen on it, never on the test set) and the file.

Cells (over training seeds 0..n-1; the scale and width cells: seed 0):
  main      D 1024, x1, data seeds 1 and 2 (data seed 0 was the one the recipe was chosen on)
  scale     D 1024, data seed 1, x0.1 / x4 / x10
  width     x1, data seed 1, D 512 / 2048 / 4096
  ablation  (--ablation) D 1024, data seed 0, x1 and x10: the changes one at a time
  long      (--long) x1, --dims (default 1024), --data-seeds (default 1 2): the official recipe
            and the official recipe on unit-norm rows (DATA.L2_NORM True) at the official 3001
            iterations, evaluated every 125, each run's generator chosen on the validation split
            (best_val: its test AUC is `best_val/auc`, its pseudo-labels are written by it); one
            D 1024 run takes ~12-15 min on one loaded CPU thread, so --workdir keeps the runs (an
            interrupted benchmark continues) and two processes with different --data-seeds
            share the two cores
Per cell: mean ± std (ddof 1) over training seeds of the test frame AUC of the final generator, the
frame AUC of its pseudo-labels on the masked training videos, the validation AUC, and `sat`: the
share of test clip scores within 1e-20 of 0 or 1 (a saturated sigmoid: the collapse)."""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from benchmarks.stage1 import describe_machine
from datasets.demo import make_demo_features
from engine.sweep import aggregate, sweep
from utils.checkpoint import write_json
from utils.logger import read_metrics

OFFICIAL = ROOT / "configs/shanghaitech/i3d_stage1.yaml"
PLUS = ROOT / "configs/shanghaitech/i3d_stage1_plus.yaml"
# recipe -> (YAML, overrides)
RECIPES = {"official": (OFFICIAL, []), "plus": (PLUS, [])}
ABLATIONS = {
    **RECIPES,
    # official -> + unit-norm rows -> + Adam -> + warm-up = plus; and plus on raw rows
    "official, L2 rows": (OFFICIAL, ["DATA.L2_NORM", "True"]),
    "plus, no warm-up": (PLUS, ["STAGE1.WARMUP_ITERS", "0"]),
    "plus, raw rows": (PLUS, ["DATA.L2_NORM", "False"]),
}
# the official budget, each run's generator chosen on validation (docs/stage1_recipe.md section 6)
SELECT_ON_VAL = ["PSEUDO_LABEL.CHECKPOINT", "best_val"]
LONG_RECIPES = {
    "official": (OFFICIAL, SELECT_ON_VAL),
    "official, L2 rows": (OFFICIAL, ["DATA.L2_NORM", "True", *SELECT_ON_VAL]),
}
LONG_EPOCHS, LONG_EVAL_PERIOD = 3001, 125
# test AUC and pseudo-labels of the best_val generator; the final one's test AUC (last/auc)
LONG_METRICS = ("best_val/auc", "pseudo_label_auc", "best_val", "best_val_epoch", "last/auc")
# every run with a validation split reports its best_val generator and its final one too
BEST_VAL_METRICS = ("best_val/auc", "best_val", "best_val_epoch", "last/auc")
# (cell, D, data seed, scale)
FULL = [("main", 1024, 1, 1.0), ("main", 1024, 2, 1.0)]
FULL += [("scale", 1024, 1, s) for s in (0.1, 4.0, 10.0)]
FULL += [("width", d, 1, 1.0) for d in (512, 2048, 4096)]
ABLATION = [("ablation", 1024, 0, 1.0), ("ablation", 1024, 0, 10.0)]
# the collapse in seconds (tests/test_stage1_recipe.py): x10 rows, D 128, 10 + 10 bags per
# iteration (6 iterations per epoch)
QUICK = [("quick", 128, 0, 10.0)]
QUICK_OPTS = ["STAGE1.BATCH_SIZE", "10"]
# a score this close to 0 or 1 has a logit beyond ±46: the sigmoid's gradient is gone. Trained MIL
# generators of either recipe push normal clips to 1e-8..1e-15, so a looser bound would count them
SATURATED = 1e-20
METRICS = ("test/auc", "pseudo_label_auc", "val", "sat")


def saturation(run_dir):
    """-> share of the run's test clip scores within SATURATED of 0 or 1."""
    with np.load(Path(run_dir) / "test_scores.npz") as z:
        scores = np.concatenate([z[k] for k in z.files])
    return float(np.mean((scores < SATURATED) | (scores > 1 - SATURATED)))


def run_cell(recipe, features, dim, epochs, seeds, out, extra=(), eval_period=None):
    """One (YAML, overrides) recipe on one generated set over `seeds` -> {seed: {metric: value}}:
    METRICS (test/auc: the generator that wrote the pseudo-labels, PSEUDO_LABEL.CHECKPOINT), plus
    for a run with a validation split the test AUC of its best_val generator (best_val/auc), that
    generator's validation AUC (best_val) and iteration (best_val_epoch), and the final
    generator's test AUC (last/auc)."""
    cfg_file, opts = recipe
    opts = [
        *opts,
        *extra,
        "DATA.FEATURES",
        str(features),
        "DATA.FEATURE_DIM",
        str(dim),
        "DEVICE",
        "cpu",
    ]
    eval_period = eval_period or max(epochs // 4, 1)
    opts += ["STAGE1.EPOCHS", str(epochs), "STAGE1.EVAL_PERIOD", str(eval_period)]
    opts += ["DATA.VAL_FRACTION", "0.2", "OUTPUT_DIR", str(out)]
    record = sweep(str(cfg_file), opts, seeds)
    per_seed = {}
    for seed, metrics in record["per_seed"].items():
        run_dir = Path(record["output_dirs"][seed])
        last = read_metrics(run_dir)[-1]
        per_seed[seed] = {
            "test/auc": metrics["test/auc"],
            "pseudo_label_auc": metrics["pseudo_label_auc"],
            "val": last["val"],
            "sat": saturation(run_dir),
        }
        if "best_val/auc" in metrics:
            per_seed[seed]["best_val/auc"] = metrics["best_val/auc"]
            per_seed[seed]["best_val"] = last["best_val"]
            per_seed[seed]["best_val_epoch"] = float(last["best_val_epoch"])
            per_seed[seed]["last/auc"] = metrics["last/auc"]
    return per_seed


def slug(recipe):
    """A recipe name -> the start of its run folders ("official, L2 rows" -> "official_L2_rows")."""
    return recipe.replace(", ", "_").replace(" ", "_")


def run_grid(cells, epochs, seeds, workdir, recipes=RECIPES, extra=(), eval_period=None):
    """-> [{cell, dim, data_seed, scale, recipe, mean, std, per_seed}] for every cell x recipe;
    extra: overrides for every run. A run folder of workdir that holds results is reused."""
    rows = []
    for cell, dim, data_seed, scale in cells:
        features = Path(workdir) / f"demo_D{dim}_seed{data_seed}_x{scale}.h5"
        if not features.is_file():
            make_demo_features(features, dim=dim, seed=data_seed, scale=scale)
        # the scale and width cells check for a collapse: one training seed is enough
        cell_seeds = seeds[:1] if cell in ("scale", "width") else seeds
        for recipe, spec in recipes.items():
            out = Path(workdir) / "_".join([slug(recipe), features.stem, f"{epochs}it", *extra])
            per_seed = run_cell(spec, features, dim, epochs, cell_seeds, out, extra, eval_period)
            mean, std = aggregate(per_seed)
            rows.append(
                dict(cell=cell, dim=dim, data_seed=data_seed, scale=scale, recipe=recipe)
                | dict(mean=mean, std=std, per_seed=per_seed)
            )
    return rows


def main_effect(rows, new="plus", old="official", metrics=METRICS):
    """-> {metric: new - old} of the means over the `main` cells (or all, for --quick and
    --long)."""
    main = [r for r in rows if r["cell"] == "main"] or rows
    means = {
        recipe: {k: np.mean([r["mean"][k] for r in main if r["recipe"] == recipe]) for k in metrics}
        for recipe in (new, old)
    }
    return {k: float(means[new][k] - means[old][k]) for k in metrics}


def unit(metric):
    """-> the factor a metric is printed with: fractions in %, best_val_epoch (iterations) as is."""
    return 1 if metric.endswith("epoch") else 100


def format_rows(rows, metrics=METRICS):
    head = f"{'cell':8s} {'D':>5s} {'data':>4s} {'scale':>5s} {'recipe':17s}"
    lines = [head + "".join(f"{k:>18s}" for k in metrics)]
    for r in rows:
        cells = "".join(
            f"{unit(k) * r['mean'][k]:10.2f} ± {unit(k) * r['std'][k]:5.2f}" for k in metrics
        )
        lines.append(
            f"{r['cell']:8s} {r['dim']:5d} {r['data_seed']:4d} {r['scale']:5.1f} "
            f"{r['recipe']:17s}{cells}"
        )
    return lines + ["(values in %, iterations as is; mean ± sample std over training seeds)"]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="D 128, x10, 1 seed, 5 x 6 iterations")
    mode.add_argument(
        "--ablation", action="store_true", help="the changes one at a time, data seed 0"
    )
    mode.add_argument(
        "--long", action="store_true", help="official vs official + L2 rows, 3001 iterations"
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 200 (--long: 3001)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=None, help="training seeds (default 3; 1)")
    seeds.add_argument(
        "--train-seeds", type=int, nargs="+", default=None, help="these seeds (not 0..n-1)"
    )
    parser.add_argument(
        "--data-seeds", type=int, nargs="+", default=[1, 2], help="--long: data sets (default 1 2)"
    )
    parser.add_argument(
        "--dims", type=int, nargs="+", default=[1024], help="--long: widths D (default 1024)"
    )
    parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the record as JSON here")
    args = parser.parse_args()
    if not args.long and (args.dims != [1024] or args.data_seeds != [1, 2]):
        parser.error("--dims and --data-seeds choose the cells of --long only")
    epochs = args.epochs or (5 if args.quick else LONG_EPOCHS if args.long else 200)
    seeds = args.train_seeds or list(range(args.seeds or (1 if args.quick else 3)))
    print("\n".join(describe_machine()))
    logging.disable(logging.INFO)
    start = time.perf_counter()
    metrics, compare = METRICS, ("plus", "official")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or tmp
        Path(workdir).mkdir(parents=True, exist_ok=True)
        if args.ablation:
            rows = run_grid(ABLATION, epochs, seeds, workdir, ABLATIONS)
        elif args.quick:
            rows = run_grid(QUICK, epochs, seeds, workdir, extra=QUICK_OPTS)
        elif args.long:
            cells = [("long", d, s, 1.0) for d in args.dims for s in args.data_seeds]
            period = min(LONG_EVAL_PERIOD, max(epochs // 4, 1))
            rows = run_grid(cells, epochs, seeds, workdir, LONG_RECIPES, (), period)
            metrics, compare = LONG_METRICS, tuple(reversed(LONG_RECIPES))
        else:
            rows = run_grid(FULL, epochs, seeds, workdir)
    record = {"epochs": epochs, "seeds": seeds, "rows": rows}
    record["difference"] = dict(zip(("new", "old"), compare))
    record["difference"] |= main_effect(rows, *compare, metrics)
    record["seconds"] = round(time.perf_counter() - start, 1)
    print("\n".join(format_rows(rows, metrics)))
    print(
        f"{compare[0]} - {compare[1]} (mean over the main cells, or all cells): "
        + ", ".join(
            f"{k} {unit(k) * v:+.2f}" for k, v in record["difference"].items() if k in metrics
        )
        + f"; {record['seconds']:.0f} s, {epochs} epochs, seeds {seeds}"
    )
    if args.out:
        write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
