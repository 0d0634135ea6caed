"""Stage 2 of MIST: fine-tune the SGA-boosted I3D/C3D encoder on frames with stage-1 pseudo-labels.

    python tools/train_stage2.py --cfg configs/shanghaitech/i3d_stage2.yaml [KEY VALUE ...]
    torchrun --nproc_per_node 4 tools/train_stage2.py --cfg ...            # multi-GPU (DDP)
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 tools/train_stage2.py --cfg ...

Writes to OUTPUT_DIR (rank 0 only): config.yaml, log.txt, metrics.jsonl, tensorboard/,
checkpoints/{last,best}.pth (+ best_val.pth with DATA.VAL_FRACTION), test_scores.npz and results.json (written
last: the run is finished).
"""
import contextlib
import re
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.build import (check_device_augment, load_splits, open_frame_source, stage2_train_dataset,  # noqa: E402
                            stage2_transforms, test_ground_truth, train_masks)
from datasets.samplers import PairedBatchSampler, rank_share  # noqa: E402
from datasets.device_augment import DeviceAugment, JpegClips, collate_jpeg_clips  # noqa: E402
from datasets.transforms import normalise  # noqa: E402
from models.build import build_model  # noqa: E402
from models.losses import weighted_soft_ce  # noqa: E402
from models.weights import load_weights  # noqa: E402
from utils import distributed as dist  # noqa: E402
from utils import protocol  # noqa: E402
from utils import training  # noqa: E402
from utils.checkpoint import save_checkpoint, save_npz, write_json  # noqa: E402
from utils.config import ConfigError, setup_cfg  # noqa: E402
from utils.env import use_deterministic  # noqa: E402
from utils.evaluation import evaluate  # noqa: E402
from utils.logger import MetricsWriter, setup_logger  # noqa: E402
from utils.run import FINISHED_MARKER, check_resumed_cfg, prepare_output_dir, restore_model, start_run  # noqa: E402
from utils.video_scoring import autocast, score_videos_on_frames  # noqa: E402
from utils import cli  # noqa: E402

SELECTION_NOTE = "best.pth is chosen on the TEST set, as the paper did (docs/REFERENCE.md §6.24)"


