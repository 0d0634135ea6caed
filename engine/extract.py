"""Clip features from videos or a frames h5 with a Kinetics I3D, a Sports-1M C3D, a fine-tuned
MIST, a CLIP image encoder or a torchvision video model (the --encoder records of
engine/encoders.py).

tools/extract_features.py is the command line; `extract_features` is its procedure, `extract` the
extraction itself (the same report on every rank of a torchrun job).

One feature per whole 16-frame clip (the trailing n % 16 frames are dropped, as in the official
features):
  i3d   Kinetics I3D (any I3D layout of models/weights.py): mixed_5c global-average pooled, 1024-d
  c3d   Sports-1M C3D with its fc6 (DavideA c3d.pickle): pool5 -> fc6 -> ReLU, 4096-d as the public
        C3D features (models/c3d_fc6.py)
  mist  a MIST checkpoint (stage 2; ours carry their config, others take --cfg's MODEL keys): global
        average of the SGA-weighted feature map (1 + A) * F5, 1024-d (I3D) or 512-d (C3D: MIST-C3D
        has no fc6)
  clip_vit_b16, clip_vit_l14  OpenAI CLIP's image tower (open_clip): the mean of the clip's 16
        frame embeddings, 512-d / 768-d, at CLIP's own preprocessing (docs/clip.md);
        --frame-features also writes each frame's embedding: h5 dataset 'frames/<video>.npy' /
        '<video>_<backbone>_frames.npy', (16 * n_clips, D) or (16 * n_clips, crops, D), written
        before the video's clip features (whose key marks it finished)
  i3d_r50  the I3D ResNet-50 of the RTFM-style features (i3d_r50_kinetics.pth): layer4 global
        average, 2048-d, at their 256x340 resize and ten 224 crops; '<video>_i3d.npy'
        (docs/i3d_r50.md)
  r2plus1d_18, s3d, mvit_v2_s, swin3d_t  torchvision's Kinetics-400 models (their published files):
        the input of their classifier, 512 / 1024 / 768 / 768-d, at their own test transform
        (docs/backbones.md)
Frames go through the backbone's test transform (as engine/evaluate.py: DATA.DATASET,
DATA.TEST_SIZE), leave the loader as uint8 and are normalised on the device (the float32 values of
the CPU transform, bit for bit).
--crops 10: the 4 corners + centre and their mirrors (TestTransform ten_crop); --crops 5: the first
five.
--format h5: the official layout, datasets '<video>.npy' of shape (n_clips, D) or (n_clips, crops,
D);
--format npy: an RTFM-style folder, '<video>_<backbone>.npy' per video and 'features.list'. Stage 1
reads
either through DATA.FEATURES (DATA.FEATURE_DIM = the dimension printed at the end). A video's clips
are encoded in batches of TEST.BATCH_SIZE clips of that video only (0..B-1, B..2B-1, ...), so its
features do not depend on which videos share a process or a loader worker: the same bytes on any
number of processes (on the CPU with the same number of threads; on GPUs cuDNN's autotuner may pick
another algorithm on another GPU, a rounding difference). Resumable: a video is written only when
all its clips are done (h5: under a temporary key, then renamed; npy: a temporary file renamed), so
a killed run leaves a readable output of finished videos, and the same command skips them. The
settings are stored with the output (h5 attribute / extract_config.json); other settings are refused
(--force starts over). torchrun, any number of processes and machines (a gloo group: only a few
objects are exchanged): rank 0 checks the output and merges what a killed run left, then each rank
takes every WORLD_SIZE-th unfinished video in name order. h5: ranks write
'<out>.parts/rank-<r>-of-<n>.h5' (the same per-video commits), rank 0 copies them into <out> at the
end and deletes them; npy: ranks write into the folder, rank 0 writes features.list at the end. A
restart on any number of processes merges the parts first, so no finished video is encoded again.
--timeout-hours: how long a rank waits for the others."""

import datetime
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import torch
import torch.distributed as dist
from utils.progress import bar as progress_bar

from datasets.frames import open_frames
from datasets.splits import read_split
from engine.encoders import ENCODERS, build_encoder
from models.loading import inference_amp
from utils.checkpoint import missing_dirs, remove_empty_dirs
from utils.distributed import broadcast_object, cleanup, gather_dicts
from utils.env import resolve_device
from utils.errors import ExistsError, InputError, UserError
from utils.video_scoring import autocast, worker_segments

logger = logging.getLogger("mist.extract")
__all__ = ["ENCODERS", "extract", "extract_features"]
PARTIAL = ".partial"  # h5 key suffix of a video being written
PARTS = ".parts"  # suffix of the folder of the ranks' h5 parts
FRAMES = "frames"  # h5 group of the per-frame features (--frame-features), '<video>.npy' in it


