"""The embedded demo feature set: generated I3D-like clip features on the real ShanghaiTech split.

`make_demo_features(out_path)` writes, in a few seconds, one h5 in the official MIST layout (one
float32 dataset `<video>.npy` of shape [n_clips, 1024] per video, train and test in the same file)
for the 437 videos of the Zhong et al. split shipped in `data/shanghaitech/`: 238 train (175 normal
+ 63 abnormal) and 199 test (155 + 44). Lengths are the real frame counts, n_clips = n_frames // 16
(I3D clip rule, docs/REFERENCE.md §1.1); anomalies follow the real per-frame masks, train and test.
Nothing here is real video content: the set exists so the whole pipeline runs, end to end, without
downloads.

Feature model, one clip row x (1024-d, float32, all entries >= 0 like post-ReLU pooled I3D
features):

    x = SCALE * relu(scene[s] + DRIFT * P z_t + NOISE * e_t + a_t * amp_v * U[k_v] + b_t * 0.4 *
    amp_v * V[j])

- scene[s]: a fixed base pattern for each of the 13 scenes (name prefix 01..13): a shared pattern
  plus a
  scene-specific one, so the scene dominates where a clip sits in feature space.
- z_t: an AR(1) process (rho 0.9) in a 16-d latent space, projected up by a fixed P: slow drift
  within
  a video (lighting, crowd density). e_t: independent per-clip noise.
- Anomalies: 4 types, each a sparse non-negative direction U[k] (a shared "unusual motion" part plus
  a
  type-specific part). An abnormal video gets one type k_v and one amplitude amp_v; a clip's
  intensity a_t is the fraction of its 16 frames that the mask marks anomalous, so intensity ramps
  at event boundaries.
- Normal look-alikes: about 2 % of clips of every video start a short (2-4 clip) event b_t of a
  random
  type j at 0.4 x the video's amplitude along V[j], a partial copy of U[j] (the shared part and half
  of the type-specific part). They are labelled normal, so top-scoring clips of a normal bag are not
  trivially low.
- SCALE puts rows at L2 norm about 3-4. This is deliberate: the official stage-1 recipe (Adagrad lr
  0.01,
  sigmoid output, no normalisation) collapses on rows of norm ~14, a typical raw I3D magnitude, and
  trains normally around 3.5 (docs/REFERENCE.md §10). Real features of larger scale may need L2
  normalisation.

Difficulty, measured on seed 0 (frame-level AUC on the 199 test videos, each clip score repeated
16x, GT cut to 16 x n_clips; docs/REFERENCE.md §1.6):
- clip-supervised linear probe (sklearn LogisticRegression on all 10,762 train clips, clip label =
  mask
  fraction >= 0.5): 0.968. This is roughly the ceiling for a linear scorer.
- official stage-1 MIL generator (MLP 1024-512-32-1, dropout 0.6, Adagrad 0.01 / wd 1e-3, clip 10,
  40+40 bags of 32x7 clips, top-7 hinge + 0.01 sparsity; docs/REFERENCE.md §1.2-1.5), torch seed 0:
  0.80 after 50 iterations, 0.85 after 100, 0.89 after 200-300 (another draw and training seed: 0.87
  at 250). Weak supervision costs about 8 points against the probe; chance is 0.5.

Run `python -m datasets.demo out/demo/features.h5` to write it by hand.
"""

import csv
import os
import sys
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
from scipy.signal import lfilter
from utils.errors import MissingKeyError, NotFoundError

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIP_LEN = 16
N_SCENES = 13
N_TYPES = 4
LATENT_DIM = 16
RHO = 0.9  # AR(1) coefficient of the latent drift, per clip
DRIFT = 0.5  # std of the drift along each feature dim
NOISE = 0.6  # std of the independent per-clip noise
AMP = (0.27, 0.54)  # range of a video's anomaly amplitude (per active dim of U)
LOOKALIKE_P = 0.02  # chance that a clip starts a normal look-alike event
LOOKALIKE_AMP = 0.4  # look-alike amplitude, relative to the video's anomaly amplitude
SCALE = 0.125  # rows end at L2 norm ~3.5 (docs/REFERENCE.md §10)


def _resolve(data_dir):
    """A relative data_dir is looked up in the working directory, then under the repository root."""
    path = Path(data_dir)
    if not path.is_dir() and not path.is_absolute():
        path = REPO_ROOT / data_dir
    if not (path / "SH_Train_new.txt").is_file():
        raise NotFoundError(
            f"no ShanghaiTech split in {data_dir!r} (expected SH_Train_new.txt, "
            "SH_Test_NEW.txt, train_frame_counts.csv, test_frame_mask/ as in data/shanghaitech)"
        )
    return path