class Trainer:
    """The state that changes during training: model (+ DDP wrapper), optimizer, schedule, step counter.

    With world_size > 1 this rank's loss is weighted by world_size x its share of the batch
    (datasets.samplers.rank_share): DDP averages the ranks' gradients, so the step equals the
    single-process one on the whole batch even when the shares are uneven (10 videos over 4 ranks).
    """

    def __init__(self, cfg, model, device, world_size, rank=0, train_transform=None):
        self.cfg, self.model, self.device, self.world_size = cfg, model, device, world_size
        # STAGE2.DEVICE_AUGMENT: batches of stored JPEGs, decoded and augmented here (datasets/device_augment.py)
        self.augment = DeviceAugment(train_transform, device) if getattr(train_transform, "reads_jpegs", False) \
            else None
        self.loss_weight = self.share_weight(cfg, rank, world_size)
        self.optimizer = training.build_optimizer(cfg, model)
        self.scheduler = training.warmup_schedule(self.optimizer, cfg.STAGE2.WARMUP_EPOCHS)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.STAGE2.AMP == "fp16")
        self.global_step, self.frozen, self.ddp = 0, None, None
        self.forward = model  # the (DDP-wrapped, STAGE2.COMPILE-compiled) module the step calls; set_phase rebuilds it

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
            if self.world_size > 1:  # DDP registers only the parameters that require grad at construction
                ids = [self.device.index] if self.device.type == "cuda" else None
                # buffers are averaged at each evaluation (training.sync_buffers), not broadcast per forward
                self.ddp = DistributedDataParallel(self.model, device_ids=ids, broadcast_buffers=False)
            self.forward = training.maybe_compile(self.ddp or self.model, self.cfg.STAGE2.COMPILE)
            self.frozen = frozen
        training.set_train_mode(self.model, backbone_bn_eval=frozen or self.cfg.STAGE2.BN_EVAL)

    def step(self, clips, labels):
        """One iteration: forward/backward; an optimizer step every STAGE2.ACCUMULATE iterations -> losses."""
        s2, net = self.cfg.STAGE2, self.ddp or self.model
        if isinstance(clips, JpegClips):  # STAGE2.DEVICE_AUGMENT: decoded, augmented and normalised here
            clips = self.augment(clips)
        else:
            clips = clips.flatten(0, 1).to(self.device, non_blocking=True)  # (2b * clip_num, 16, h, w, 3) uint8
        if clips.dtype == torch.uint8:  # STAGE2.UINT8_INPUT: normalised here, on the device
            clips = normalise(clips, self.cfg.MODEL.BACKBONE)
        if s2.CHANNELS_LAST:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        target = labels.flatten(0, 1)[:, 1].to(self.device)
        self.global_step += 1
        sync = self.global_step % s2.ACCUMULATE == 0
        with (net.no_sync() if self.ddp is not None and not sync else contextlib.nullcontext()), autocast(self.device, s2.AMP):
            out = self.forward(clips)
            head = weighted_soft_ce(out["logits"], target, *s2.CLASS_WEIGHTS)
            if out["guided_logits"] is None:  # MODEL.SGA False: no guided head to supervise
                guided = torch.zeros((), device=head.device)
            else:
                guided = weighted_soft_ce(out["guided_logits"], target, *s2.CLASS_WEIGHTS)
            loss = head + s2.LAMBDA_GUIDED * guided
        if not torch.isfinite(loss):
            raise FloatingPointError(f"stage-2 loss is {loss.item()} at step {self.global_step}: lower STAGE2.LR "
                                     "or use STAGE2.AMP bf16 / off")
        self.scaler.scale(loss * (self.loss_weight / s2.ACCUMULATE)).backward()
        if sync:  # the counter runs across epochs, so accumulation windows never break at epoch ends
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), s2.GRAD_CLIP)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        # weighted: the mean over ranks of these is the loss of the whole batch
        w = self.loss_weight
        return {"loss": loss.item() * w, "loss_head": head.item() * w, "loss_guided": guided.item() * w}

    def sync(self):
        """Every rank's buffers made equal (collective; before evaluating or saving)."""
        training.sync_buffers(self.model)

    def state(self, epoch, best):
        """-> the checkpoint payload (collective: every rank takes part; buffers synchronised first)."""
        self.sync()
        training.average_grads_across_ranks(self.model)
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rng = dist.gather_dicts({dist_rank(): (torch.get_rng_state(), cuda)})
        return {"kind": "stage2", "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": epoch,
                "global_step": self.global_step, "pending_grads": training.pending_grads(self.model),
                "best": best, "cfg": self.cfg.dump(), "torch_rng": [rng[r][0] for r in sorted(rng)],
                "cuda_rng": [rng[r][1] for r in sorted(rng)]}

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
        return state["epoch"], state["best"]


def dist_rank():
    return torch.distributed.get_rank() if dist.is_distributed() else 0


def train_one_epoch(trainer, loader, epoch, show):
    """-> {"lr", mean losses, "clips_per_s" (all ranks, data loading included), "peak_memory_gib" (CUDA)}."""
    loader.batch_sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)
    trainer.set_phase(epoch)
    totals, lr, clips_seen = {}, trainer.optimizer.param_groups[0]["lr"], 0
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    start = time.perf_counter()
    for clips, labels in tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not show, dynamic_ncols=True):
        for key, value in trainer.step(clips, labels).items():  # .item() waits for the device
            totals[key] = totals.get(key, 0.0) + value / len(loader)
        clips_seen += labels.shape[0] * labels.shape[1]  # (videos, clip_num, 2); clips may be JpegClips
    seconds = time.perf_counter() - start
    with warnings.catch_warnings():  # an epoch may end inside an accumulation window, before any step
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        trainer.scheduler.step()
    out = {"lr": lr, **{k: dist.all_reduce_mean(v, trainer.device) for k, v in totals.items()},
           "clips_per_s": dist.all_reduce_mean(clips_seen / seconds, trainer.device) * trainer.world_size}
    if trainer.device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2**30
    return out


def evaluate_model(cfg, model, frames, videos, labels, transform, device, rank, world):
    """-> (metrics, {video: clip scores}) on the test videos (all ranks share the scoring)."""
    scores = score_videos_on_frames(model, frames, [v.name for v in videos], transform, device,
                                    cfg.TEST.BATCH_SIZE, cfg.DATA.NUM_WORKERS, cfg.STAGE2.AMP, rank, world)
    metrics = evaluate(scores, labels, videos, frames.segment_len, cfg.TEST.THRESHOLD, cfg.TEST.MAX_PAD_CLIPS)
    return metrics, scores


