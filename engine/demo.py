"""The whole MIST pipeline on generated surveillance videos, on a CPU (tools/demo.py,
docs/demo.md).

Both chains start from synthetic videos (datasets/demo_videos.py) packed into a frames h5
(engine/frames_h5.py).
- self-training (the default): a small MIST-I3D pretrained by pace prediction on the unlabelled
  training videos (engine/pretext.py) -> its features (engine/extract.py) -> stage 1
  (engine/stage1.py) -> pseudo-labels -> stage 2 (engine/stage2.py) fine-tunes that encoder -> the
  fine-tuned encoder's features -> stage 1 again; one table compares the three and a verdict says
  whether self-training helped.
- handmade: documented motion statistics (datasets/demo_features.py) -> stage 1 -> stage 2 from a
  random init -> the test of the stage-2 checkpoint (engine/evaluate.py).
A step whose product exists is not redone, so an interrupted demo continues where it stopped."""

import json
import time
from pathlib import Path

from datasets.demo_features import FEATURE_DIM, extract_all
from datasets.demo_videos import make_demo_videos
from datasets.frames import open_frames
from engine import evaluate, stage1, stage2
from engine.extract import extract
from engine.frames_h5 import make_h5
from engine.pretext import ENCODER_FILE, pretrain
from utils.config import REPO_ROOT, load_cfg
from utils.errors import InputError

CONFIGS = REPO_ROOT / "configs" / "demo"


def data_opts(out):
    """KEY VALUE overrides pointing both stages at the demo's generated files."""
    videos = out / "videos"
    return [
        "DATA.TRAIN_SPLIT",
        str(videos / "train.txt"),
        "DATA.TEST_SPLIT",
        str(videos / "test.txt"),
        "DATA.TEST_MASK_DIR",
        str(videos / "masks"),
        "DATA.TRAIN_MASK_DIR",
        str(videos / "masks"),
    ]


def prepare_data(out, workers, features=True):
    """videos -> frames h5 (-> hand-made features h5); each step skipped when its product
    exists."""
    if not (out / "videos" / "videos.txt").exists():
        make_demo_videos(out / "videos")
    if not (out / "frames.h5").exists():
        make_h5(out / "videos" / "videos.txt", out / "frames.h5", workers=workers)
    if features and not (out / "features.h5").exists():
        frames = open_frames(out / "frames.h5")
        extract_all(frames, frames.names, out / "features.h5")


def stage1_opts(out, features, dim):
    return ["OUTPUT_DIR", str(out), "DATA.FEATURES", str(features), "DATA.FEATURE_DIM", str(dim)]


def run_stages(out):
    """The hand-made-feature chain: stage 1, stage 2 (random init) and the test of the last stage-2
    model -> their results."""
    s1 = stage1.train(
        load_cfg(
            CONFIGS / "stage1_video.yaml",
            stage1_opts(out / "stage1", out / "features.h5", FEATURE_DIM) + data_opts(out),
        ),
        resume=True,
    )
    stage2_opts = [
        "DATA.FRAMES",
        str(out / "frames.h5"),
        "DATA.PSEUDO_LABELS",
        str(out / "stage1" / "pseudo_labels.npz"),
    ] + data_opts(out)
    # resume: a finished stage is not retrained, its products are rewritten
    s2 = stage2.train(
        load_cfg(CONFIGS / "stage2.yaml", stage2_opts + ["OUTPUT_DIR", str(out / "stage2")]),
        resume=True,
    )
    last = out / "stage2" / "checkpoints" / "last.pth"
    test = evaluate.test(
        load_cfg(
            CONFIGS / "stage2.yaml",
            stage2_opts + ["OUTPUT_DIR", str(out / "test"), "TEST.CHECKPOINT", str(last)],
        )
    )
    return s1, s2, test


def encode(frames, target, kind, weights, cfg):
    """Features of every demo video by `kind` (engine/extract.py) -> their dimension; an existing
    finished file is kept (extract resumes it)."""
    report = extract(frames, target, kind, weights, cfg, progress=False)
    return report["dim"]


