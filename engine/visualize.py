"""Figures and a one-page HTML report of a run: paper Fig. 7 (score curves) and Fig. 8 (Grad-CAM).

visualize() reads the run's test scores (`test_scores.npz`, else `test_*_scores.npz`, or a given
score file) and the test ground truth of the config, and writes to RUN_DIR/figures (or `out`):
  score_curves.png   clip scores over frames with the ground truth shaded, chosen or first videos
  roc.png, pr.png    frame-level ROC and precision-recall curves (AUC; AP = sklearn average
                     precision)
  per_class_auc.png  AUC of each anomaly class (UCF-Crime / XD-Violence)
  gradcam_<video>_<segment>.png  [middle frame | Grad-CAM on the head | SGA attention] of a stage-2
                     model
  report.html        metrics table (+ last / best / best_val checkpoints of the run) and the images
XD-Violence reports AP first (its headline metric). The figures are made in a temporary folder
beside the output and moved there at the end, so a failed run leaves no partial set.
"""

import html
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from datasets.build import load_splits, open_frame_source, test_ground_truth, test_transform
from datasets.specs import dataset_spec
from models.loading import load_mist
from utils.checkpoint import read_checkpoint
from utils.errors import ExistsError, InputError, NotFoundError
from utils.evaluation import evaluate, expand_to_frames
from utils.logger import setup_logger
from utils.pseudo_labels import load_score_dict

DPI = 100


def _pyplot():
    """-> matplotlib.pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def find_scores(run_dir, explicit=None):
    """-> path of the run's test scores: explicit, test_scores.npz, or the only/first
    test_*_scores.npz."""
    if explicit:
        return Path(explicit)
    run_dir = Path(run_dir)
    candidates = [run_dir / "test_scores.npz"] + sorted(run_dir.glob("test_*_scores.npz"))
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise InputError(
            f"{run_dir} holds no test_scores.npz or test_*_scores.npz: finish the "
            "run, run tools/test.py into it, or pass --scores FILE"
        )
    return found[0]


def anomalous_runs(labels):
    """uint8 (n,) 0/1 -> [(start, end)] of the runs of 1s, end exclusive."""
    edges = np.diff(np.concatenate([[0], np.asarray(labels, np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def choose_videos(videos, wanted, max_videos):
    """-> the Videos to plot: `wanted` names, else about 3/4 abnormal then normal ones, in test
    order."""
    if wanted:
        index = {v.name: v for v in videos}
        missing = [n for n in wanted if n not in index]
        if missing:
            raise InputError(
                f"--videos {missing} are not in the test split (names look like '{videos[0].name}')"
            )
        return [index[n] for n in wanted]
    n_abnormal = min(sum(v.label for v in videos), -(-3 * max_videos // 4))
    abnormal = [v for v in videos if v.label == 1][:n_abnormal]
    return abnormal + [v for v in videos if v.label == 0][: max_videos - len(abnormal)]


def plot_score_curves(path, videos, scores, labels, clip_len):
    """Fig. 7: per video, the clip scores over frames (each repeated clip_len times), GT shaded."""
    plt = _pyplot()
    cols = 2 if len(videos) > 1 else 1
    rows = -(-len(videos) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 1.9 * rows), squeeze=False)
    for ax, video in zip(axes.flat, videos):
        s = np.repeat(np.asarray(scores[video.name], np.float64), clip_len)
        gt = np.asarray(labels[video.name])[: len(s)]
        for start, end in anomalous_runs(gt):
            ax.axvspan(start, end, color="#f4a6a6", alpha=0.6, lw=0)
        ax.plot(np.arange(len(s)), s, color="#1f4e9c", lw=1.2)
        ax.set(xlim=(0, max(len(s), 1)), ylim=(0, 1.02))
        ax.set_title(f"{video.name} ({'abnormal' if video.label else 'normal'})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(videos) :]:
        ax.axis("off")
    fig.supxlabel("frame", fontsize=8)
    fig.supylabel("anomaly score", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_curve(path, kind, s, y, metrics):
    """ROC (kind 'roc') or precision-recall ('pr') of the pooled frame scores."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    if kind == "roc":
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.5, label=f"AUC {100 * metrics['auc']:.2f}%")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="frame-level ROC")
    else:
        precision, recall, _ = precision_recall_curve(y, s)
        ax.plot(recall, precision, lw=1.5, label=f"AP {100 * metrics['ap']:.2f}%")
        ax.axhline(y.mean(), ls="--", color="grey", lw=0.8, label=f"chance {100 * y.mean():.1f}%")
        ax.set(xlabel="recall", ylabel="precision", title="frame-level precision-recall")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_per_class(path, metrics):
    """Bar chart of per-class AUC (classes without both labels are skipped); False if there are
    none."""
    per_class = {
        c: m["auc"] for c, m in metrics.get("per_class", {}).items() if m.get("auc") is not None
    }
    if not per_class:
        return False
    plt = _pyplot()
    names = sorted(per_class)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 1.5), 3.2))
    ax.bar(names, [100 * per_class[c] for c in names], color="#1f4e9c")
    ax.axhline(
        100 * metrics["auc"],
        color="#c0392b",
        ls="--",
        lw=1,
        label=f"all classes {100 * metrics['auc']:.2f}%",
    )
    ax.set(
        ylabel="frame AUC (%)", ylim=(0, 100), title="AUC per anomaly class (+ all normal videos)"
    )
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def load_stage2_model(cfg, path):
    """-> (MIST model in eval mode, its config): ours rebuilt from its own config, others from the
    run's MODEL keys (models.loading.load_mist); a stage-1 checkpoint is refused."""
    state, _ = read_checkpoint(path)
    if isinstance(state, dict) and state.get("kind") == "stage1":
        raise InputError(
            f"{path} is a stage-1 generator: Grad-CAM needs a stage-2 (MIST encoder) checkpoint"
        )
    return load_mist(path, cfg)