def validate_model(cfg, model, frames, videos, masks, transform, device, rank, world):
    """-> {} without a validation split, else the validation metric of the held-out training videos."""
    if not videos:
        return {}
    scores = score_videos_on_frames(model, frames, [v.name for v in videos], transform, device,
                                    cfg.TEST.BATCH_SIZE, cfg.DATA.NUM_WORKERS, cfg.STAGE2.AMP, rank, world)
    return protocol.validation_metric(scores, videos, masks, frames.segment_len, cfg.TEST.MAX_PAD_CLIPS)


def build_loader(cfg, dataset, rank, world):
    """The training DataLoader. Its own generator (not the global RNG, which drives dropout) draws the
    workers' base seed, so starting the workers again on resume does not shift dropout."""
    sampler = PairedBatchSampler(dataset.normal_indices(), dataset.abnormal_indices(), cfg.STAGE2.BATCH_SIZE,
                                 rank, world, cfg.SEED)
    generator = torch.Generator().manual_seed(cfg.SEED * 1000 + rank)
    collate = collate_jpeg_clips if getattr(dataset.transform, "reads_jpegs", False) else None
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATA.NUM_WORKERS,
                                       pin_memory=torch.cuda.is_available(), generator=generator,
                                       persistent_workers=cfg.DATA.NUM_WORKERS > 0, collate_fn=collate)


def check_sync_bn(cfg, device):
    """STAGE2.SYNC_BN needs CUDA: torch's SyncBatchNorm has no CPU kernel (it would fail inside DDP)."""
    if cfg.STAGE2.SYNC_BN and device.type != "cuda":
        raise ConfigError(f"STAGE2.SYNC_BN True needs CUDA devices, but this run is on {device}: set "
                          "STAGE2.SYNC_BN False (BatchNorm running statistics are still averaged over the ranks "
                          "at every evaluation)")


