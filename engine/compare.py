"""Several methods' scores on one test split, side by side (tools/compare.py).

Each method is a score file: our `.npz` of {video: clip scores (n_clips,)}, the official pickled
`.npy` dict (read without unpickling code), or a folder of `<video>.npy` files, one 1-D array of
clip scores each. Every method is evaluated by utils.evaluation.evaluate against the ground truth
of the config's test split (DATA.CLIP_LEN frames per clip, TEST.THRESHOLD, TEST.MAX_PAD_CLIPS), as
tools/test.py evaluates TEST.SCORES, and compare() writes to its output folder:

- compare.md: one table, a row per metric (every key of evaluate's dict, the IoU mAPs and the
  per-class AUC / AUC over abnormal videos / mAP), a column per method;
- compare.json: {"dataset", "split", "methods": {name: {"source": file, **metrics}}};
- compare.png: the frame-level ROC and precision-recall curves of all methods.

Every file is written to a temporary name and renamed, and only after every method was read and
evaluated; existing outputs are refused unless force.
"""

import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from datasets.build import load_splits, test_ground_truth
from utils.checkpoint import atomic_write, write_json, write_text_atomic
from utils.errors import ExistsError, InputError, MissingKeyError, NotFoundError, UserError
from utils.evaluation import evaluate, expand_to_frames
from utils.logger import setup_logger
from utils.npy_files import load_npy
from utils.pseudo_labels import load_score_dict
from utils.run import check_writable

OUTPUTS = ("compare.md", "compare.json", "compare.png")
# (row label, key of evaluate's dict, shown in %)
ROWS = (
    ("AUC", "auc", True),
    ("AP", "ap", True),
    ("PR-AUC (trapezoid)", "pr_auc", True),
    ("AUC, abnormal videos only", "auc_abnormal", True),
    ("score gap", "score_gap", True),
    ("FAR (all negative frames)", "far", True),
    ("FAR (normal videos)", "far_normal_videos", True),
    ("RMSE (not in %)", "rmse", False),
    ("mAP, mean of IoU 0.1-0.5", "map_mean", True),
)
COUNTS = ("n_videos", "n_clips", "n_frames", "n_anomalous_frames")
CLASS_ROWS = (("AUC", "auc"), ("AUC abnormal", "auc_abnormal"), ("mAP", "map_mean"))


def parse_methods(specs):
    """["NAME=FILE" or "FILE", ...] -> {name: Path}; a bare FILE is named by its stem."""
    methods = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = (name, path) if sep else (Path(spec).stem, spec)
        if not name or not path:
            raise InputError(f"--scores {spec!r}: write NAME=FILE (or a FILE named by its stem)")
        if name in methods:
            raise InputError(
                f"--scores names the method '{name}' twice ({methods[name]} and {path}): give "
                "each file its own NAME=FILE"
            )
        methods[name] = Path(path)
    if not methods:
        raise InputError("--scores: give at least one NAME=FILE")
    return methods


def read_scores(path):
    """A score file (.npz, official .npy dict) or a folder of <video>.npy -> {video: float64
    (n_clips,)}."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise InputError(
                f"score folder {path} holds no <video>.npy files: save one 1-D array of clip "
                "scores per test video there, or pass a .npz"
            )
        return {f.stem: np.atleast_1d(load_npy(f)).astype(np.float64) for f in files}
    if not path.is_file():
        raise NotFoundError(f"score file {path} does not exist: check the path")
    return load_score_dict(path)


def evaluate_method(name, path, labels, videos, cfg):
    """-> evaluate's metrics of one method's scores; errors name the method, the file and the
    video."""
    scores = read_scores(path)
    missing = [v.name for v in videos if v.name not in scores]
    if missing:
        raise MissingKeyError(
            f"--scores {name}={path} has no scores for video '{missing[0]}' ({len(missing)} of "
            f"{len(videos)} test videos missing; its keys look like {list(scores)[:2]}): score "
            "every test video of the split, with keys equal to the split's names"
        )
    t = cfg.TEST
    try:
        metrics = evaluate(scores, labels, videos, cfg.DATA.CLIP_LEN, t.THRESHOLD, t.MAX_PAD_CLIPS)
    except UserError as err:
        raise type(err)(f"--scores {name}={path}: {err}") from None
    return scores, metrics


def curves(scores, labels, videos, cfg):
    """-> ((fpr, tpr), (recall, precision)) of a method's frame scores (expand_to_frames)."""
    names = [v.name for v in videos]
    with warnings.catch_warnings():
        # evaluate() already warned about any padded GT
        warnings.simplefilter("ignore")
        s, y, _ = expand_to_frames(scores, labels, names, cfg.DATA.CLIP_LEN, cfg.TEST.MAX_PAD_CLIPS)
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    return (fpr, tpr), (recall, precision)