class H5Writer:
    """Official-layout h5, appended one finished video at a time (module docstring)."""

    def __init__(self, path, config):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "a") as f:
            _check_config(f.attrs.get("extract_config"), config, self.path)
            f.attrs["extract_config"] = json.dumps(config, sort_keys=True)
            # a video interrupted mid-write
            for key in [k for k in f.keys() if k.endswith(PARTIAL)]:
                del f[key]
            for key in [k for k in f.get(FRAMES, {}) if k.endswith(PARTIAL)]:
                del f[FRAMES][key]
            self.finished = {k[: -len(".npy")] for k in f.keys() if k.endswith(".npy")}

    def write(self, name, features, frames=None):
        """Commits one video: its per-frame features first (if any), then its clip features, whose
        key marks the video finished."""
        with h5py.File(self.path, "a") as f:
            if frames is not None:
                _commit(f.require_group(FRAMES), f"{name}.npy", frames)
            _commit(f, f"{name}.npy", features)
        self.finished.add(name)


def _commit(group, key, data):
    """Writes `data` as group[key] under a temporary key, then renames it (an older copy, left by a
    run killed between a video's two commits, is replaced)."""
    if key in group:
        del group[key]
    if isinstance(data, h5py.Dataset):
        data.file.copy(data, group, name=key + PARTIAL)
    else:
        group.create_dataset(key + PARTIAL, data=data)
    group.move(key + PARTIAL, key)


class NpyWriter:
    """RTFM-style folder: '<video>_<backbone>.npy' files and 'features.list' naming the finished
    ones.

    Every file present is complete (written as '.tmp' and renamed). keep_list=False (a rank of a
    torchrun job): no list, rank 0 writes it from the files present at the end (write_list). The
    per-frame features of a video (--frame-features) are '<video>_<backbone>_frames.npy', written
    before its clip features."""

    def __init__(self, folder, backbone, keep_list=True):
        self.folder, self.suffix, self.keep_list = Path(folder), f"_{backbone}.npy", keep_list
        self.list_path = self.folder / "features.list"
        self.finished = {p.name[: -len(self.suffix)] for p in self.folder.glob(f"*{self.suffix}")}

    def check(self, config):
        """Rank 0, before any rank writes: the settings, stale temporary files, the list."""
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "extract_config.json"
        _check_config(meta.read_text() if meta.exists() else None, config, self.folder)
        meta.write_text(json.dumps(config, sort_keys=True))
        # a video interrupted mid-write
        for pattern in (f"*{self.suffix}.tmp", f"*{self.suffix[:-4]}_frames.npy.tmp"):
            for stale in self.folder.glob(pattern):
                stale.unlink()
        self.write_list()

    def write(self, name, features, frames=None):
        if frames is not None:
            _save(self.folder / f"{name}{self.suffix[:-4]}_frames.npy", frames)
        _save(self.folder / f"{name}{self.suffix}", features)
        self.finished.add(name)
        if self.keep_list:
            self.write_list()

    def write_list(self):
        lines = "".join(f"{n}{self.suffix}\n" for n in sorted(self.finished))
        self.list_path.with_name("features.list.tmp").write_text(lines)
        os.replace(self.list_path.with_name("features.list.tmp"), self.list_path)


def _save(target, array):
    """np.save to a temporary file, then renamed to `target`."""
    with open(target.with_name(target.name + ".tmp"), "wb") as f:
        np.save(f, array)
    os.replace(target.with_name(target.name + ".tmp"), target)


def _check_config(stored, config, where):
    if stored is None:
        return
    stored = json.loads(stored)
    changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
    if changed:
        diff = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ExistsError(
            f"{where} holds features extracted with other settings ({diff}); resuming would mix "
            "them: pass --force to start over or choose another output"
        )


def merge_parts(writer, config):
    """Copies every finished video of the part files next to writer's h5 into it (each dataset as it
    is, under a temporary key, then renamed), then deletes the parts."""
    folder, merged = Path(f"{writer.path}{PARTS}"), 0
    for part in sorted(folder.glob("rank-*.h5")) if folder.is_dir() else []:
        try:
            src = h5py.File(part, "r")
        except OSError as err:
            logger.warning(
                "%s cannot be read (%s; killed while writing?): its videos are extracted again",
                part,
                err,
            )
            part.unlink()
            continue
        with src, h5py.File(writer.path, "a") as dst:
            _check_config(src.attrs.get("extract_config"), config, part)
            for key in sorted(k for k in src.keys() if k.endswith(".npy") and k not in dst):
                # the per-frame features first: the clip features' key marks a video finished
                if key in src.get(FRAMES, {}):
                    _commit(dst.require_group(FRAMES), key, src[FRAMES][key])
                _commit(dst, key, src[key])
                writer.finished.add(key[: -len(".npy")])
                merged += 1
        part.unlink()
    if folder.is_dir():
        shutil.rmtree(folder)
        logger.info("merged %d videos of the processes' parts into %s", merged, writer.path)


