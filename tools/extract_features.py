"""Clip features from videos or a frames h5 with a Kinetics I3D, a Sports-1M C3D or a fine-tuned MIST encoder.

    python tools/extract_features.py /data/SHT/videos features/SHT_I3D.h5 --encoder i3d --weights model_rgb.pth
    python tools/extract_features.py frames/ucf.h5 features/UCF_C3D.h5 --encoder c3d --weights c3d.pickle \
        --cfg configs/ucf_crime/c3d_stage1.yaml
    python tools/extract_features.py frames/sht.h5 features/sht_mist_i3d --encoder mist --format npy --crops 10 \
        --weights output/sht_i3d_stage2/checkpoints/best.pth --cfg configs/shanghaitech/i3d_stage2.yaml

One feature per whole 16-frame clip (the trailing n % 16 frames are dropped, as in the official features):
  i3d   Kinetics I3D (any I3D layout of models/weights.py): mixed_5c global-average pooled, 1024-d
  c3d   Sports-1M C3D with its fc6 (DavideA c3d.pickle): pool5 -> fc6 -> ReLU, 4096-d as the public C3D
        features (models/c3d_fc6.py)
  mist  a MIST checkpoint (stage 2; ours carry their config, others take --cfg's MODEL keys): global average
        of the SGA-weighted feature map (1 + A) * F5, 1024-d (I3D) or 512-d (C3D: MIST-C3D has no fc6)
Frames go through the backbone's test transform (as tools/test.py: DATA.DATASET, DATA.TEST_SIZE). --crops 10:
the 4 corners + centre and their mirrors (TestTransform ten_crop); --crops 5: the first five (no mirrors).
--format h5: the official layout, datasets '<video>.npy' of shape (n_clips, D) or (n_clips, crops, D);
--format npy: an RTFM-style folder, '<video>_<backbone>.npy' per video and 'features.list'. Stage 1 reads
either through DATA.FEATURES (DATA.FEATURE_DIM = the dimension printed at the end).
Resumable: a video is written only when all its clips are done (h5: under a temporary key, then renamed;
npy: a temporary file renamed, then the list rewritten), so an interrupted run (Ctrl-C) leaves a readable
output holding only finished videos, and the same command skips them. The settings are stored with the
output (h5 attribute / extract_config.json); resuming with other settings is refused (--force starts over).
Batches of TEST.BATCH_SIZE clips, DATA.NUM_WORKERS decoding workers, mixed precision on CUDA (INFER.AMP).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.build import stage2_transforms  # noqa: E402
from datasets.frames import open_frames  # noqa: E402
from datasets.splits import read_split  # noqa: E402
from models.c3d_fc6 import load_c3d_fc6  # noqa: E402
from models.i3d import I3D  # noqa: E402
from models.loading import inference_amp, load_mist  # noqa: E402
from models.weights import CheckpointError, load_weights  # noqa: E402
from utils.config import load_cfg  # noqa: E402
from utils.env import resolve_device  # noqa: E402
from utils.video_scoring import SegmentStream, autocast  # noqa: E402

logger = logging.getLogger("mist.extract")
ENCODERS = ("i3d", "c3d", "mist")
PARTIAL = ".partial"  # h5 key suffix of a video being written


class PooledI3D(nn.Module):
    """Vanilla I3D features: clips (B, 3, 16, H, W) -> mixed_5c averaged over time and space (B, 1024)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.dim = backbone.out_channels

    def forward(self, clips):
        return self.backbone(clips)[0].mean(dim=(2, 3, 4))


