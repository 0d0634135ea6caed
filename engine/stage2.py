"""Stage 2 of MIST: the SGA-boosted I3D/C3D encoder fine-tuned on frames with stage-1 pseudo-labels.

`train(cfg, resume)` runs a Stage2Task through engine.fit, on one process or on every rank of
torchrun (DDP; rank 0 writes the files). Trainer is one optimisation step (AMP, accumulation, DDP
no_sync, the frozen-backbone phase); Stage2Task adds the data, the evaluation and the final step.

Writes to OUTPUT_DIR (rank 0 only): config.yaml, log.txt, metrics.jsonl, tensorboard/,
checkpoints/{last,best}.pth (+ best_val.pth with DATA.VAL_FRACTION), test_scores.npz and
results.json (written last: the run is finished)."""

import contextlib
import logging
import re
import time
import warnings
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from utils.progress import bar as progress_bar

from datasets.build import (
    validation_videos,
    check_device_augment,
    load_splits,
    open_frame_source,
    stage2_train_dataset,
    stage2_transforms,
    test_ground_truth,
    train_masks,
)
from datasets.device_augment import DeviceAugment, JpegClips, collate_jpeg_clips
from datasets.samplers import PairedBatchSampler, rank_share
from datasets.transforms import normalise
from engine.evaluate import score_frames
from engine.fit import SELECTION_NOTE, fit
from models.build import build_model
from models.losses import mist_loss
from models.weights import load_weights
from utils import distributed as dist
from utils import protocol, training
from utils.checkpoint import save_npz, write_json
from utils.config import ConfigError
from utils.env import use_deterministic
from utils.evaluation import evaluate
from utils.logger import setup_logger
from utils.run import FINISHED_MARKER, restore_model
from utils.video_scoring import autocast

logger = logging.getLogger("mist")


def train(cfg, resume=False):
    """-> results.json's content (every rank); every input is read and checked before OUTPUT_DIR is
    written."""
    return fit(Stage2Task(cfg), resume)