def prepare_output(out, fmt, config, backbone, force, rank):
    """Rank 0 checks (with force: deletes) the output and merges a killed run's parts; every rank
    gets the finished videos, or rank 0's error, which every rank then raises -> set of finished
    video names."""
    result = None
    if rank == 0:
        try:
            result = sorted(_prepare(Path(out), fmt, config, backbone, force))
        except UserError as err:
            result = err
    result = broadcast_object(result)
    if isinstance(result, UserError):
        raise result
    return set(result)


def _prepare(out, fmt, config, backbone, force):
    for path in (out, Path(f"{out}{PARTS}")) if force else ():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if fmt == "npy":
        writer = NpyWriter(out, backbone)
        writer.check(config)
    else:
        writer = H5Writer(out, config)
        merge_parts(writer, config)
    return writer.finished


def rank_writer(out, fmt, config, backbone, rank, world):
    """-> this rank's writer: the output itself for one process, else its part file / the shared
    folder."""
    if fmt == "npy":
        return NpyWriter(out, backbone, keep_list=world == 1)
    return H5Writer(
        out if world == 1 else Path(f"{out}{PARTS}") / f"rank-{rank}-of-{world}.h5", config
    )


def init_ranks(device_name, timeout_hours):
    """-> (rank, world size, device): one process, or a torchrun rank (a gloo group, the rank's
    GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    # gloo even on GPUs: the ranks exchange only the finished list and their counts, and one with a
    # longer
    # share may keep the others waiting at the end for hours
    dist.init_process_group("gloo", timeout=datetime.timedelta(hours=timeout_hours))
    return dist.get_rank(), world, device


def split_short(frames, names):
    """-> (videos of `names` with a whole 16-frame clip, videos without)."""
    short = {n for n in names if frames.num_segments(n) == 0}
    return [n for n in names if n not in short], sorted(short)


def extract(
    source,
    out,
    kind,
    weights,
    cfg,
    fmt="h5",
    crops=1,
    names=None,
    force=False,
    progress=True,
    timeout_hours=24.0,
    per_frame=False,
):
    """Extracts the features of every video of `source` (or `names`) into `out` -> report dict (the
    same on every rank of a torchrun job). per_frame: also each frame's features (an encoder with
    Encoder.frames), in the group 'frames' of the h5 / '<video>_<backbone>_frames.npy'."""
    rank, world, device = init_ranks(cfg.DEVICE, timeout_hours)
    options = SimpleNamespace(fmt=fmt, crops=crops, names=names, force=force, per_frame=per_frame)
    try:
        return _extract(source, out, kind, weights, cfg, options, progress, rank, world, device)
    finally:
        cleanup()


def _extract(source, out, kind, weights, cfg, options, progress, rank, world, device):
    start = time.time()
    fmt, crops, names, force = options.fmt, options.crops, options.names, options.force
    encoder = build_encoder(kind, weights, cfg, crops)
    if options.per_frame and not encoder.frames:
        raise InputError(
            f"--frame-features: the {kind} encoder encodes whole clips and has no per-frame "
            "features (the clip_* encoders have): drop --frame-features"
        )
    backbone, transform = encoder.name, encoder.transform
    view = tuple(transform(np.zeros((16, 240, 320, 3), np.uint8)).shape)
    amp = inference_amp(cfg.INFER.AMP, device)
    config = {
        "encoder": kind,
        "backbone": backbone,
        "weights": Path(weights).name,
        "dim": encoder.dim,
        "weights_bytes": Path(weights).stat().st_size,
        "crops": crops,
        "input": list(view[-4:]),
        "amp": amp,
        "dataset": cfg.DATA.DATASET,
    }
    if options.per_frame:
        # only then: outputs of earlier versions resume with the same settings
        config["frames"] = True
    frames = open_frames(
        source, kind=cfg.DATA.FRAMES_KIND, names=names, root=cfg.DATA.FRAMES_ROOT or None
    )
    new = [Path(out)] + missing_dirs(out) if not Path(out).exists() else []
    finished = prepare_output(out, fmt, config, backbone, force, rank)
    job = SimpleNamespace(
        out=out,
        fmt=fmt,
        kind=kind,
        backbone=backbone,
        config=config,
        encoder=encoder,
        transform=transform,
        view=view,
        amp=amp,
        frames=frames,
        finished=finished,
        cfg=cfg,
        per_frame=options.per_frame,
        progress=progress,
        rank=rank,
        world=world,
        device=device,
        start=start,
    )
    try:
        return _extract_videos(job)
    except BaseException:
        # an output this call created, still without a finished video
        if rank == 0 and world == 1 and new:
            _remove_if_unfinished(out, fmt, backbone, new)
        raise


def _remove_if_unfinished(out, fmt, backbone, new):
    """Deletes an output holding no finished video, and the folders made for it (nothing
    half-written)."""
    out = Path(out)
    if fmt == "npy":
        if out.is_dir() and not any(out.glob(f"*_{backbone}.npy")):
            shutil.rmtree(out)
    elif out.is_file():
        with h5py.File(out, "r") as f:
            empty = not any(k.endswith(".npy") for k in f.keys())
        if empty:
            out.unlink()
    remove_empty_dirs(new[1:])


def _extract_videos(job):
    """Encodes this rank's share of the unfinished videos of `job` (what _extract set up), merges
    the ranks' outputs -> the summary."""
    frames, rank, world = job.frames, job.rank, job.world
    # the same list on every rank: the unfinished videos in name order, every world-th one for this
    # rank
    unfinished = [n for n in frames.names if n not in job.finished]
    todo, short = split_short(frames, unfinished[rank::world])
    done = len(frames.names) - len(unfinished)
    logger.info(
        "%s encoder (%s, %d-d, %d crop(s), input %s, amp %s) on %s x %d: %d videos to extract, %d "
        "already done",
        job.kind,
        job.backbone,
        job.encoder.dim,
        job.config["crops"],
        job.view[-4:],
        job.amp,
        job.device,
        world,
        len(unfinished),
        done,
    )
    writer = rank_writer(job.out, job.fmt, job.config, job.backbone, rank, world)
    clips = run_encoder(
        job.encoder,
        frames,
        todo,
        writer,
        job.cfg,
        job.device,
        job.amp,
        job.progress and rank == 0,
        job.per_frame,
    )
    ranks = gather_dicts({rank: (len(todo), clips, short)})
    ranks = [ranks[r] for r in range(world)]
    # every rank is done: rank 0 writes the list / merges the parts
    if rank == 0 and world > 1 and job.fmt == "npy":
        NpyWriter(job.out, job.backbone).write_list()
    elif rank == 0 and world > 1:
        merge_parts(H5Writer(job.out, job.config), job.config)
    short = sorted(n for r in ranks for n in r[2])
    if short:
        logger.warning(
            "%d video(s) have fewer than 16 frames and get no features: %s", len(short), short[:5]
        )
    return {
        "out": str(Path(job.out) / "features.list" if job.fmt == "npy" else job.out),
        "dim": job.encoder.dim,
        "crops": job.config["crops"],
        "videos_written": sum(r[0] for r in ranks),
        "videos_already_done": done,
        "too_short": short,
        "clips": sum(r[1] for r in ranks),
        "clips_per_rank": [r[1] for r in ranks],
        "world_size": world,
        "seconds": round(time.time() - job.start, 2),
    }