class PooledMIST(nn.Module):
    """Fine-tuned MIST features: clips -> global average of (1 + A) * F5 (B, C): the head's input."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.dim = model.backbone.out_channels

    def forward(self, clips):
        return self.model(clips)["feature_map"].mean(dim=(2, 3, 4))


def build_encoder(kind, weights, cfg):
    """-> (encoder module in eval mode with .dim, backbone name of its transform)."""
    if kind == "i3d":
        backbone = I3D(width=cfg.MODEL.WIDTH)
        load_weights(backbone, weights)
        return PooledI3D(backbone).eval(), "i3d"
    if kind == "c3d":
        model = load_c3d_fc6(weights, cfg.MODEL.WIDTH)
        model.dim = model.fc6.out_features
        return model, "c3d"
    model, model_cfg = load_mist(weights, cfg)
    return PooledMIST(model).eval(), model_cfg.MODEL.BACKBONE


def make_transform(cfg, backbone, crops):
    """-> frames uint8 (16, H, W, 3) -> (3, 16, h, w) for crops 1, or (crops, 3, 16, c, c)."""
    test_cfg = cfg.clone()
    test_cfg.defrost()
    test_cfg.MODEL.BACKBONE, test_cfg.TEST.TEN_CROP = backbone, crops > 1
    _, transform = stage2_transforms(test_cfg)
    return transform if crops in (1, 10) else (lambda frames: transform(frames)[:crops])


class H5Writer:
    """Official-layout h5, appended one finished video at a time (module docstring)."""

    def __init__(self, path, config):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "a") as f:
            _check_config(f.attrs.get("extract_config"), config, self.path)
            f.attrs["extract_config"] = json.dumps(config, sort_keys=True)
            for key in [k for k in f.keys() if k.endswith(PARTIAL)]:  # a video interrupted mid-write
                del f[key]
            self.finished = {k[:-len(".npy")] for k in f.keys() if k.endswith(".npy")}

    def write(self, name, features):
        with h5py.File(self.path, "a") as f:
            f.create_dataset(f"{name}.npy{PARTIAL}", data=features)
            f.move(f"{name}.npy{PARTIAL}", f"{name}.npy")
        self.finished.add(name)

    def files(self):
        return str(self.path)


class NpyWriter:
    """RTFM-style folder: '<video>_<backbone>.npy' files and 'features.list' naming the finished ones."""

    def __init__(self, folder, config, backbone):
        self.folder, self.suffix = Path(folder), f"_{backbone}.npy"
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "extract_config.json"
        _check_config(meta.read_text() if meta.exists() else None, config, self.folder)
        meta.write_text(json.dumps(config, sort_keys=True))
        self.list_path = self.folder / "features.list"
        listed = self.list_path.read_text().split() if self.list_path.exists() else []
        self.finished = {line[:-len(self.suffix)] for line in listed if (self.folder / line).is_file()}

    def write(self, name, features):
        target = self.folder / f"{name}{self.suffix}"
        with open(target.with_name(target.name + ".tmp"), "wb") as f:
            np.save(f, features)
        os.replace(target.with_name(target.name + ".tmp"), target)
        self.finished.add(name)
        lines = "".join(f"{n}{self.suffix}\n" for n in sorted(self.finished))
        self.list_path.with_name("features.list.tmp").write_text(lines)
        os.replace(self.list_path.with_name("features.list.tmp"), self.list_path)

    def files(self):
        return str(self.list_path)


def _check_config(stored, config, where):
    if stored is None:
        return
    stored = json.loads(stored)
    changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
    if changed:
        diff = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ValueError(f"{where} holds features extracted with other settings ({diff}); resuming would mix them: "
                         "pass --force to start over or choose another output")


def pending_videos(frames, names, finished):
    """-> (videos to extract, videos with no whole 16-frame clip) among `names` not yet finished."""
    todo = [n for n in names if n not in finished]
    short = [n for n in todo if frames.num_segments(n) == 0]
    return [n for n in todo if n not in short], short


def extract(source, out, kind, weights, cfg, fmt="h5", crops=1, names=None, force=False, progress=True):
    """Extracts the features of every video of `source` (or `names`) into `out` -> report dict."""
    start = time.time()
    if crops not in (1, 5, 10):
        raise ValueError(f"--crops {crops}: use 1, 5 (corners + centre) or 10 (and their mirrors)")
    device = resolve_device(cfg.DEVICE)
    encoder, backbone = build_encoder(kind, weights, cfg)
    encoder = encoder.to(device)
    transform = make_transform(cfg, backbone, crops)
    view = tuple(transform(np.zeros((16, 240, 320, 3), np.uint8)).shape)
    amp = inference_amp(cfg.INFER.AMP, device)
    config = {"encoder": kind, "backbone": backbone, "weights": Path(weights).name, "dim": encoder.dim,
              "weights_bytes": Path(weights).stat().st_size, "crops": crops, "input": list(view[-4:]),
              "amp": amp, "dataset": cfg.DATA.DATASET}
    if force and Path(out).is_dir():
        shutil.rmtree(out)
    elif force and Path(out).exists():
        Path(out).unlink()
    frames = open_frames(source, kind=cfg.DATA.FRAMES_KIND, names=names, root=cfg.DATA.FRAMES_ROOT or None)
    writer = H5Writer(out, config) if fmt == "h5" else NpyWriter(out, config, backbone)
    todo, short = pending_videos(frames, frames.names, writer.finished)
    if short:
        logger.warning("%d video(s) have fewer than 16 frames and get no features: %s", len(short), short[:5])
    logger.info("%s encoder (%s, %d-d, %d crop(s), input %s, amp %s) on %s: %d videos to extract, %d already done",
                kind, backbone, encoder.dim, crops, view[-4:], amp, device, len(todo),
                len(frames.names) - len(todo) - len(short))
    clips = run_encoder(encoder, frames, todo, transform, writer, cfg, device, amp, progress)
    return {"out": writer.files(), "dim": encoder.dim, "crops": crops, "videos_written": len(todo),
            "videos_already_done": len(frames.names) - len(todo) - len(short), "too_short": short,
            "clips": clips, "seconds": round(time.time() - start, 2)}


@torch.inference_mode()
def run_encoder(encoder, frames, todo, transform, writer, cfg, device, amp, progress):
    """Batched encoding of every clip of `todo`; each video is written as soon as its last clip is done."""
    counts = {n: frames.num_segments(n) for n in todo}
    buffers, filled = {}, dict.fromkeys(todo, 0)
    loader = torch.utils.data.DataLoader(SegmentStream(frames, todo, transform), batch_size=cfg.TEST.BATCH_SIZE,
                                         num_workers=cfg.DATA.NUM_WORKERS, pin_memory=device.type == "cuda")
    bar = tqdm(total=sum(counts.values()), unit="clip", desc="features", disable=not progress, dynamic_ncols=True)
    for video_idx, seg_idx, clips in loader:
        views = clips.shape[1] if clips.dim() == 6 else 1
        with autocast(device, amp):
            feats = encoder(clips.flatten(0, 1).to(device) if views > 1 else clips.to(device))
        feats = feats.float().view(len(video_idx), views, -1).cpu().numpy()
        for v, s, f in zip(video_idx.tolist(), seg_idx.tolist(), feats):
            name = todo[v]
            buffer = buffers.setdefault(name, np.empty((counts[name], views, f.shape[-1]), np.float32))
            buffer[s] = f
            filled[name] += 1
            if filled[name] == counts[name]:
                writer.write(name, buffers.pop(name)[:, 0] if views == 1 else buffers.pop(name))
                bar.set_postfix(videos=len(writer.finished))
        bar.update(len(video_idx))
    bar.close()
    return sum(counts.values())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="frames h5 (tools/make_h5.py), a folder or list file of videos, or a video")
    parser.add_argument("out", help="output .h5 file (--format h5) or folder (--format npy)")
    parser.add_argument("--encoder", choices=ENCODERS, required=True, help="i3d | c3d (vanilla) | mist (fine-tuned)")
    parser.add_argument("--weights", required=True, help="the encoder's checkpoint")
    parser.add_argument("--format", choices=("h5", "npy"), default="h5", help="official h5 or RTFM-style .npy folder")
    parser.add_argument("--crops", type=int, default=1, choices=(1, 5, 10), help="views per clip (crop axis if > 1)")
    parser.add_argument("--names", default=None, help="split file: extract only its videos (DATA.DATASET format)")
    parser.add_argument("--force", action="store_true", help="delete an existing output and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cfg", default="", help="config for MODEL / DATA / TEST.BATCH_SIZE / INFER.AMP keys")
    parser.add_argument("opts", nargs="*", help="KEY VALUE config overrides")
    return parser.parse_intermixed_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[extract] %(message)s", stream=sys.stderr)
    cfg = load_cfg(args.cfg or None, args.opts)
    try:
        names = [v.name for v in read_split(args.names, cfg.DATA.DATASET, "--names")] if args.names else None
        report = extract(args.source, args.out, args.encoder, args.weights, cfg, args.format, args.crops, names,
                         args.force, not args.no_progress)
    except (CheckpointError, FileNotFoundError, KeyError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    except KeyboardInterrupt:
        print(f"interrupted: the finished videos are in {args.out}; run the same command again to extract the "
              "rest", file=sys.stderr)
        raise SystemExit(130)
    print(f"wrote {report['out']}: {report['videos_written']} videos ({report['videos_already_done']} were done), "
          f"{report['clips']} clips, {report['dim']}-d features (set DATA.FEATURE_DIM {report['dim']}) in "
          f"{report['seconds']} s")
    return report


if __name__ == "__main__":
    main()