class Trainer:
    """The state that changes during training: model (+ DDP wrapper), optimizer, schedule, step
    counter.

    With world_size > 1 this rank's loss is weighted by world_size x its share of the batch
    (datasets.samplers.rank_share): DDP averages the ranks' gradients, so the step equals the
    single-process one on the whole batch even when the shares are uneven (10 videos over 4 ranks).
    """

    def __init__(self, cfg, model, device, world_size, rank=0, train_transform=None):
        self.cfg, self.model, self.device, self.world_size = cfg, model, device, world_size
        # STAGE2.DEVICE_AUGMENT: batches of stored JPEGs, decoded and augmented here
        # (datasets/device_augment.py)
        self.augment = (
            DeviceAugment(train_transform, device)
            if getattr(train_transform, "reads_jpegs", False)
            else None
        )
        self.loss_weight = self.share_weight(cfg, rank, world_size)
        self.optimizer = training.build_optimizer(cfg, model)
        self.scheduler = training.warmup_schedule(self.optimizer, cfg.STAGE2.WARMUP_EPOCHS)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.STAGE2.AMP == "fp16")
        self.global_step, self.frozen, self.ddp = 0, None, None
        # the (DDP-wrapped, STAGE2.COMPILE-compiled) module the step calls; set_phase rebuilds it
        self.forward = model

    @staticmethod
    def share_weight(cfg, rank, world_size):
        """-> world_size x this rank's share of STAGE2.BATCH_SIZE (1.0 for equal shares)."""
        batch = cfg.STAGE2.BATCH_SIZE
        return world_size * rank_share(batch, rank, world_size)[1] / batch

    def set_phase(self, epoch):
        """Backbone frozen for the first STAGE2.FREEZE_EPOCHS; DDP is rebuilt when that changes."""
        frozen = epoch < self.cfg.STAGE2.FREEZE_EPOCHS
        if frozen != self.frozen:
            training.set_backbone_trainable(self.model, not frozen)
            # DDP registers only the parameters that require grad at construction
            if self.world_size > 1:
                ids = [self.device.index] if self.device.type == "cuda" else None
                # buffers are averaged at each evaluation (training.sync_buffers), not broadcast per
                # forward
                self.ddp = DistributedDataParallel(
                    self.model, device_ids=ids, broadcast_buffers=False
                )
            self.forward = training.maybe_compile(self.ddp or self.model, self.cfg.STAGE2.COMPILE)
            self.frozen = frozen
        training.set_train_mode(self.model, backbone_bn_eval=frozen or self.cfg.STAGE2.BN_EVAL)

    def step(self, clips, labels):
        """One iteration: forward/backward; an optimizer step every STAGE2.ACCUMULATE iterations ->
        losses."""
        s2, net = self.cfg.STAGE2, self.ddp or self.model
        # STAGE2.DEVICE_AUGMENT: decoded, augmented and normalised here
        if isinstance(clips, JpegClips):
            clips = self.augment(clips)
        else:
            # (2b * clip_num, 16, h, w, 3) uint8
            clips = clips.flatten(0, 1).to(self.device, non_blocking=True)
        if clips.dtype == torch.uint8:  # STAGE2.UINT8_INPUT: normalised here, on the device
            clips = normalise(clips, self.cfg.MODEL.BACKBONE)
        if s2.CHANNELS_LAST:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        target = labels.flatten(0, 1)[:, 1].to(self.device)
        self.global_step += 1
        sync = self.global_step % s2.ACCUMULATE == 0
        with (
            net.no_sync() if self.ddp is not None and not sync else contextlib.nullcontext(),
            autocast(self.device, s2.AMP),
        ):
            loss, head, guided = mist_loss(
                self.forward(clips), target, s2.CLASS_WEIGHTS, s2.LAMBDA_GUIDED
            )
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"stage-2 loss is {loss.item()} at step {self.global_step}: lower STAGE2.LR "
                "or use STAGE2.AMP bf16 / off"
            )
        self.scaler.scale(loss * (self.loss_weight / s2.ACCUMULATE)).backward()
        # the counter runs across epochs, so accumulation windows never break at epoch ends
        if sync:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s2.GRAD_CLIP)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        # weighted: the mean over ranks of these is the loss of the whole batch
        w = self.loss_weight
        return {
            "loss": loss.item() * w,
            "loss_head": head.item() * w,
            "loss_guided": guided.item() * w,
        }

    def sync(self):
        """Every rank's buffers made equal (collective; before evaluating or saving)."""
        training.sync_buffers(self.model)

    def state(self):
        """-> the stage-2 part of the checkpoint (collective: every rank takes part; buffers
        synchronised first)."""
        self.sync()
        training.average_grads_across_ranks(self.model)
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rng = dist.gather_dicts({dist_rank(): (torch.get_rng_state(), cuda)})
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "global_step": self.global_step,
            "pending_grads": training.pending_grads(self.model),
            "torch_rng": [rng[r][0] for r in sorted(rng)],
            "cuda_rng": [rng[r][1] for r in sorted(rng)],
        }

    def restore(self, state, rank):
        restore_model(self.model, state, self.cfg)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.global_step = state["global_step"]
        training.restore_grads(self.model, state["pending_grads"])
        if rank < len(state["torch_rng"]):
            torch.set_rng_state(state["torch_rng"][rank])
        cuda = state.get("cuda_rng", [])  # absent in checkpoints of earlier versions
        if self.device.type == "cuda" and rank < len(cuda) and cuda[rank] is not None:
            torch.cuda.set_rng_state(cuda[rank], self.device)


def dist_rank():
    return torch.distributed.get_rank() if dist.is_distributed() else 0


def train_one_epoch(trainer, loader, epoch, show):
    """-> {"lr", mean losses, "clips_per_s" (all ranks, data loading included), "peak_memory_gib"
    (CUDA)}."""
    loader.batch_sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)
    trainer.set_phase(epoch)
    totals, lr, clips_seen = {}, trainer.optimizer.param_groups[0]["lr"], 0
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    start = time.perf_counter()
    for clips, labels in progress_bar(
        loader, show, desc=f"epoch {epoch + 1}", leave=False, dynamic_ncols=True
    ):
        for key, value in trainer.step(clips, labels).items():  # .item() waits for the device
            totals[key] = totals.get(key, 0.0) + value / len(loader)
        # (videos, clip_num, 2); clips may be JpegClips
        clips_seen += labels.shape[0] * labels.shape[1]
    seconds = time.perf_counter() - start
    # an epoch may end inside an accumulation window, before any step
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=re.escape("Detected call of `lr_scheduler.step()`")
        )
        trainer.scheduler.step()
    out = {
        "lr": lr,
        **{k: dist.all_reduce_mean(v, trainer.device) for k, v in totals.items()},
        "clips_per_s": (
            dist.all_reduce_mean(clips_seen / seconds, trainer.device) * trainer.world_size
        ),
    }
    if trainer.device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    return out


