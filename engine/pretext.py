"""Self-supervised pretraining of a video encoder by pace prediction, on unlabelled frames.

`pretrain(cfg, out)` trains MODEL.BACKBONE (i3d or c3d, at MODEL.WIDTH, from its initialisation)
to tell at which frame stride of PRETEXT.STRIDES (default 1, 2, 4: normal speed, 2x and 4x fast
forward) a 16-frame clip was taken (datasets/pace.py), a 3-way linear classifier on the global
average of the last feature map (the features the `i3d` encoder of engine/extract.py writes). Pace
(or playback-speed) prediction is a published self-supervised task (SpeedNet, Benaim et al., CVPR
2020; pace prediction, Wang et al., ECCV 2020): to solve it a network must see how fast things
move, which makes its features motion-aware without any label. It reads only the frames of the
DATA.TRAIN_SPLIT videos (DATA.FRAMES), never a label, a mask or a test video.

Training: PRETEXT.ITERS iterations of PRETEXT.BATCH_SIZE clips (balanced over the strides),
cross-entropy, Adam at PRETEXT.LR, the stage-2 train transform (DATA.TRAIN_SIZE crops, flips) and
STAGE2.AMP. Then the pace accuracy of PRETEXT.EVAL_CLIPS other draws of the same videos at the
test transform (DATA.TEST_SIZE) is measured: chance is 1 / len(strides).

Writes out/encoder.pth (written last, atomically: {"kind": "pretext", "model": the backbone's
tensors as 'backbone.*', "cfg", "report"}), which loads as MODEL.PRETRAINED of stage 2 (SGA and head
left at their initialisation) and as the weights of `tools/extract_features.py --encoder i3d`
(models/weights.py, format `mist`), and out/pretext.json (the report)."""

import json
import logging
import time
from pathlib import Path

import torch
from torch import nn

from datasets.build import open_frame_source, stage2_transforms
from datasets.pace import PaceClips
from datasets.splits import read_split
from datasets.transforms import normalise
from models.mist import BACKBONES
from utils.checkpoint import save_checkpoint, write_json
from utils.env import resolve_device
from utils.errors import ExistsError, InputError
from utils.video_scoring import autocast

logger = logging.getLogger("mist.pretext")
ENCODER_FILE = "encoder.pth"
BACKBONES_WITH_PACE = ("i3d", "c3d")
LOG_EVERY = 25


class PaceModel(nn.Module):
    """backbone (i3d / c3d of models/mist.py) -> global average of F5 -> Linear(C, n strides)."""

    def __init__(self, backbone, width, n_classes):
        super().__init__()
        if backbone not in BACKBONES_WITH_PACE:
            raise InputError(
                f"MODEL.BACKBONE {backbone!r}: the pace pretext trains {BACKBONES_WITH_PACE}; the"
                " torchvision backbones come with published Kinetics weights"
            )
        self.backbone = BACKBONES[backbone](width=width)
        self.classifier = nn.Linear(self.backbone.out_channels, n_classes)

    def forward(self, clips):
        return self.classifier(self.backbone(clips)[0].mean(dim=(2, 3, 4)))


def pace_clips(cfg, transform, length, seed):
    """-> PaceClips of the DATA.TRAIN_SPLIT videos of DATA.FRAMES."""
    videos = read_split(cfg.DATA.TRAIN_SPLIT, cfg.DATA.DATASET, "DATA.TRAIN_SPLIT")
    frames = open_frame_source(cfg, videos)
    names = [v.name for v in videos]
    return PaceClips(frames, names, cfg.PRETEXT.STRIDES, transform, length, seed)


def _loader(cfg, dataset, batch):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=False,  # every item draws its own video and frames; i % n balances the classes
        num_workers=cfg.DATA.NUM_WORKERS,
        persistent_workers=False,
    )