def convert_sync_bn(cfg, model, logger):
    """SyncBatchNorm under torchrun (any world size) when STAGE2.SYNC_BN; C3D has no BatchNorm to sync."""
    if not (cfg.STAGE2.SYNC_BN and dist.is_distributed()):
        return model
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        logger.warning("STAGE2.SYNC_BN True has no effect: MODEL.BACKBONE %s has no BatchNorm layer",
                       cfg.MODEL.BACKBONE)
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def main(argv=None):
    cfg, args = setup_cfg(__doc__, argv)
    rank, world, device = dist.init_distributed(cfg.DEVICE)
    use_deterministic(cfg.DETERMINISTIC)
    logger = setup_logger(rank=rank)
    check_sync_bn(cfg, device)
    torch.manual_seed(cfg.SEED + rank)
    # all input is read and checked before anything is written to OUTPUT_DIR
    train_videos, test_videos = load_splits(cfg)
    train_names = {v.name for v in train_videos}
    check_device_augment(cfg)
    frames = open_frame_source(cfg, train_videos + [v for v in test_videos if v.name not in train_names])
    train_transform, test_transform = stage2_transforms(cfg)
    fit_videos, val_videos = protocol.carve_validation(cfg, train_videos)  # val: held out of training
    val_masks = train_masks(cfg, val_videos) if val_videos else {}
    dataset = stage2_train_dataset(cfg, frames, fit_videos, train_transform)
    labels = test_ground_truth(cfg, test_videos)
    loader = build_loader(cfg, dataset, rank, world)
    model = build_model(cfg)
    if cfg.MODEL.PRETRAINED:
        load_weights(model, cfg.MODEL.PRETRAINED)
    model = convert_sync_bn(cfg, model, logger)
    model.to(device)
    if cfg.STAGE2.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last_3d)
    trainer = Trainer(cfg, model, device, world, rank, train_transform)
    resume_state = dist.broadcast_object(prepare_output_dir(cfg, args.resume, kind="stage2") if rank == 0 else None)
    dist.barrier()
    if world > 1 and cfg.STAGE2.BATCH_SIZE % world:
        logger.info("STAGE2.BATCH_SIZE %d per class over %d ranks: shares of %s videos, losses weighted by share",
                    cfg.STAGE2.BATCH_SIZE, world, [rank_share(cfg.STAGE2.BATCH_SIZE, r, world)[1] for r in range(world)])
    start, best = 0, {"auc": -1.0, "epoch": None}
    if resume_state is not None:
        check_resumed_cfg(resume_state, cfg)
        if len(resume_state["torch_rng"]) != world:
            logger.warning("resuming a %d-process run on %d processes: training goes on, but not as the same "
                           "run would have (random streams and batch shares differ)", len(resume_state["torch_rng"]),
                           world)
        start, best = trainer.restore(resume_state, rank)
    if rank == 0:  # config.yaml and log.txt only now: a refused resume leaves the run as it was
        start_run(cfg)
        logger = setup_logger(cfg.OUTPUT_DIR)
    if resume_state is not None:
        logger.info("resumed from epoch %d (best test AUC %.4f)", start, best["auc"])
    logger.info("stage 2 (%s) on %s: %d train videos (%d iterations/epoch x %d rank(s)), %d test videos, device %s",
                cfg.MODEL.BACKBONE, cfg.DATA.DATASET, len(train_videos), len(loader), world, len(test_videos), device)
    writer = MetricsWriter(cfg.OUTPUT_DIR, enabled=rank == 0)
    ckpt_dir = Path(cfg.OUTPUT_DIR) / "checkpoints"
    for epoch in range(start, cfg.STAGE2.EPOCHS):
        losses = train_one_epoch(trainer, loader, epoch, show=rank == 0)
        logger.info("epoch %d: loss %.4f, %.1f clips/s%s", epoch + 1, losses["loss"], losses["clips_per_s"],
                    f", peak GPU memory {losses['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in losses else "")
        if (epoch + 1) % cfg.STAGE2.EVAL_PERIOD and epoch + 1 != cfg.STAGE2.EPOCHS:
            continue
        trainer.sync()  # every rank scores its share of the videos with the same BatchNorm statistics
        metrics, _ = evaluate_model(cfg, model, frames, test_videos, labels, test_transform, device, rank, world)
        val = validate_model(cfg, model, frames, val_videos, val_masks, test_transform, device, rank, world)
        improved = metrics["auc"] > best["auc"]
        if improved:
            best.update(auc=metrics["auc"], epoch=epoch + 1)
        improved_val = protocol.update_best_val(best, val, epoch + 1)
        state = trainer.state(epoch + 1, best)  # collective: every rank takes part
        if rank == 0:
            save_checkpoint(ckpt_dir / "last.pth", **state)
            if improved:
                save_checkpoint(ckpt_dir / "best.pth", **state)
            if improved_val:
                save_checkpoint(ckpt_dir / "best_val.pth", **state)
        writer.write({"epoch": epoch + 1, "step": trainer.global_step, "split": "test", "lr": losses.pop("lr"),
                      **{f"train/{k}": v for k, v in losses.items()},
                      **{k: v for k, v in metrics.items() if k != "per_class"}, "per_class": metrics["per_class"],
                      "best_auc": best["auc"], "best_epoch": best["epoch"], "selection": SELECTION_NOTE,
                      **protocol.val_record(val, best)}, epoch + 1)
        logger.info("epoch %d: loss %.4f  test AUC %.4f  AP %.4f  FAR %.4f  (best %.4f at epoch %s)", epoch + 1,
                    losses["loss"], metrics["auc"], metrics["ap"], metrics["far"], best["auc"], best["epoch"])
    writer.close()
    return finish(cfg, trainer, frames, test_videos, labels, test_transform, rank, world, best, logger)


def finish(cfg, trainer, frames, videos, labels, transform, rank, world, best, logger):
    """Final test metrics of the last model, weight digests of every rank, results.json (rank 0)."""
    trainer.sync()
    metrics, scores = evaluate_model(cfg, trainer.model, frames, videos, labels, transform, trainer.device, rank, world)
    digests = dist.gather_dicts({rank: training.weights_digest(trainer.model)})
    results = {"test": metrics, "best": best, "selection": SELECTION_NOTE, "world_size": world,
               "weights_digest_per_rank": [digests[r] for r in sorted(digests)]}
    if rank == 0:
        for kind in ("parameters", "buffers"):  # equal by construction: a difference is a bug
            if len({d[kind] for d in results["weights_digest_per_rank"]}) != 1:
                logger.error("ranks ended with different %s: %s", kind,
                             [d[kind] for d in results["weights_digest_per_rank"]])
        save_npz(Path(cfg.OUTPUT_DIR) / "test_scores.npz", scores)
        results["test_by_checkpoint"] = protocol.selection_table(cfg.OUTPUT_DIR, best)
        protocol.log_selection(results["test_by_checkpoint"], logger)
        write_json(Path(cfg.OUTPUT_DIR) / FINISHED_MARKER, results)
        far_nv = metrics["far_normal_videos"]
        logger.info("test (last model): AUC %.4f  AP %.4f  FAR %.4f  FAR(normal videos) %s", metrics["auc"],
                    metrics["ap"], metrics["far"], "n/a" if far_nv is None else f"{far_nv:.4f}")
    dist.barrier()
    dist.cleanup()
    return results


if __name__ == "__main__":
    sys.exit(cli.run(main))