def build_loader(cfg, dataset, rank, world):
    """The training DataLoader. Its own generator (not the global RNG, which drives dropout) draws
    the workers' base seed, so starting the workers again on resume does not shift dropout."""
    sampler = PairedBatchSampler(
        dataset.normal_indices(),
        dataset.abnormal_indices(),
        cfg.STAGE2.BATCH_SIZE,
        rank,
        world,
        cfg.SEED,
    )
    generator = torch.Generator().manual_seed(cfg.SEED * 1000 + rank)
    collate = collate_jpeg_clips if getattr(dataset.transform, "reads_jpegs", False) else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.DATA.NUM_WORKERS,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
        persistent_workers=cfg.DATA.NUM_WORKERS > 0,
        collate_fn=collate,
    )


def check_sync_bn(cfg, device):
    """STAGE2.SYNC_BN needs CUDA: torch's SyncBatchNorm has no CPU kernel (it would fail inside
    DDP)."""
    if cfg.STAGE2.SYNC_BN and device.type != "cuda":
        raise ConfigError(
            f"STAGE2.SYNC_BN True needs CUDA devices, but this run is on {device}: set "
            "STAGE2.SYNC_BN False (BatchNorm running statistics are still averaged over the ranks "
            "at every evaluation)"
        )


def convert_sync_bn(cfg, model):
    """SyncBatchNorm under torchrun (any world size) when STAGE2.SYNC_BN; C3D has no BatchNorm to
    sync."""
    if not (cfg.STAGE2.SYNC_BN and dist.is_distributed()):
        return model
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        logger.warning(
            "STAGE2.SYNC_BN True has no effect: MODEL.BACKBONE %s has no BatchNorm layer",
            cfg.MODEL.BACKBONE,
        )
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