def run_self_training(data, seed=0, out=None, opts=(), stage1_extra=()):
    """The self-training chain (docs/demo.md) in `out` (default data/self_training[_seed<s>]): pace
    pretraining -> features -> stage 1 -> pseudo-labels -> stage 2 from the pretrained encoder ->
    features of the fine-tuned encoder -> stage 1 again -> {"pretext", "stage1", "stage2",
    "stage1_mist"}. `opts` override keys of configs/demo/stage2_self_training.yaml (the encoder,
    the pretext and stage 2), e.g. ["MODEL.WIDTH", "0.25"] (benchmarks/demo_self_training.py);
    `stage1_extra` override keys of configs/demo/stage1_learned.yaml (both stage-1 runs)."""
    if out is None:
        out = data / ("self_training" if seed == 0 else f"self_training_seed{seed}")
    common = ["DATA.FRAMES", str(data / "frames.h5"), "SEED", str(seed)] + data_opts(data)
    common += list(opts)
    cfg = load_cfg(CONFIGS / "stage2_self_training.yaml", common)
    encoder = out / "pretext" / ENCODER_FILE
    if encoder.exists():
        report = json.loads((out / "pretext" / "pretext.json").read_text())
    else:
        report = pretrain(cfg, out / "pretext")
    dim = encode(data / "frames.h5", out / "features_pretext.h5", "i3d", encoder, cfg)

    def generator(name, features, dim):
        """Stage 1 (configs/demo/stage1_learned.yaml) on one of the encoder's feature files."""
        opts = stage1_opts(out / name, features, dim) + data_opts(data) + ["SEED", str(seed)]
        cfg = load_cfg(CONFIGS / "stage1_learned.yaml", opts + list(stage1_extra))
        return stage1.train(cfg, resume=True)

    s1 = generator("stage1", out / "features_pretext.h5", dim)
    s2_cfg = load_cfg(
        CONFIGS / "stage2_self_training.yaml",
        common
        + ["DATA.PSEUDO_LABELS", str(out / "stage1" / "pseudo_labels.npz")]
        + ["MODEL.PRETRAINED", str(encoder), "OUTPUT_DIR", str(out / "stage2")],
    )
    s2 = stage2.train(s2_cfg, resume=True)
    tuned = out / "stage2" / "checkpoints" / "last.pth"
    dim = encode(data / "frames.h5", out / "features_mist.h5", "mist", tuned, s2_cfg)
    s1_mist = generator("stage1_mist", out / "features_mist.h5", dim)
    return {"pretext": report, "stage1": s1, "stage2": s2, "stage1_mist": s1_mist}


def _metric_line(name, m, pl=None):
    far_nv = "n/a" if m["far_normal_videos"] is None else f"{100 * m['far_normal_videos']:.2f}%"
    pl = "" if pl is None else f"{100 * pl:6.2f}%"
    return (
        f"{name:52s} {100 * m['auc']:6.2f}% {100 * m['ap']:6.2f}% {100 * m['far']:6.2f}%"
        f" {far_nv:>12s} {pl:>8s}"
    )


def _header():
    return f"\n{'':52s} {'AUC':>7s} {'AP':>7s} {'FAR':>7s} {'FAR(normal)':>12s} {'PL AUC':>8s}"


def print_table(s1, s2, test, seconds):
    print(_header())
    print(_metric_line("stage 1: generator on motion features", s1["test"], s1["pseudo_label_auc"]))
    print(_metric_line("stage 2: MIST-I3D (1/8 width, random init), last", s2["test"]))
    print(_metric_line("tools/test.py on the stage-2 checkpoint", test))
    print("PL AUC: frame AUC of the pseudo-labels on the abnormal train videos")
    print(f"\ndone in {seconds / 60:.1f} min")


def verdict(result):
    """-> (gain of stage 2 over stage 1 in test AUC points, gain of the MIST-feature generator, a
    sentence)."""
    base = result["stage1"]["test"]["auc"]
    gain = 100 * (result["stage2"]["test"]["auc"] - base)
    gain_mist = 100 * (result["stage1_mist"]["test"]["auc"] - base)
    if gain > 0:
        text = (
            f"self-training helped: the fine-tuned encoder scores {gain:+.2f} AUC points above "
            "stage 1 on the same encoder's features"
        )
    else:
        text = (
            f"self-training did NOT help here: the fine-tuned encoder scores {gain:+.2f} AUC "
            "points against stage 1 on the same encoder's features (docs/demo.md says why and "
            "where it starts to hold)"
        )
    return gain, gain_mist, text + f"; stage 1 on its features: {gain_mist:+.2f}"


def print_self_training(result, seconds):
    r = result
    print(
        f"\npace pretext: held-out accuracy {100 * r['pretext']['eval_accuracy']:.1f}% "
        f"(chance {100 * r['pretext']['chance']:.1f}%)"
    )
    print(_header())
    print(
        _metric_line(
            "stage 1 on the pretrained encoder's features",
            r["stage1"]["test"],
            r["stage1"]["pseudo_label_auc"],
        )
    )
    print(_metric_line("stage 2: the fine-tuned encoder's scores", r["stage2"]["test"]))
    print(
        _metric_line(
            "stage 1 on the fine-tuned encoder's features (MIST)",
            r["stage1_mist"]["test"],
            r["stage1_mist"]["pseudo_label_auc"],
        )
    )
    print("PL AUC: frame AUC of the pseudo-labels on the abnormal train videos")
    print("\n" + verdict(result)[2])
    print(f"\ndone in {seconds / 60:.1f} min")


CHAINS = ("self-training", "handmade")


def demo(out="output/demo_video", workers=2, chain="self-training", seed=0):
    """Runs every step of `chain` into `out` -> its results (self-training: {"pretext", "stage1",
    "stage2", "stage1_mist"}; handmade: {"stage1", "stage2", "test"})."""
    if chain not in CHAINS:
        raise InputError(f"unknown demo chain {chain!r}; use one of {CHAINS}")
    start, out = time.time(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(out, workers, features=chain == "handmade")
    if chain == "handmade":
        s1, s2, test = run_stages(out)
        print_table(s1, s2, test, time.time() - start)
        return {"stage1": s1, "stage2": s2, "test": test}
    result = run_self_training(out, seed)
    print_self_training(result, time.time() - start)
    return result
