"""Every tool's realistic mistakes, one line each: the tool ends with exit status 2 and ONE line
`error: <message>` on stderr naming the thing (file, key, video, value), never a traceback, and the
files it was given or asked to write are exactly as they were (nothing half-written, nothing
removed).

A case = (id, tool, setup(world) that plants the mistake in a fresh copy of the fixtures,
argv(world), words the message must contain). The world: a tiny stage-1 feature set (s1/), a tiny
stage-2 frame set (s2/), a finished stage-1 run (run1/), a stage-2 checkpoint (run2/), the real test
video (video.mp4); out/ is where a run would write. Everything under the world is compared before
and after (path, size, content digest), so a leftover, a truncated file or a rewritten config.yaml
fails the case."""

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.stage1_fixtures import make_tiny_dataset, tiny_opts
from tests.stage2_fixtures import make_tiny_videos, tiny_stage2_opts
from utils import cli
from utils.config import REPO_ROOT
from run_tool import tool_main

VIDEO = REPO_ROOT / "tests" / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"


@dataclass
class Case:
    id: str
    tool: str
    argv: object  # world -> list of str
    words: tuple  # all must appear in the one-line message
    setup: object = None  # world -> None: plants the mistake
    extra: dict = field(default_factory=dict)


class World:
    def __init__(self, root):
        self.root = Path(root)
        self.s1 = {k: self.root / "s1" / Path(v).name for k, v in _S1_NAMES.items()}
        self.s2 = {k: self.root / "s2" / Path(v).name for k, v in _S2_NAMES.items()}
        self.run1, self.run2 = self.root / "run1", self.root / "run2"
        self.video, self.out = self.root / "video.mp4", self.root / "out"

    def s1_opts(self, **extra):
        return tiny_opts(self.s1, self.out, epochs=2, **extra)

    def s2_opts(self, **extra):
        return tiny_stage2_opts(self.s2, self.out, epochs=1, **extra)

    def write(self, name, text):
        path = self.root / name
        path.write_text(text)
        return path


_S1_NAMES = {"features": "feats.h5", "train": "train.txt", "test": "test.txt", "masks": "masks"}
_S2_NAMES = {
    "frames": "frames.h5",
    "train": "train.txt",
    "test": "test.txt",
    "masks": "masks",
    "pseudo_labels": "pseudo_labels.npz",
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The fixtures, built once: data, a finished stage-1 run, a stage-2 checkpoint, the real
    video."""
    root = tmp_path_factory.mktemp("pristine")
    make_tiny_dataset(root / "s1")
    make_tiny_videos(root / "s2", n_train=2, n_test=1)
    world = World(root)
    assert cli.run(tool_main("train_stage1"), tiny_opts(world.s1, world.run1, epochs=2)) == 0
    assert cli.run(tool_main("train_stage2"), tiny_stage2_opts(world.s2, world.run2, epochs=1)) == 0
    shutil.copy(VIDEO, world.video)
    return root


@pytest.fixture()
def world(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "w")
    return World(tmp_path / "w")


def _snapshot(root):
    """-> {relative path: sha256} of every file (and '/' entries for folders) under root."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        out[f"{rel}/"] = ""
        for name in files:
            out[str(rel / name)] = hashlib.sha256((Path(dirpath) / name).read_bytes()).hexdigest()
    return out


def _detach_log_handlers():
    import logging

    for logger in [logging.getLogger()] + [
        logging.getLogger(n) for n in logging.root.manager.loggerDict
    ]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)


def _h5_edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


def _set_feature(world, video, row, value):
    def edit(f):
        data = f[f"{video}.npy"][()]
        data[row] = value
        f[f"{video}.npy"][...] = data

    _h5_edit(world.s1["features"], edit)


def _save_mask(world, video, fn):
    path = world.s1["masks"] / f"{video}.npy"
    np.save(path, fn(np.load(path)))


def _pickle_bomb(path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(path.parent / "PWNED"),))

    path.write_bytes(pickle.dumps({"model": Evil()}))


def _pseudo(world, fn):
    path = world.s2["pseudo_labels"]
    data = dict(np.load(path))
    fn(data)
    np.savez(path, **data)