def gradcam_figures(cfg, checkpoint, clips, out):
    """Writes gradcam_<video>_<seg>.png for each (video, segment) -> [(file name, caption)]."""
    from utils.gradcam import gradcam_panel

    model, model_cfg = load_stage2_model(cfg, checkpoint)
    backbone = model_cfg.MODEL.BACKBONE
    train, test = load_splits(cfg, need_train=bool(cfg.DATA.TRAIN_SPLIT))
    known = {v.name: v for v in (train or []) + test}
    missing = sorted({name for name, _ in clips} - set(known))
    if missing:
        raise InputError(f"--gradcam videos {missing} are in neither split of the config")
    frames = open_frame_source(cfg, [known[name] for name in dict.fromkeys(n for n, _ in clips)])
    transform = test_transform(cfg, backbone=backbone, ten_crop=False)
    made = []
    for name, seg in clips:
        panel, score = gradcam_panel(model, transform(frames.read_segments(name, seg, 1)), backbone)
        file = f"gradcam_{name}_{seg}.png"
        # BGR, as cv2 expects (the official code swapped it, §6.27)
        cv2.imwrite(str(out / file), panel)
        made.append(
            (file, f"{name} segment {seg}: score {score:.3f} (frame | Grad-CAM | SGA attention)")
        )
    return made


def parse_clip(spec):
    """'VIDEO:SEGMENT' (e.g. '01_0015:3') -> (video, segment)."""
    name, _, seg = spec.rpartition(":")
    if not name or not seg.isdigit():
        raise InputError(f"--gradcam expects VIDEO:SEGMENT (e.g. 01_0015:3), got {spec!r}")
    return name, int(seg)


def metric_rows(metrics, dataset):
    """-> [(label, value text)] of the headline metrics; the dataset's headline first (AP on
    XD-Violence: datasets/specs.py)."""
    pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
    rows = [(key.upper(), pct(metrics[key])) for key in dataset_spec(dataset, own=True).headline]
    counts = f"{metrics['n_videos']} / {metrics['n_clips']} / {metrics['n_frames']}"
    rows += [
        ("PR-AUC (trapezoid)", pct(metrics["pr_auc"])),
        ("score gap", pct(metrics["score_gap"])),
        ("FAR (all negative frames)", pct(metrics["far"])),
        ("FAR (normal videos)", pct(metrics["far_normal_videos"])),
        ("videos / clips / frames", counts),
    ]
    return rows


def _checkpoint_table(results):
    """-> HTML parts: the run's checkpoint comparison and pseudo-label AUC (results.json)."""
    parts = []
    by_ckpt = (results or {}).get("test_by_checkpoint") or {}
    if any(by_ckpt.values()):
        head = "<tr><th>checkpoint</th><th>epoch</th><th>AUC</th><th>AP</th><th>FAR</th></tr>"
        rows = "".join(
            f"<tr><td>{k}</td><td>{r['epoch']}</td><td>{100 * r['auc']:.2f}%</td>"
            f"<td>{100 * r['ap']:.2f}%</td><td>{100 * r['far']:.2f}%</td></tr>"
            for k, r in by_ckpt.items()
            if r
        )
        parts.append(
            "<h2>Checkpoint choice</h2><p>best = chosen on the TEST set (as the paper); "
            "best_val = chosen on the validation split carved from the training "
            f"videos.</p><table>{head}{rows}</table>"
        )
    if (results or {}).get("pseudo_label_auc") is not None:
        parts.append(
            f"<p>Pseudo-label frame AUC on {results['n_train_masks']} masked training "
            f"videos: {100 * results['pseudo_label_auc_raw']:.2f}% before, "
            f"{100 * results['pseudo_label_auc']:.2f}% after refinement (paper Table "
            "7).</p>"
        )
    return parts