@torch.inference_mode()
def pace_accuracy(model, loader, device, backbone, n_classes):
    """-> (accuracy, confusion [true][predicted] counts) over the loader's clips."""
    model.eval()
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long)
    for clips, labels in loader:
        predicted = model(normalise(clips.to(device), backbone)).argmax(1).cpu()
        confusion += torch.bincount(labels * n_classes + predicted, minlength=n_classes**2).view(
            n_classes, n_classes
        )
    return confusion.diag().sum().item() / max(confusion.sum().item(), 1), confusion.tolist()


def pretrain(cfg, out, force=False):
    """Pace pretraining of cfg's encoder into `out` (see the module docstring) -> the report."""
    out, p = Path(out), cfg.PRETEXT
    target = out / ENCODER_FILE
    if target.exists() and not force:
        raise ExistsError(f"{target} exists; pass force=True (or delete it) to pretrain again")
    start, device = time.time(), resolve_device(cfg.DEVICE)
    torch.manual_seed(cfg.SEED)
    n = len(p.STRIDES)
    train_tf, test_tf = stage2_transforms(cfg)
    train_tf.normalise, test_tf = False, test_tf.uint8()
    train_set = pace_clips(cfg, train_tf, p.ITERS * p.BATCH_SIZE, cfg.SEED)
    eval_set = pace_clips(cfg, test_tf, p.EVAL_CLIPS, cfg.SEED + 1_000_003)
    model = PaceModel(cfg.MODEL.BACKBONE, cfg.MODEL.WIDTH, n).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.LR)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.STAGE2.AMP == "fp16")
    logger.info(
        "pace pretext: %s at width %g, strides %s, %d iterations of %d clips from %d videos, %s",
        cfg.MODEL.BACKBONE,
        cfg.MODEL.WIDTH,
        list(p.STRIDES),
        p.ITERS,
        p.BATCH_SIZE,
        len(train_set.counts),
        device,
    )
    model.train()
    losses, hits, seen, curve = 0.0, 0, 0, []
    for it, (clips, labels) in enumerate(_loader(cfg, train_set, p.BATCH_SIZE), 1):
        clips, labels = normalise(clips.to(device), cfg.MODEL.BACKBONE), labels.to(device)
        with autocast(device, cfg.STAGE2.AMP):
            logits = model(clips)
            loss = nn.functional.cross_entropy(logits.float(), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"pace pretext: the loss is {loss.item()} at iteration {it}; lower PRETEXT.LR "
                f"(now {p.LR}) or set STAGE2.AMP off"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses += loss.item() * len(labels)
        hits += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        if it % LOG_EVERY == 0 or it == p.ITERS:
            curve.append({"iteration": it, "loss": losses / seen, "accuracy": hits / seen})
            logger.info(
                "pace iteration %d: loss %.4f  accuracy %.3f", it, *list(curve[-1].values())[1:]
            )
            losses, hits, seen = 0.0, 0, 0
    accuracy, confusion = pace_accuracy(
        model, _loader(cfg, eval_set, p.BATCH_SIZE), device, cfg.MODEL.BACKBONE, n
    )
    report = {
        "task": "pace",
        "strides": list(p.STRIDES),
        "iterations": p.ITERS,
        "batch_size": p.BATCH_SIZE,
        "videos": len(train_set.counts),
        "train_curve": curve,
        "eval_accuracy": accuracy,
        "eval_confusion": confusion,
        "chance": 1.0 / n,
        "seconds": round(time.time() - start, 1),
    }
    logger.info(
        "pace accuracy on %d held-out draws: %.3f (chance %.3f); %.0f s",
        p.EVAL_CLIPS,
        accuracy,
        1.0 / n,
        report["seconds"],
    )
    state = {f"backbone.{k}": v.detach().cpu() for k, v in model.backbone.state_dict().items()}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "pretext.json", report)
    save_checkpoint(target, kind="pretext", model=state, cfg=cfg.dump(), report=json.dumps(report))
    return report