S1, S2 = "train_stage1", "train_stage2"
CASES = [
    # --- train_stage1: inputs ---
    Case(
        "s1-features-missing",
        S1,
        lambda w: w.s1_opts(**{"DATA.FEATURES": w.root / "nope.h5"}),
        ("DATA.FEATURES", "nope.h5"),
    ),
    Case(
        "s1-video-missing-from-h5",
        S1,
        lambda w: w.s1_opts(),
        ("tr_0003",),
        lambda w: _h5_edit(w.s1["features"], lambda f: f.__delitem__("tr_0003.npy")),
    ),
    Case(
        "s1-feature-dim",
        S1,
        lambda w: w.s1_opts(**{"DATA.FEATURE_DIM": 16}),
        ("DATA.FEATURE_DIM", "16"),
    ),
    Case(
        "s1-nan-feature",
        S1,
        lambda w: w.s1_opts(),
        ("te_0002", "NaN"),
        lambda w: _set_feature(w, "te_0002", 1, np.nan),
    ),
    Case(
        "s1-inf-feature",
        S1,
        lambda w: w.s1_opts(),
        ("te_0002",),
        lambda w: _set_feature(w, "te_0002", 0, np.inf),
    ),
    Case(
        "s1-empty-train-split",
        S1,
        lambda w: w.s1_opts(),
        ("train.txt", "empty"),
        lambda w: w.s1["train"].write_text("\n"),
    ),
    Case(
        "s1-split-is-binary",
        S1,
        lambda w: w.s1_opts(**{"DATA.TRAIN_SPLIT": w.s1["features"]}),
        ("feats.h5", "not UTF-8"),
    ),
    Case(
        "s1-split-missing",
        S1,
        lambda w: w.s1_opts(**{"DATA.TRAIN_SPLIT": w.root / "none.txt"}),
        ("none.txt",),
    ),
    Case(
        "s1-split-bad-label",
        S1,
        lambda w: w.s1_opts(),
        ("train.txt", "tr_0000"),
        lambda w: w.s1["train"].write_text(
            w.s1["train"].read_text().replace("tr_0000,0", "tr_0000,7")
        ),
    ),
    Case(
        "s1-mask-short",
        S1,
        lambda w: w.s1_opts(),
        ("te_0001", "TEST.MAX_PAD_CLIPS"),
        lambda w: _save_mask(w, "te_0001", lambda m: m[:-40]),
    ),
    Case(
        "s1-mask-3x-long",
        S1,
        lambda w: w.s1_opts(),
        ("te_0001", "mask"),
        lambda w: _save_mask(w, "te_0001", lambda m: np.concatenate([m, m, m])),
    ),
    Case(
        "s1-mask-not-binary",
        S1,
        lambda w: w.s1_opts(),
        ("te_0001",),
        lambda w: _save_mask(w, "te_0001", lambda m: m * 3),
    ),
    Case(
        "s1-mask-dir-missing",
        S1,
        lambda w: w.s1_opts(**{"DATA.TEST_MASK_DIR": w.root / "nomasks"}),
        ("nomasks",),
    ),
    Case(
        "s1-features-corrupt",
        S1,
        lambda w: w.s1_opts(),
        ("feats.h5",),
        lambda w: w.s1["features"].write_bytes(b"\x89HDF\r\n" + b"\x00" * 100),
    ),
    Case(
        "s1-features-is-text",
        S1,
        lambda w: w.s1_opts(**{"DATA.FEATURES": w.write("f.h5", "hello")}),
        ("f.h5",),
    ),
    # --- train_stage1: config ---
    Case("s1-unknown-key", S1, lambda w: w.s1_opts(**{"STAGE1.EPOCH": 3}), ("STAGE1.EPOCH",)),
    Case("s1-wrong-type", S1, lambda w: w.s1_opts(**{"STAGE1.LR": "fast"}), ("STAGE1.LR",)),
    Case(
        "s1-batch-too-large",
        S1,
        lambda w: w.s1_opts(**{"STAGE1.BATCH_SIZE": 13}),
        ("STAGE1.BATCH_SIZE",),
    ),
    Case(
        "s1-negative-weight-decay",
        S1,
        lambda w: w.s1_opts(**{"STAGE1.WEIGHT_DECAY": -0.1}),
        ("STAGE1.WEIGHT_DECAY", "-0.1"),
    ),
    Case("s1-zero-epochs", S1, lambda w: w.s1_opts(**{"STAGE1.EPOCHS": 0}), ("STAGE1.EPOCHS",)),
    Case("s1-negative-lr", S1, lambda w: w.s1_opts(**{"STAGE1.LR": -1.0}), ("STAGE1.LR",)),
    Case("s1-cuda-missing", S1, lambda w: w.s1_opts(DEVICE="cuda"), ("DEVICE",)),
    Case("s1-cfg-missing", S1, lambda w: ["--cfg", str(w.root / "nope.yaml")], ("nope.yaml",)),
    Case(
        "s1-cfg-python",
        S1,
        lambda w: ["--cfg", str(w.write("evil.py", "import os\n"))],
        ("evil.py",),
    ),
    Case(
        "s1-cfg-python-tag",
        S1,
        lambda w: [
            "--cfg",
            str(w.write("t.yaml", "SEED: !!python/object/apply:os.system ['x']\n")),
        ],
        ("t.yaml", "python"),
    ),
    Case(
        "s1-cfg-bad-yaml",
        S1,
        lambda w: ["--cfg", str(w.write("b.yaml", "SEED: [1, 2\n"))],
        ("b.yaml",),
    ),
    Case(
        "s1-cfg-not-a-mapping",
        S1,
        lambda w: ["--cfg", str(w.write("l.yaml", "- 1\n- 2\n"))],
        ("l.yaml",),
    ),
    Case("s1-odd-override-count", S1, lambda w: w.s1_opts() + ["STAGE1.LR"], ("STAGE1.LR",)),
    # --- train_stage1: outputs ---
    Case(
        "s1-output-is-a-file",
        S1,
        lambda w: tiny_opts(w.s1, w.write("afile", "x"), epochs=2),
        ("afile",),
    ),
    Case(
        "s1-output-holds-a-finished-run",
        S1,
        lambda w: tiny_opts(w.s1, w.run1, epochs=2),
        ("run1", "--resume"),
    ),
    Case(
        "s1-val-fraction",
        S1,
        lambda w: w.s1_opts(**{"DATA.VAL_FRACTION": 1.5}),
        ("DATA.VAL_FRACTION", "1.5"),
    ),
    Case(
        "s1-resume-other-dim",
        S1,
        lambda w: ["--resume"] + tiny_opts(w.s1, w.run1, epochs=4, **{"DATA.FEATURE_DIM": 16}),
        ("DATA.FEATURE_DIM",),
    ),
    Case(
        "s1-resume-corrupt-last",
        S1,
        lambda w: ["--resume"] + tiny_opts(w.s1, w.run1, epochs=4),
        ("last.pth",),
        lambda w: (w.run1 / "checkpoints" / "last.pth").write_bytes(b"PK\x03\x04broken"),
    ),
    # --- test.py ---
    Case(
        "test-checkpoint-missing",
        "test",
        lambda w: w.s1_opts(**{"TEST.CHECKPOINT": w.root / "no.pth"}),
        ("TEST.CHECKPOINT", "no.pth"),
    ),
    Case("test-nothing-to-test", "test", lambda w: w.s1_opts(), ("TEST.CHECKPOINT", "TEST.SCORES")),
    Case(
        "test-checkpoint-truncated",
        "test",
        lambda w: w.s1_opts(**{"TEST.CHECKPOINT": w.root / "t.pth"}),
        ("t.pth",),
        lambda w: (w.root / "t.pth").write_bytes(
            (w.run1 / "checkpoints" / "last.pth").read_bytes()[:500]
        ),
    ),
    Case(
        "test-checkpoint-runs-code",
        "test",
        lambda w: w.s1_opts(**{"TEST.CHECKPOINT": w.root / "evil.pth"}),
        ("evil.pth",),
        lambda w: _pickle_bomb(w.root / "evil.pth"),
    ),
    Case(
        "test-checkpoint-foreign",
        "test",
        lambda w: w.s1_opts(**{"TEST.CHECKPOINT": w.root / "f.pth"}),
        ("f.pth",),
        lambda w: torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, w.root / "f.pth"),
    ),
    Case(
        "test-scores-missing",
        "test",
        lambda w: w.s1_opts(**{"TEST.SCORES": w.root / "s.npz"}),
        ("s.npz",),
    ),
    Case(
        "test-scores-video-missing",
        "test",
        lambda w: w.s1_opts(**{"TEST.SCORES": w.root / "s.npz"}),
        ("te_0000",),
        lambda w: np.savez(w.root / "s.npz", te_0001=np.zeros(3)),
    ),
    Case(
        "test-scores-short",
        "test",
        lambda w: w.s1_opts(**{"TEST.SCORES": w.root / "s.npz"}),
        ("te_0001",),
        lambda w: _short_scores(w, w.root / "s.npz"),
    ),
    Case(
        "test-scores-nan",
        "test",
        lambda w: w.s1_opts(**{"TEST.SCORES": w.root / "s.npz"}),
        ("te_0002", "NaN"),
        lambda w: _short_scores(w, w.root / "s.npz", nan="te_0002"),
    ),
    Case(
        "test-scores-2d",
        "test",
        lambda w: w.s1_opts(**{"TEST.SCORES": w.root / "s.npz"}),
        ("te_0000",),
        lambda w: _short_scores(w, w.root / "s.npz", two_d="te_0000"),
    ),
    # --- train_stage2 ---
    Case(
        "s2-pseudo-labels-unset",
        S2,
        lambda w: w.s2_opts(**{"DATA.PSEUDO_LABELS": ""}),
        ("DATA.PSEUDO_LABELS",),
    ),
    Case(
        "s2-pseudo-labels-missing",
        S2,
        lambda w: w.s2_opts(**{"DATA.PSEUDO_LABELS": w.root / "pl.npz"}),
        ("pl.npz",),
    ),
    Case(
        "s2-frames-missing",
        S2,
        lambda w: w.s2_opts(**{"DATA.FRAMES": w.root / "none.h5"}),
        ("DATA.FRAMES", "none.h5"),
    ),
    Case(
        "s2-video-missing-from-frames",
        S2,
        lambda w: w.s2_opts(),
        ("tr_0001",),
        lambda w: _h5_edit(
            w.s2["frames"], lambda f: [f.__delitem__(k) for k in list(f) if k.startswith("tr_0001")]
        ),
    ),
    Case(
        "s2-frames-key-gap",
        S2,
        lambda w: w.s2_opts(),
        ("tr_0001-000001",),
        lambda w: _h5_edit(w.s2["frames"], lambda f: f.__delitem__("tr_0001-000001")),
    ),
    Case(
        "s2-crop-larger-than-resize",
        S2,
        lambda w: w.s2_opts(**{"DATA.TRAIN_SIZE": "[32, 40, 48]"}),
        ("48",),
    ),
    Case(
        "s2-batch-larger-than-split",
        S2,
        lambda w: w.s2_opts(**{"STAGE2.BATCH_SIZE": 9}),
        ("STAGE2.BATCH_SIZE",),
    ),
    Case(
        "s2-sync-bn-on-cpu",
        S2,
        lambda w: w.s2_opts(**{"STAGE2.SYNC_BN": True}),
        ("STAGE2.SYNC_BN",),
    ),
    Case("s2-amp-unknown", S2, lambda w: w.s2_opts(**{"STAGE2.AMP": "fp8"}), ("STAGE2.AMP", "fp8")),
    Case(
        "s2-compile-unknown",
        S2,
        lambda w: w.s2_opts(**{"STAGE2.COMPILE": "fast"}),
        ("STAGE2.COMPILE",),
    ),
    Case(
        "s2-pl-missing-video",
        S2,
        lambda w: w.s2_opts(),
        ("tr_0001",),
        lambda w: _pseudo(w, lambda d: d.pop("tr_0001")),
    ),
    Case(
        "s2-pl-out-of-range",
        S2,
        lambda w: w.s2_opts(),
        ("tr_0001", "[0, 1]"),
        lambda w: _pseudo(w, lambda d: d.__setitem__("tr_0001", d["tr_0001"] * 0 + 1.7)),
    ),
    Case(
        "s2-pl-nan",
        S2,
        lambda w: w.s2_opts(),
        ("tr_0003",),
        lambda w: _pseudo(w, lambda d: d.__setitem__("tr_0003", d["tr_0003"] * np.nan)),
    ),
    Case(
        "s2-pretrained-missing",
        S2,
        lambda w: w.s2_opts(**{"MODEL.PRETRAINED": w.root / "p.pth"}),
        ("p.pth",),
    ),
    Case(
        "s2-pretrained-wrong-backbone",
        S2,
        lambda w: w.s2_opts(
            **{"MODEL.BACKBONE": "i3d", "MODEL.PRETRAINED": w.run2 / "checkpoints" / "last.pth"}
        ),
        ("c3d",),
    ),
    Case(
        "s2-device-augment-on-videos",
        S2,
        lambda w: w.s2_opts(
            **{"STAGE2.DEVICE_AUGMENT": True, "DATA.FRAMES": w.video, "DATA.FRAMES_KIND": "video"}
        ),
        ("STAGE2.DEVICE_AUGMENT",),
    ),
    Case(
        "s2-train-size-shape",
        S2,
        lambda w: w.s2_opts(**{"DATA.TRAIN_SIZE": "[32, 40]"}),
        ("DATA.TRAIN_SIZE",),
    ),
    # --- make_h5 ---
    Case(
        "make_h5-input-missing",
        "make_h5",
        lambda w: [str(w.root / "novids"), str(w.out / "f.h5")],
        ("novids",),
    ),
    Case(
        "make_h5-no-videos", "make_h5", lambda w: [str(w.root / "s1"), str(w.out / "f.h5")], ("s1",)
    ),
    Case(
        "make_h5-output-exists",
        "make_h5",
        lambda w: [str(w.video), str(w.s2["frames"])],
        ("frames.h5", "--force"),
    ),
    Case(
        "make_h5-corrupt-video",
        "make_h5",
        lambda w: [str(w.write("bad.mp4", "not a video")), str(w.out / "f.h5")],
        ("bad.mp4",),
    ),
    Case(
        "make_h5-quality",
        "make_h5",
        lambda w: [str(w.video), str(w.out / "f.h5"), "--quality", "101"],
        ("--quality",),
    ),
    Case(
        "make_h5-workers",
        "make_h5",
        lambda w: [str(w.video), str(w.out / "f.h5"), "--workers", "0"],
        ("--workers",),
    ),
    # --- extract_features ---
    Case(
        "extract-weights-missing",
        "extract_features",
        lambda w: [
            str(w.s2["frames"]),
            str(w.out / "x.h5"),
            "--encoder",
            "c3d",
            "--weights",
            str(w.root / "c.pickle"),
        ],
        ("c.pickle",),
    ),
    Case(
        "extract-source-missing",
        "extract_features",
        lambda w: [
            str(w.root / "nothing"),
            str(w.out / "x.h5"),
            "--encoder",
            "mist",
            "--weights",
            str(w.run2 / "checkpoints" / "last.pth"),
        ],
        ("nothing",),
    ),
    Case(
        "extract-corrupt-video",
        "extract_features",
        lambda w: [
            str(w.write("bad.avi", "garbage")),
            str(w.out / "x.h5"),
            "--encoder",
            "mist",
            "--weights",
            str(w.run2 / "checkpoints" / "last.pth"),
        ],
        ("bad.avi",),
    ),
    Case(
        "extract-weights-runs-code",
        "extract_features",
        lambda w: [
            str(w.s2["frames"]),
            str(w.out / "x.h5"),
            "--encoder",
            "mist",
            "--weights",
            str(w.root / "e.pth"),
        ],
        ("e.pth",),
        lambda w: _pickle_bomb(w.root / "e.pth"),
    ),
    # --- infer ---
    Case(
        "infer-model-missing",
        "infer",
        lambda w: [str(w.video), "--model", str(w.root / "m.pth"), "--out", str(w.out)],
        ("m.pth",),
    ),
    Case(
        "infer-source-missing",
        "infer",
        lambda w: [
            str(w.root / "v.mp4"),
            "--model",
            str(w.run2 / "checkpoints" / "last.pth"),
            "--out",
            str(w.out),
        ],
        ("v.mp4",),
    ),
    Case(
        "infer-calibration-keys",
        "infer",
        lambda w: [
            str(w.video),
            "--model",
            str(w.run2 / "checkpoints" / "last.pth"),
            "--calibration",
            str(w.write("cal.json", '{"x": 1}')),
            "--far",
            "0.001",
            "--out",
            str(w.out),
        ],
        ("cal.json",),
    ),
    Case(
        "infer-far-without-calibration",
        "infer",
        lambda w: [
            str(w.video),
            "--model",
            str(w.run2 / "checkpoints" / "last.pth"),
            "--far",
            "0.001",
            "--out",
            str(w.out),
        ],
        ("--far", "--calibration"),
    ),
    Case(
        "infer-out-holds-an-earlier-run",
        "infer",
        lambda w: [
            str(w.video),
            "--model",
            str(w.run2 / "checkpoints" / "last.pth"),
            "--out",
            str(w.root / "prev"),
        ],
        ("prev", "--force"),
        lambda w: (
            (w.root / "prev").mkdir() or (w.root / "prev" / "scores.jsonl").write_text("{}\n")
        ),
    ),
    # --- export ---
    Case(
        "export-checkpoint-missing",
        "export",
        lambda w: [str(w.root / "m.pth"), str(w.out / "m")],
        ("m.pth",),
    ),
    Case(
        "export-formats",
        "export",
        lambda w: [
            str(w.run2 / "checkpoints" / "last.pth"),
            str(w.out / "m"),
            "--formats",
            "tflite",
        ],
        ("tflite",),
    ),
    Case(
        "export-out-exists",
        "export",
        lambda w: [str(w.run2 / "checkpoints" / "last.pth"), str(w.root / "m")],
        ("m.json", "--force"),
        lambda w: w.write("m.json", "{}"),
    ),
    Case(
        "test-results-exist",
        "test",
        lambda w: tiny_opts(
            w.s1, w.run1, **{"TEST.CHECKPOINT": w.run1 / "checkpoints" / "last.pth"}
        ),
        ("test_last.json", "--force"),
        lambda w: w.write("run1/test_last.json", "{}"),
    ),
    Case(
        "test-output-is-a-file",
        "test",
        lambda w: tiny_opts(
            w.s1, w.write("f", "x"), **{"TEST.CHECKPOINT": w.run1 / "checkpoints" / "last.pth"}
        ),
        ("OUTPUT_DIR",),
    ),
    # --- convert_weights ---
    Case(
        "convert-input-missing",
        "convert_weights",
        lambda w: [str(w.root / "w.pth"), str(w.out / "o.pth")],
        ("w.pth",),
    ),
    Case(
        "convert-output-exists",
        "convert_weights",
        lambda w: [
            str(w.run2 / "checkpoints" / "last.pth"),
            str(w.run2 / "checkpoints" / "best.pth"),
        ],
        ("best.pth", "--force"),
    ),
    Case(
        "convert-input-is-text",
        "convert_weights",
        lambda w: [str(w.write("w.pth", "hello")), str(w.out / "o.pth")],
        ("w.pth",),
    ),
    # --- pl_quality ---
    Case(
        "pl_quality-file-missing",
        "pl_quality",
        lambda w: [
            str(w.root / "pl.npz"),
            "--masks",
            str(w.s2["masks"]),
            "--split",
            str(w.s2["train"]),
        ],
        ("pl.npz",),
    ),
    Case(
        "pl_quality-masks-missing",
        "pl_quality",
        lambda w: [
            str(w.s2["pseudo_labels"]),
            "--masks",
            str(w.root / "nomasks"),
            "--split",
            str(w.s2["train"]),
        ],
        ("nomasks",),
    ),
    # --- visualize ---
    Case("visualize-run-missing", "visualize", lambda w: [str(w.root / "norun")], ("norun",)),
    Case(
        "visualize-gradcam-spec",
        "visualize",
        lambda w: [str(w.run2), "--gradcam", "abc"],
        ("abc", "VIDEO:SEG"),
    ),
]


