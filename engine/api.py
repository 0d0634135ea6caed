"""MIST from Python, without the command line.

    from engine.api import load
    detector = load("output/cameras/stage2/checkpoints/best_val.pth",
                    calibration="output/cameras/val/test_best_val_calibration.json", far=0.001)
    result = detector.score_video("footage/gate/2026-03-09_1700.mp4")
    result.frame_scores, result.alarms    # (n_frames,) in [0, 1]; [Alarm] above the threshold

A stage-2 checkpoint (tools/train_stage2.py, the authors', a tools/publish.py release) scores video
files and arrays of frames; a stage-1 checkpoint (tools/train_stage1.py) scores arrays of clip
features. Scores are per 16-frame clip, as tools/test.py computes them; a frame takes the score of
its clip, and the last n % 16 frames (no whole clip) take the last clip's score. The alarm threshold
comes from a calibration file (tools/test.py, best written on held-out normal videos:
docs/own_data.md §4) at a target false alarm rate, or is given as `threshold`.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from configs.defaults import get_cfg_defaults
from datasets.build import test_transform
from datasets.feature_sources import l2_normalise
from datasets.frames import open_frames
from models.loading import load_generator, load_mist
from models.mist import anomaly_score
from utils.alarms import alarms_from_scores
from utils.calibration import select_threshold
from utils.errors import InputError
from utils.video import probe_video
from utils.video_scoring import score_videos_on_frames

CLIP_LEN = 16
# clips per forward pass
BATCH = 16


@dataclass
class Result:
    """clip_scores (n_clips,); frame_scores (n_frames,); alarms: utils.alarms.Alarm list."""

    clip_scores: np.ndarray
    frame_scores: np.ndarray
    alarms: list = field(default_factory=list)
    threshold: float = 0.5


def load(path, calibration=None, far=None, threshold=0.5, device="cpu"):
    """A checkpoint -> a Detector (stage 2: frames) or a FeatureDetector (stage 1: features).

    calibration + far: the threshold of that target false alarm rate in a tools/test.py
    calibration file; else `threshold`."""
    if calibration is not None:
        if far is None:
            raise InputError("load(calibration=...) needs far= (a target false alarm rate of it)")
        threshold = float(select_threshold(calibration, far)["threshold"])
    device = torch.device(device)
    if _is_stage1(path):
        model, cfg = load_generator(path)
        return FeatureDetector(model.to(device), cfg, threshold, device)
    model, cfg = load_mist(path, get_cfg_defaults(), needs="engine.api.load")
    return Detector(model.to(device), cfg, threshold, device)


def _is_stage1(path):
    from utils.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    return isinstance(state, dict) and state.get("kind") == "stage1"


class _Scores:
    def __init__(self, model, cfg, threshold, device):
        self.model, self.cfg, self.threshold, self.device = model, cfg, threshold, device

    def _result(self, clip_scores, n_frames):
        clip_scores = np.asarray(clip_scores, dtype=np.float64)
        frame_scores = frame_scores_of(clip_scores, n_frames)
        starts = np.arange(len(clip_scores)) * CLIP_LEN
        alarms = alarms_from_scores(starts, clip_scores, CLIP_LEN, self.threshold)
        return Result(clip_scores, frame_scores, alarms, self.threshold)


class Detector(_Scores):
    """A stage-2 MIST model with its test transform."""

    def __init__(self, model, cfg, threshold, device):
        super().__init__(model, cfg, threshold, device)
        self.transform = test_transform(cfg)

    def score_video(self, path):
        """A video file -> Result (decoded with OpenCV, as tools/test.py reads videos)."""
        frames = open_frames([str(path)], kind="video")
        (name,) = frames.names
        scores = score_videos_on_frames(self.model, frames, [name], self.transform, self.device)
        return self._result(scores[name], probe_video(path)[0])

    def score_frames(self, frames):
        """uint8 (n, H, W, 3) BGR frames (OpenCV's order) -> Result."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InputError(
                f"frames must be uint8 (n, H, W, 3) BGR, got {frames.dtype} {frames.shape}"
            )
        n_clips = len(frames) // CLIP_LEN
        if n_clips == 0:
            raise InputError(f"{len(frames)} frames: at least {CLIP_LEN} are needed for one clip")
        # one transform per clip (as the frame sources feed tools/test.py), BATCH clips a forward
        clips = [self.transform(frames[k * CLIP_LEN : (k + 1) * CLIP_LEN]) for k in range(n_clips)]
        views = clips[0].shape[0] if clips[0].dim() == 5 else 1
        x = torch.stack(clips).flatten(0, 1) if views > 1 else torch.stack(clips)
        with torch.no_grad():
            out = [anomaly_score(self.model(b.to(self.device))) for b in x.split(BATCH * views)]
        # ten-crop: the views' scores averaged
        scores = torch.cat(out).reshape(n_clips, views).mean(dim=1).cpu().numpy()
        return self._result(scores, len(frames))


class FeatureDetector(_Scores):
    """A stage-1 generator over pre-extracted clip features."""

    def score_features(self, features):
        """float (n_clips, D) clip features (L2-normalised here if the run trained so) -> Result
        over the n_clips x 16 frames they cover."""
        x = np.asarray(features, dtype=np.float32)
        dim = self.cfg.DATA.FEATURE_DIM
        if x.ndim != 2 or x.shape[1] != dim:
            raise InputError(f"features must be (n_clips, {dim}) for this generator, got {x.shape}")
        # as the feature store reads them for training and tools/test.py
        x = torch.from_numpy(l2_normalise(x) if self.cfg.DATA.L2_NORM else x)
        with torch.no_grad():
            scores = self.model(x.to(self.device)).reshape(-1).cpu().numpy()
        return self._result(scores, len(scores) * CLIP_LEN)


def frame_scores_of(clip_scores, n_frames):
    """(n_clips,) -> (n_frames,): each clip's score on its 16 frames, the tail on the last
    clip's."""
    frames = np.repeat(clip_scores, CLIP_LEN)[:n_frames]
    if len(frames) < n_frames:
        frames = np.concatenate([frames, np.full(n_frames - len(frames), clip_scores[-1])])
    return frames
