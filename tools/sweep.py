"""Run one config over several seeds and report the mean ± std of the final metrics.

    python tools/sweep.py --cfg configs/shanghaitech/i3d_stage1.yaml --seeds 0 1 2 [KEY VALUE ...]
    python tools/sweep.py --cfg configs/shanghaitech/i3d_stage2.yaml --stage 2 --seeds 0 1 2 DEVICE cuda

Each seed trains into OUTPUT_DIR/seed_<s> (a seed whose folder already holds results.json is reused, so
an interrupted sweep continues); then OUTPUT_DIR/sweep.json holds every seed's numbers, their mean and
their sample standard deviation (ddof 1). Summarised: the test metrics of the final model, the test AUC/AP
of the last / best (test-selected) / best_val checkpoints, and the pseudo-label AUC where measured. Runs are
sequential, in this process (stage 2 on one device; start torchrun per seed for multi-GPU).
"""
import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from utils.config import DEMO_CFG, load_cfg  # noqa: E402
from utils.logger import setup_logger  # noqa: E402
from utils.protocol import TEST_KEYS  # noqa: E402
from utils import cli  # noqa: E402

CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")


def parse_args(argv):
    """--cfg FILE --seeds S [S ...] [--stage 1|2] [KEY VALUE ...] (overrides start at the first config key)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", default=str(DEMO_CFG), help="experiment YAML (default: the demo)")
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="SEED values, one run each")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1, help="train_stage1 (default) or train_stage2")
    argv = list(argv)
    first = next((i for i, a in enumerate(argv) if CONFIG_KEY.fullmatch(a) or a in ("SEED", "DEVICE", "OUTPUT_DIR")),
                 len(argv))
    args = parser.parse_args(argv[:first])
    args.opts = argv[first:]
    if "SEED" in args.opts[0::2]:
        parser.error("SEED is set by --seeds; remove it from the KEY VALUE overrides")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    return args


def summarise(results):
    """One run's results.json -> {metric: float} of the numbers a sweep averages (None values dropped)."""
    flat = {f"test/{k}": results["test"].get(k) for k in TEST_KEYS}
    for choice, row in (results.get("test_by_checkpoint") or {}).items():
        if row:
            flat.update({f"{choice}/auc": row["auc"], f"{choice}/ap": row["ap"]})
    for key in ("pseudo_label_auc_raw", "pseudo_label_auc"):
        flat[key] = results.get(key)
    return {k: float(v) for k, v in flat.items() if v is not None}


def aggregate(per_seed):
    """{seed: {metric: value}} -> (mean, std): metrics present in every seed; std with ddof 1 (0 for one seed)."""
    keys = [k for k in next(iter(per_seed.values())) if all(k in m for m in per_seed.values())]
    values = {k: np.array([m[k] for m in per_seed.values()]) for k in keys}
    mean = {k: float(v.mean()) for k, v in values.items()}
    std = {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()}
    return mean, std


def run_seed(stage, cfg_file, opts, seed, out, logger):
    """Trains one seed into `out` (or reuses its finished results) -> its results dict."""
    if (out / "results.json").is_file():
        logger.info("seed %d: %s already finished, reused", seed, out)
        return json.loads((out / "results.json").read_text())
    if stage == 1:
        from tools import train_stage1 as tool
    else:
        from tools import train_stage2 as tool
    return tool.main(["--cfg", cfg_file, *opts, "SEED", str(seed), "OUTPUT_DIR", str(out)])


def format_table(mean, std, per_seed):
    seeds = list(per_seed)
    lines = [f"{'metric':24s}{'mean ± std':>18s}  " + "  ".join(f"seed {s:>3}" for s in seeds)]
    for k in mean:  # every summarised metric is a fraction: shown in %
        cells = "  ".join(f"{100 * per_seed[s][k]:8.2f}" for s in seeds)
        lines.append(f"{k:24s}{100 * mean[k]:10.2f} ± {100 * std[k]:5.2f}  {cells}")
    return lines + ["(values in %; std = sample standard deviation over seeds)"]


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    base = Path(load_cfg(args.cfg or None, args.opts).OUTPUT_DIR)
    logger = setup_logger()
    per_seed, dirs = {}, {}
    for seed in args.seeds:
        dirs[seed] = base / f"seed_{seed}"
        per_seed[seed] = summarise(run_seed(args.stage, args.cfg, args.opts, seed, dirs[seed], logger))
    mean, std = aggregate(per_seed)
    sweep = {"cfg": args.cfg, "stage": args.stage, "overrides": args.opts, "seeds": args.seeds,
             "output_dirs": {str(s): str(d) for s, d in dirs.items()}, "mean": mean, "std": std, "std_ddof": 1,
             "per_seed": {str(s): m for s, m in per_seed.items()}}
    base.mkdir(parents=True, exist_ok=True)
    (base / "sweep.json").write_text(json.dumps(sweep, indent=2) + "\n")
    setup_logger()  # the last run pointed the log at its own folder
    for line in format_table(mean, std, per_seed):
        logger.info("%s", line)
    logger.info("wrote %s", base / "sweep.json")
    return sweep


if __name__ == "__main__":
    sys.exit(cli.run(main))