class Stage2Task:
    """Frames, loaders, the model and its Trainer, the test and validation videos of one stage-2
    run."""

    kind, epoch_bar = "stage2", False

    def __init__(self, cfg):
        self.cfg = cfg
        self.epochs, self.eval_period = cfg.STAGE2.EPOCHS, cfg.STAGE2.EVAL_PERIOD
        self.rank, self.world, self.device = dist.init_distributed(cfg.DEVICE)
        use_deterministic(cfg.DETERMINISTIC)
        setup_logger(rank=self.rank)
        check_sync_bn(cfg, self.device)
        torch.manual_seed(cfg.SEED + self.rank)
        self.train_videos, self.test_videos = load_splits(cfg)
        train_names = {v.name for v in self.train_videos}
        check_device_augment(cfg)
        self.frames = open_frame_source(
            cfg, self.train_videos + [v for v in self.test_videos if v.name not in train_names]
        )
        train_transform, self.test_transform = stage2_transforms(cfg)
        # val: held out of training
        fit_videos, self.val_videos = protocol.carve_validation(
            cfg, self.train_videos, validation_videos(cfg)
        )
        self.val_masks = train_masks(cfg, self.val_videos) if self.val_videos else {}
        dataset = stage2_train_dataset(cfg, self.frames, fit_videos, train_transform)
        self.labels = test_ground_truth(cfg, self.test_videos)
        self.loader = build_loader(cfg, dataset, self.rank, self.world)
        self.model = build_stage2_model(cfg, self.device)
        self.trainer = Trainer(cfg, self.model, self.device, self.world, self.rank, train_transform)

    def describe(self):
        cfg, world = self.cfg, self.world
        line = (
            f"stage 2 ({cfg.MODEL.BACKBONE}) on {cfg.DATA.DATASET}: {len(self.train_videos)} train "
            f"videos ({len(self.loader)} iterations/epoch x {world} rank(s)), "
            f"{len(self.test_videos)} test videos, device {self.device}"
        )
        batch = cfg.STAGE2.BATCH_SIZE
        if world > 1 and batch % world:
            shares = [rank_share(batch, r, world)[1] for r in range(world)]
            line += (
                f"; STAGE2.BATCH_SIZE {batch} per class over {world} ranks: shares of {shares} "
                "videos, losses weighted by share"
            )
        return line

    def train_epoch(self, epoch):
        losses = train_one_epoch(self.trainer, self.loader, epoch, show=self.rank == 0)
        memory = losses.get("peak_memory_gib")
        logger.info(
            "epoch %d: loss %.4f, %.1f clips/s%s",
            epoch + 1,
            losses["loss"],
            losses["clips_per_s"],
            "" if memory is None else f", peak GPU memory {memory:.2f} GiB",
        )
        self.lr = losses.pop("lr")
        return losses

    def scores(self, videos):
        return score_frames(
            self.cfg,
            self.model,
            self.frames,
            videos,
            self.test_transform,
            self.device,
            self.rank,
            self.world,
        )

    def evaluate(self):
        """-> (test metrics, validation metric or {}); every rank scores its share of the videos
        with the same BatchNorm statistics."""
        cfg = self.cfg
        self.trainer.sync()
        metrics = evaluate(
            self.scores(self.test_videos),
            self.labels,
            self.test_videos,
            self.frames.segment_len,
            cfg.TEST.THRESHOLD,
            cfg.TEST.MAX_PAD_CLIPS,
        )
        if not self.val_videos:
            return metrics, {}
        val = protocol.validation_metric(
            self.scores(self.val_videos),
            self.val_videos,
            self.val_masks,
            self.frames.segment_len,
            cfg.TEST.MAX_PAD_CLIPS,
        )
        return metrics, val

    def progress(self, epoch):
        return {"step": self.trainer.global_step, "lr": self.lr}

    def state(self):
        return self.trainer.state()

    def restore(self, state):
        saved_world = len(state["torch_rng"])
        if saved_world != self.world:
            logger.warning(
                "resuming a %d-process run on %d processes: training goes on, but not as the "
                "same run would have (random streams and batch shares differ)",
                saved_world,
                self.world,
            )
        self.trainer.restore(state, self.rank)

    def finish(self, best):
        """Final test metrics of the last model, weight digests of every rank, results.json (rank
        0)."""
        cfg, rank = self.cfg, self.rank
        self.trainer.sync()
        scores = self.scores(self.test_videos)
        metrics = evaluate(
            scores,
            self.labels,
            self.test_videos,
            self.frames.segment_len,
            cfg.TEST.THRESHOLD,
            cfg.TEST.MAX_PAD_CLIPS,
        )
        digests = dist.gather_dicts({rank: training.weights_digest(self.model)})
        results = {
            "test": metrics,
            "best": best.to_dict(),
            "selection": SELECTION_NOTE,
            "world_size": self.world,
            "weights_digest_per_rank": [digests[r] for r in sorted(digests)],
        }
        if rank == 0:
            check_digests(results["weights_digest_per_rank"])
            save_npz(Path(cfg.OUTPUT_DIR) / "test_scores.npz", scores)
            results["test_by_checkpoint"] = protocol.selection_table(cfg.OUTPUT_DIR, best.to_dict())
            protocol.log_selection(results["test_by_checkpoint"], logger)
            write_json(Path(cfg.OUTPUT_DIR) / FINISHED_MARKER, results)
            far_nv = metrics["far_normal_videos"]
            logger.info(
                "test (last model): AUC %.4f  AP %.4f  FAR %.4f  FAR(normal videos) %s",
                metrics["auc"],
                metrics["ap"],
                metrics["far"],
                "n/a" if far_nv is None else f"{far_nv:.4f}",
            )
        dist.barrier()
        dist.cleanup()
        return results


def build_stage2_model(cfg, device):
    """MIST of the MODEL keys, MODEL.PRETRAINED loaded, SyncBatchNorm under torchrun when
    STAGE2.SYNC_BN, on `device` (channels-last with STAGE2.CHANNELS_LAST)."""
    model = build_model(cfg)
    if cfg.MODEL.PRETRAINED:
        load_weights(model, cfg.MODEL.PRETRAINED)
    model = convert_sync_bn(cfg, model)
    model.to(device)
    if cfg.STAGE2.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last_3d)
    return model


def check_digests(digests):
    """Logs an error if the ranks ended with different weights: equal by construction, so a bug."""
    for kind in ("parameters", "buffers"):
        if len({d[kind] for d in digests}) != 1:
            logger.error("ranks ended with different %s: %s", kind, [d[kind] for d in digests])