def _short_scores(world, path, nan=None, two_d=None):
    """A score file of the stage-1 run's test videos, one video cut short / NaN / 2-d."""
    scores = dict(np.load(world.run1 / "test_scores.npz"))
    if nan:
        scores[nan] = scores[nan].copy()
        scores[nan][0] = np.nan
    elif two_d:
        scores[two_d] = np.stack([scores[two_d], scores[two_d]], axis=1)
    else:
        scores["te_0001"] = scores["te_0001"][:1]
    np.savez(path, **scores)


def test_the_table_covers_every_tool_with_60_cases():
    tools = {c.tool for c in CASES}
    assert tools == {
        "train_stage1",
        "train_stage2",
        "test",
        "make_h5",
        "extract_features",
        "infer",
        "export",
        "convert_weights",
        "pl_quality",
        "visualize",
    }
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, world, capsys):
    if case.id == "s1-cuda-missing" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case.setup is not None:
        case.setup(world)
    argv = [str(a) for a in case.argv(world)]
    _detach_log_handlers()  # handlers of earlier cases hold a stream pytest has closed since
    before = _snapshot(world.root)
    capsys.readouterr()
    status = cli.run(tool_main(case.tool), argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2, f"exit status {status}, stderr:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, f"expected one 'error: ' line, stderr:\n{err[-3000:]}"
    for word in case.words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"
    assert _snapshot(world.root) == before, "the failed run changed, left or removed files"
    assert not (world.root / "PWNED").exists()
