"""Does self-training make the encoder better than stage 1? The video demo's self-training chain
(engine/demo.py, docs/demo.md) over training seeds, in one command.

    python benchmarks/demo_self_training.py           # seeds 0, 1, 2: ~5 min per seed, 2 cores
    python benchmarks/demo_self_training.py --seeds 1 --out record.json
    python benchmarks/demo_self_training.py --opts PRETEXT.ITERS 300   # a variant of the chain

One generated video set (datasets/demo_videos.py, set seed 0: 40 train / 20 test videos); per
training seed s (SEED s for the pace pretext, both stage-1 runs and stage 2): pace pretraining ->
features -> stage 1 -> pseudo-labels -> stage 2 from the pretrained encoder -> the fine-tuned
encoder's features -> stage 1 again. Printed per seed and as mean ± sample std (ddof 1): the test
frame AUC of stage 1 on the pretrained features, of stage 2's scores and of stage 1 on the
fine-tuned features, the pseudo-label AUCs, the pace accuracy, the gains and the seconds. Runs
live in --dir (default: a temporary folder), one folder per seed and --opts; a finished seed there
is reused. --opts are KEY VALUE overrides of configs/demo/stage2_self_training.yaml (the encoder,
the pretext, stage 2): docs/demo.md's variants are `PRETEXT.ITERS 300` and `DATA.TRAIN_SIZE
"[64, 85, 48]" DATA.TEST_SIZE "[72, 96, 48]"` (48x48 crops)."""

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from benchmarks.stage1 import describe_machine
from engine.demo import prepare_data, run_self_training, verdict

ROWS = (
    ("stage 1, pretrained features", "stage1"),
    ("stage 2 scores", "stage2"),
    ("stage 1, fine-tuned features", "stage1_mist"),
)


def summarise(result):
    """run_self_training's result -> {metric: value} of one seed."""
    gain, gain_mist, _ = verdict(result)
    return {
        "pace_accuracy": result["pretext"]["eval_accuracy"],
        **{f"{key}/auc": result[key]["test"]["auc"] for _, key in ROWS},
        "stage1/pl_auc": result["stage1"]["pseudo_label_auc"],
        "stage1_mist/pl_auc": result["stage1_mist"]["pseudo_label_auc"],
        "gain_stage2": gain / 100,
        "gain_mist": gain_mist / 100,
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..n-1")
    parser.add_argument("--dir", default=None, help="keep the runs here (reused when finished)")
    parser.add_argument("--out", default=None, help="write the record as JSON here")
    parser.add_argument(
        "--opts", nargs="+", default=[], help="KEY VALUE overrides of the stage-2 demo config"
    )
    args = parser.parse_args()
    if len(args.opts) % 2:
        parser.error(f"--opts takes KEY VALUE pairs, got {args.opts}")
    tag = "_".join(a.replace(" ", "") for a in args.opts) or "default"
    print("\n".join(describe_machine()))
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.dir or tmp).resolve()
        prepare_data(data, workers=2, features=False)
        per_seed = {}
        for seed in range(args.seeds):
            start = time.perf_counter()
            out = data / f"self_training_{tag}_seed{seed}"
            per_seed[seed] = summarise(run_self_training(data, seed, out, args.opts))
            per_seed[seed]["seconds"] = round(time.perf_counter() - start, 1)
            print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in per_seed[seed].items()))
    keys = list(per_seed[0])
    values = {k: np.array([per_seed[s][k] for s in per_seed]) for k in keys}
    ddof = 1 if len(per_seed) > 1 else 0
    record = {
        "opts": args.opts,
        "seeds": list(per_seed),
        "per_seed": per_seed,
        "mean": {k: float(v.mean()) for k, v in values.items()},
        "std": {k: float(v.std(ddof=ddof)) for k, v in values.items()},
    }
    print(f"\n{'':34s} {'test AUC':>16s} {'PL AUC':>16s}")
    for name, key in ROWS:
        pl = f"{key}/pl_auc"
        pl_text = (
            f"{100 * record['mean'][pl]:7.2f} ± {100 * record['std'][pl]:5.2f}"
            if pl in keys
            else ""
        )
        auc = f"{key}/auc"
        print(
            f"{name:34s} {100 * record['mean'][auc]:7.2f} ± {100 * record['std'][auc]:5.2f}"
            f" {pl_text:>16s}"
        )
    print(
        f"stage 2 - stage 1: {100 * record['mean']['gain_stage2']:+.2f} ± "
        f"{100 * record['std']['gain_stage2']:.2f} AUC points; fine-tuned features - pretrained: "
        f"{100 * record['mean']['gain_mist']:+.2f} ± {100 * record['std']['gain_mist']:.2f}; "
        f"pace accuracy {100 * record['mean']['pace_accuracy']:.1f} %; "
        f"{np.mean([per_seed[s]['seconds'] for s in per_seed]):.0f} s per seed"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main()
