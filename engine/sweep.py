"""One config over several seeds: the mean ± std of the final metrics (tools/sweep.py).

Each seed trains into OUTPUT_DIR/seed_<s> (a seed whose folder already holds results.json is reused,
so an interrupted sweep continues); then OUTPUT_DIR/sweep.json holds every seed's numbers, their
mean and their sample standard deviation (ddof 1). Summarised: the test metrics of the final model,
the test AUC/AP of the last / best (test-selected) / best_val checkpoints, and the pseudo-label AUC
where measured. Runs are sequential, in this process (stage 2 on one device; start torchrun per seed
for multi-GPU)."""

import json
import logging
from pathlib import Path

import numpy as np

from engine import stage1, stage2
from utils.checkpoint import write_json
from utils.config import load_cfg
from utils.logger import setup_logger
from utils.protocol import TEST_KEYS

logger = logging.getLogger("mist")
STAGES = {1: stage1.train, 2: stage2.train}


def sweep(cfg_file, opts, seeds, stage=1):
    """Trains `stage` (1 or 2) once per seed -> the sweep record written to
    OUTPUT_DIR/sweep.json."""
    base = Path(load_cfg(cfg_file or None, opts).OUTPUT_DIR)
    setup_logger()
    per_seed, dirs = {}, {}
    for seed in seeds:
        dirs[seed] = base / f"seed_{seed}"
        per_seed[seed] = summarise(run_seed(stage, cfg_file, opts, seed, dirs[seed]))
    mean, std = aggregate(per_seed)
    record = {
        "cfg": cfg_file,
        "stage": stage,
        "overrides": list(opts),
        "seeds": list(seeds),
        "output_dirs": {str(s): str(d) for s, d in dirs.items()},
        "mean": mean,
        "std": std,
        "std_ddof": 1,
        "per_seed": {str(s): m for s, m in per_seed.items()},
    }
    base.mkdir(parents=True, exist_ok=True)
    write_json(base / "sweep.json", record)
    # the last run pointed the log at its own folder
    setup_logger()
    for line in format_table(mean, std, per_seed):
        logger.info("%s", line)
    logger.info("wrote %s", base / "sweep.json")
    return record


def summarise(results):
    """One run's results.json -> {metric: float} of the numbers a sweep averages (None values
    dropped)."""
    flat = {f"test/{k}": results["test"].get(k) for k in TEST_KEYS}
    for choice, row in (results.get("test_by_checkpoint") or {}).items():
        if row:
            flat.update({f"{choice}/auc": row["auc"], f"{choice}/ap": row["ap"]})
    for key in ("pseudo_label_auc_raw", "pseudo_label_auc"):
        flat[key] = results.get(key)
    return {k: float(v) for k, v in flat.items() if v is not None}


def aggregate(per_seed):
    """{seed: {metric: value}} -> (mean, std): metrics present in every seed; std with ddof 1 (0 for
    one seed)."""
    keys = [k for k in next(iter(per_seed.values())) if all(k in m for m in per_seed.values())]
    values = {k: np.array([m[k] for m in per_seed.values()]) for k in keys}
    mean = {k: float(v.mean()) for k, v in values.items()}
    std = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()}
    return mean, std


def run_seed(stage, cfg_file, opts, seed, out):
    """Trains one seed into `out` (or reuses its finished results) -> its results dict."""
    if (out / "results.json").is_file():
        logger.info("seed %d: %s already finished, reused", seed, out)
        return json.loads((out / "results.json").read_text())
    cfg = load_cfg(cfg_file or None, [*opts, "SEED", str(seed), "OUTPUT_DIR", str(out)])
    return STAGES[stage](cfg)


def format_table(mean, std, per_seed):
    seeds = list(per_seed)
    lines = [f"{'metric':24s}{'mean ± std':>18s}  " + "  ".join(f"seed {s:>3}" for s in seeds)]
    for k in mean:  # every summarised metric is a fraction: shown in %
        cells = "  ".join(f"{100 * per_seed[s][k]:8.2f}" for s in seeds)
        lines.append(f"{k:24s}{100 * mean[k]:10.2f} ± {100 * std[k]:5.2f}  {cells}")
    return lines + ["(values in %; std = sample standard deviation over seeds)"]