def _read_videos(data_dir):
    """-> list of (name, label, n_frames, mask or None) for the 238 train then 199 test videos."""
    with open(data_dir / "train_frame_counts.csv", newline="") as f:
        train_frames = {row["video"]: int(row["frames"]) for row in csv.DictReader(f)}
    rows = [line.strip().split(",") for line in open(data_dir / "SH_Train_new.txt") if line.strip()]
    rows += [line.strip().split(",") for line in open(data_dir / "SH_Test_NEW.txt") if line.strip()]
    videos = []
    for name, label, *frames in rows:
        mask = None
        if label == "1":
            mask = np.load(data_dir / "test_frame_mask" / f"{name}.npy", allow_pickle=False)
            n_frames = len(mask)
        elif frames:
            n_frames = int(frames[0])
        elif name in train_frames:
            n_frames = train_frames[name]
        else:
            raise MissingKeyError(
                f"train video {name!r} has no frame count in train_frame_counts.csv"
            )
        videos.append((name, int(label), n_frames, mask))
    return videos


def _global_params(rng, dim):
    """The fixed parts of the model: scene patterns, drift projection, anomaly and look-alike
    directions."""
    shared = rng.normal(0.0, 1.0, dim)
    scenes = 0.6 * shared + 0.8 * rng.normal(0.0, 1.0, (N_SCENES, dim))
    proj = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (LATENT_DIM, dim))
    common = rng.random(dim) < 0.04  # "unusual motion", shared by all types
    specific = rng.random((N_TYPES, dim)) < 0.06  # each type's own sub-space
    anomaly = (common | specific) * rng.uniform(0.5, 1.5, (N_TYPES, dim))
    half = rng.random((N_TYPES, dim)) < 0.5
    # partial copies: shared part + half the rest
    lookalike = anomaly * (common | (specific & half))
    return scenes.astype(np.float32), proj.astype(np.float32), anomaly, lookalike


def _clip_intensity(mask, n_clips):
    """mask: (n_frames,) 0/1 -> (n_clips,) fraction of anomalous frames in each 16-frame clip."""
    return mask[: n_clips * CLIP_LEN].reshape(n_clips, CLIP_LEN).mean(axis=1)


def _lookalike_events(rng, n_clips):
    """(n_clips,) intensity of normal look-alike events: short ramps started at random clips."""
    starts = (rng.random(n_clips) < LOOKALIKE_P).astype(float)
    kernel = [0.5, 1.0, 1.0, 0.5] if rng.random() < 0.5 else [0.5, 1.0, 0.5]
    return np.minimum(np.convolve(starts, kernel)[:n_clips], 1.0)


def _video_features(rng, params, scene, n_clips, mask, scale=1.0):
    """-> (n_clips, dim) float32 features of one video (x scale on top of SCALE)."""
    scenes, proj, anomaly, lookalike = params
    shocks = rng.normal(0.0, 1.0, (n_clips, LATENT_DIM))
    shocks[1:] *= np.sqrt(1.0 - RHO**2)  # stationary AR(1) with unit variance
    latent = lfilter([1.0], [1.0, -RHO], shocks, axis=0).astype(np.float32)
    pre = rng.standard_normal((n_clips, scenes.shape[1]), dtype=np.float32)
    pre *= NOISE
    pre += scenes[scene]
    # einsum, not BLAS: many tiny matmuls stall on a busy machine's OpenBLAS threads
    pre += np.einsum("tk,kd->td", DRIFT * latent, proj)
    amp = rng.uniform(*AMP)
    kind, other = rng.integers(N_TYPES, size=2)
    if mask is not None:
        pre += (_clip_intensity(mask, n_clips)[:, None] * amp * anomaly[kind]).astype(np.float32)
    pre += (
        _lookalike_events(rng, n_clips)[:, None] * LOOKALIKE_AMP * amp * lookalike[other]
    ).astype(np.float32)
    np.maximum(pre, 0.0, out=pre)
    pre *= SCALE
    # a separate multiply, so that scale 1.0 leaves the default set's bytes as they were
    if scale != 1.0:
        pre *= np.float32(scale)
    return pre


def make_demo_features(out_path, data_dir="data/shanghaitech", dim=1024, seed=0, scale=1.0):
    """Writes the demo h5 at out_path (atomically) -> {"n_videos", "n_clips", "seconds", "path"}.

    scale multiplies every row (1.0: norm ~3.5; benchmarks/stage1_recipe.py goes from 0.1 to 10 to
    show the official recipe's collapse on large rows, docs/stage1_recipe.md).
    Deterministic for a seed: each video draws from its own generator keyed by (seed, name), so the
    bytes of every array depend only on seed, dim and the video's name and mask.
    """
    start = time.perf_counter()
    videos = _read_videos(_resolve(data_dir))
    params = _global_params(np.random.default_rng([seed, 0]), dim)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(out_path.name + ".tmp")
    n_clips = 0
    with h5py.File(tmp_path, "w") as h5:
        h5.attrs.update({"generator": "mist-vad datasets/demo.py", "seed": seed, "dim": dim})
        if scale != 1.0:
            h5.attrs["scale"] = scale
        for name, label, n_frames, mask in videos:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            scene = int(name.split("_")[0]) - 1
            feats = _video_features(rng, params, scene, n_frames // CLIP_LEN, mask, scale)
            h5.create_dataset(f"{name}.npy", data=feats)
            n_clips += len(feats)
    os.replace(tmp_path, out_path)
    return {
        "n_videos": len(videos),
        "n_clips": n_clips,
        "seconds": round(time.perf_counter() - start, 2),
        "path": str(out_path),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m datasets.demo OUT.h5")
    print(make_demo_features(sys.argv[1]))