def write_report(path, run_dir, scores_path, metrics, dataset, results, images):
    """One self-contained page: metrics, the run's checkpoint comparison and pseudo-label AUC,
    images."""
    esc = html.escape
    title = esc(Path(run_dir).name)
    table = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in metric_rows(metrics, dataset)
    )
    parts = [
        (
            f"<h1>{title}</h1><p>run <code>{esc(str(run_dir))}</code>, dataset "
            f"<b>{esc(dataset)}</b>, scores <code>{esc(scores_path.name)}</code></p>"
        ),
        f"<h2>Test metrics</h2><table>{table}</table>",
    ]
    parts += _checkpoint_table(results)
    parts += [
        f"<figure><img src='{esc(f)}'><figcaption>{esc(c)}</figcaption></figure>" for f, c in images
    ]
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:auto}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}img{max-width:100%}"
    )
    path.write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def visualize(
    cfg, run_dir, scores=None, videos=(), max_videos=8, gradcam=(), checkpoint=None, out=None
):
    """Writes the figures and report.html of the run in run_dir (module docstring) -> {"metrics",
    "images" (file names), "out" (folder)}.

    scores: score file instead of the run's; videos: test videos to plot (default: max_videos of
    them, mostly abnormal); gradcam: "VIDEO:SEGMENT" clips for Grad-CAM with the stage-2 checkpoint
    (default RUN_DIR/checkpoints/last.pth); out: output folder (default RUN_DIR/figures).
    """
    logger = setup_logger()
    run_dir = Path(run_dir)
    # every argument checked before any work
    clips = [parse_clip(spec) for spec in gradcam]
    checkpoint = Path(checkpoint or run_dir / "checkpoints" / "last.pth")
    if clips and not checkpoint.is_file():
        raise NotFoundError(
            f"--gradcam needs a stage-2 checkpoint: {checkpoint} does not exist "
            "(pass --checkpoint FILE)"
        )
    out = Path(out) if out else run_dir / "figures"
    if out.exists() and not out.is_dir():
        raise ExistsError(f"--out {out} is a file, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the figures land in out only at the end
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        report = make_figures(cfg, run_dir, work, scores, videos, max_videos, clips, checkpoint)
        out.mkdir(exist_ok=True)
        for file in work.iterdir():
            os.replace(file, out / file.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        "%s: %s; wrote %d figures and report.html to %s",
        run_dir.name,
        report["headline"],
        len(report["images"]),
        out,
    )
    return {"metrics": report["metrics"], "images": report["images"], "out": str(out)}


def make_figures(cfg, run_dir, out, scores_file, wanted, max_videos, clips, checkpoint):
    """Writes every figure and report.html into `out` -> {"metrics", "images", "headline"}."""
    _, videos = load_splits(cfg, need_train=False)
    labels = test_ground_truth(cfg, videos)
    scores_path = find_scores(run_dir, scores_file)
    scores, clip_len = load_score_dict(scores_path), cfg.DATA.CLIP_LEN
    t = cfg.TEST
    metrics = evaluate(scores, labels, videos, clip_len, t.THRESHOLD, t.MAX_PAD_CLIPS)
    s, y, _ = expand_to_frames(scores, labels, [v.name for v in videos], clip_len, t.MAX_PAD_CLIPS)
    chosen = choose_videos(videos, wanted, max_videos)
    plot_score_curves(out / "score_curves.png", chosen, scores, labels, clip_len)
    images = [
        (
            "score_curves.png",
            "anomaly scores (blue) and ground-truth anomalies (shaded), cf. paper Fig. 7",
        )
    ]
    titles = {"roc": "frame-level ROC", "pr": "frame-level precision-recall"}
    # the curve of the dataset's headline metric first
    curves = {"auc": "roc", "ap": "pr"}
    for kind in (curves[key] for key in dataset_spec(cfg.DATA.DATASET, own=True).headline):
        plot_curve(out / f"{kind}.png", kind, s, y, metrics)
        images.append((f"{kind}.png", titles[kind]))
    if plot_per_class(out / "per_class_auc.png", metrics):
        images.append(("per_class_auc.png", "AUC per anomaly class"))
    if clips:
        images += gradcam_figures(cfg, checkpoint, clips, out)
    results_file = run_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else None
    write_report(
        out / "report.html", run_dir, scores_path, metrics, cfg.DATA.DATASET, results, images
    )
    rows = metric_rows(metrics, cfg.DATA.DATASET)[:2]
    return {
        "metrics": metrics,
        "images": [f for f, _ in images],
        "headline": "  ".join(f"{k} {v}" for k, v in rows),
    }