class VideoBatches(torch.utils.data.IterableDataset):
    """Yields (video index, first segment, uint8 clips (k, ...)), k <= batch: a video's clips
    0..batch-1, batch..2*batch-1, ... (module docstring). Each DataLoader worker takes every
    num_workers-th video."""

    def __init__(self, frames, names, transform, batch):
        self.frames, self.names, self.transform, self.batch = frames, list(names), transform, batch

    def __iter__(self):
        seg = self.frames.segment_len
        for v, first, frames in worker_segments(self.frames, self.names, self.batch):
            yield (
                v,
                first,
                torch.stack(
                    [
                        self.transform(frames[k * seg : (k + 1) * seg])
                        for k in range(len(frames) // seg)
                    ]
                ),
            )


class VideoBuffer:
    """One video's features as its batches arrive: (n_clips, views, D) and, per_frame, (n_clips,
    T, views, D); `done` once every clip is in."""

    def __init__(self, n_clips, per_frame):
        self.n, self.per_frame, self.filled = n_clips, per_frame, 0
        self.clips = self.frames = None

    def add(self, first, feats, frames):
        """feats: (k, views, D); frames: (k, T, views, D) or None -> whether the video is done."""
        if self.clips is None:
            self.clips = np.empty((self.n, *feats.shape[1:]), np.float32)
            if frames is not None:
                self.frames = np.empty((self.n, *frames.shape[1:]), np.float32)
        self.clips[first : first + len(feats)] = feats
        if frames is not None:
            self.frames[first : first + len(feats)] = frames
        self.filled += len(feats)
        return self.filled == self.n

    def arrays(self):
        """-> (clip features (n_clips, D) or (n_clips, views, D), per-frame (n_clips * T, ...) or
        None): the view axis only with several views."""
        squeeze = self.clips.shape[1] == 1
        clips = self.clips[:, 0] if squeeze else self.clips
        if self.frames is None:
            return clips, None
        frames = self.frames.reshape(-1, *self.frames.shape[2:])
        return clips, frames[:, 0] if squeeze else frames


def _encode(module, clips, views, per_frame):
    """normalised clips (k * views, ...) -> (k, views, D) float32 numpy and, per_frame, the frames'
    (k, T, views, D)."""
    if not per_frame:
        feats = module(clips)
        return feats.float().view(-1, views, feats.shape[-1]).cpu().numpy(), None
    feats, frames = module(clips, frames=True)
    frames = frames.float().view(-1, views, frames.shape[1], frames.shape[2]).transpose(1, 2)
    return feats.float().view(-1, views, feats.shape[-1]).cpu().numpy(), frames.cpu().numpy()


@torch.inference_mode()
def run_encoder(encoder, frames, todo, writer, cfg, device, amp, progress, per_frame=False):
    """Encodes every clip of `todo` with the Encoder `encoder` (engine/encoders.py); each video is
    written as soon as its last batch is done (with per_frame, its frames' features too) ->
    clips."""
    module = encoder.module.to(device)
    counts = {n: frames.num_segments(n) for n in todo}
    buffers = {}
    loader = torch.utils.data.DataLoader(
        VideoBatches(frames, todo, encoder.transform.uint8(), cfg.TEST.BATCH_SIZE),
        batch_size=None,
        num_workers=cfg.DATA.NUM_WORKERS,
        pin_memory=device.type == "cuda",
    )
    bar = progress_bar(
        total=sum(counts.values()),
        unit="clip",
        desc="features",
        enabled=progress,
        dynamic_ncols=True,
    )
    for video_idx, first, clips in loader:
        name, views = todo[video_idx], clips.shape[1] if clips.dim() == 6 else 1
        clips = encoder.normalise(clips.to(device, non_blocking=True))
        if device.type == "cpu":
            # the float path's layout: another memory format takes other CPU kernels, other bits
            clips = clips.contiguous()
        with autocast(device, amp):
            feats, per = _encode(
                module, clips.flatten(0, 1) if views > 1 else clips, views, per_frame
            )
        buffer = buffers.setdefault(name, VideoBuffer(counts[name], per_frame))
        if buffer.add(first, feats, per):
            features, frame_features = buffers.pop(name).arrays()
            if frame_features is None:
                writer.write(name, features)
            else:
                writer.write(name, features, frame_features)
            bar.set_postfix(videos=len(writer.finished))
        bar.update(len(feats))
    bar.close()
    return sum(counts.values())


def extract_features(
    cfg,
    source,
    out,
    encoder,
    weights,
    fmt="h5",
    crops=1,
    names=None,
    force=False,
    progress=True,
    timeout_hours=24.0,
    per_frame=False,
):
    """tools/extract_features.py: `extract` of the videos of the split file `names` (None: all), its
    log on stderr and (rank 0) the summary on stdout -> the report."""
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="[extract] %(message)s",
        stream=sys.stderr,
    )
    videos = [v.name for v in read_split(names, cfg.DATA.DATASET, "--names")] if names else None
    try:
        report = extract(
            source,
            out,
            encoder,
            weights,
            cfg,
            fmt,
            crops,
            videos,
            force,
            progress,
            timeout_hours,
            per_frame,
        )
    except KeyboardInterrupt:
        print(
            f"interrupted: the finished videos are in {out} (and {out}.parts under torchrun); run "
            "the same command again, with any number of processes, to extract the rest",
            file=sys.stderr,
        )
        raise
    if rank == 0:
        print(summary(report))
    return report


def summary(report):
    """-> the line printed at the end of a run."""
    shares = " + ".join(map(str, report["clips_per_rank"]))
    on_ranks = (
        f" ({shares} on {report['world_size']} processes)" if report["world_size"] > 1 else ""
    )
    return (
        f"wrote {report['out']}: {report['videos_written']} videos ({report['videos_already_done']}"
        f" were done), {report['clips']} clips{on_ranks}, {report['dim']}-d features (set"
        f" DATA.FEATURE_DIM {report['dim']}) in {report['seconds']} s"
    )