def _cell(value, percent=True):
    """0.8123 -> '81.23' (percent) or '0.8123'; None -> 'n/a'."""
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}" if percent else f"{value:.4f}"


def table(results):
    """{method: metrics} -> the lines of compare.md: metrics in rows, methods in columns."""
    names = list(results)
    first = next(iter(results.values()))
    lines = [
        "| metric (%) | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def row(label, values, percent=True):
        lines.append(f"| {label} | " + " | ".join(_cell(v, percent) for v in values) + " |")

    for label, key, percent in ROWS[:-1]:
        row(label, [results[n][key] for n in names], percent)
    for iou in first["map_iou"]:
        row(f"mAP @ IoU {iou}", [results[n]["map_iou"][iou] for n in names])
    row(ROWS[-1][0], [results[n]["map_mean"] for n in names])
    classes = [c for c, m in first["per_class"].items() if "auc" in m]
    for c in classes:
        for label, key in CLASS_ROWS:
            row(f"{c}: {label}", [results[n]["per_class"][c][key] for n in names])
    for key in COUNTS:
        lines.append(f"| {key} | " + " | ".join(str(results[n][key]) for n in names) + " |")
    return lines


def figure(method_curves, results):
    """-> a matplotlib figure: ROC (left) and precision-recall (right) of every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    for name, ((fpr, tpr), (recall, precision)) in method_curves.items():
        roc.plot(fpr, tpr, lw=1.3, label=f"{name} (AUC {_cell(results[name]['auc'])}%)")
        pr.plot(recall, precision, lw=1.3, label=f"{name} (AP {_cell(results[name]['ap'])}%)")
    roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="frame-level ROC")
    pr.set(xlabel="recall", ylabel="precision", title="frame-level precision-recall")
    for ax, where in ((roc, "lower right"), (pr, "lower left")):
        ax.set(xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc=where, fontsize=7)
    fig.tight_layout()
    return fig, plt


def check_outputs(out, force):
    """Refuses an output folder that is a file, cannot be written, or holds earlier outputs."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExistsError(f"--out {out} is a file, not a folder: pass a folder")
    check_writable(out, "--out")
    earlier = [out / name for name in OUTPUTS if (out / name).exists()]
    if earlier and not force:
        raise ExistsError(
            f"{earlier[0]} holds an earlier comparison: pass --force to overwrite it, or choose "
            "another --out folder"
        )


def compare(cfg, methods, out, force=False):
    """methods {name: score file or folder} -> {"methods": {name: {"source", **metrics}}, "out"};
    writes the files of the module docstring to `out`."""
    logger = setup_logger()
    out = Path(out)
    check_outputs(out, force)
    _, videos = load_splits(cfg, need_train=False)
    labels = test_ground_truth(cfg, videos)
    results, method_curves = {}, {}
    for name, path in methods.items():
        scores, results[name] = evaluate_method(name, path, labels, videos, cfg)
        method_curves[name] = curves(scores, labels, videos, cfg)
    lines = table(results)
    fig, plt = figure(method_curves, results)
    out.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(out / "compare.png", lambda f: fig.savefig(f, format="png", dpi=120))
    finally:
        plt.close(fig)
    write_text_atomic(out / "compare.md", "\n".join(lines) + "\n")
    record = {
        "dataset": cfg.DATA.DATASET,
        "split": cfg.DATA.TEST_SPLIT,
        "methods": {n: {"source": str(methods[n]), **m} for n, m in results.items()},
    }
    write_json(out / "compare.json", record)
    for line in lines:
        logger.info("%s", line)
    logger.info("wrote %s", ", ".join(str(out / name) for name in OUTPUTS))
    return {"methods": record["methods"], "out": str(out)}
