"""Stage 1 of MIST: the MIL pseudo-label generator trained on clip features, evaluated, and its
pseudo-labels.

`train(cfg, resume)` runs the task through engine.fit. STAGE1.METHOD picks the loss and the bag
sampler from the registries of the build layer (models.build.STAGE1_LOSSES,
datasets.build.STAGE1_SAMPLERS): "mist" (sparse-continuous sub-bags, MIL ranking loss) or "sultani"
(Sultani et al.'s 32 pooled segments).

Writes to OUTPUT_DIR: config.yaml, log.txt, metrics.jsonl, tensorboard/, checkpoints/{last,best}.pth
(+ best_val.pth with DATA.VAL_FRACTION), pseudo_labels.{npy,npz}, train_scores.npz (before
refinement), test_scores.npz and results.json (the last file written: the run is finished)."""

import logging
from pathlib import Path

import torch

from datasets.build import (
    as_clip_scores,
    validation_videos,
    build_stage1_sampler,
    check_test_coverage,
    load_splits,
    open_store,
    test_ground_truth,
    train_masks,
)
from engine.fit import SELECTION_NOTE, fit
from models.build import build_generator, build_stage1_loss
from utils import protocol
from utils.checkpoint import load_checkpoint, save_npz, write_json
from utils.env import keep_large_blocks, resolve_device, seed_everything, use_deterministic
from utils.evaluation import evaluate
from utils.logger import setup_logger
from utils.pseudo_labels import pseudo_label_auc, refine_all, save_pseudo_labels
from utils.run import FINISHED_MARKER, restore_model
from utils.registry import choose
from utils.scoring import score_videos
from utils.training import STAGE1_OPTIMIZERS, linear_warmup

logger = logging.getLogger("mist")


def train(cfg, resume=False):
    """-> results.json's content; every input is read and checked before OUTPUT_DIR is written."""
    setup_logger()
    return fit(Stage1Task(cfg), resume)


def build_optimizer(cfg, model):
    """STAGE1.OPTIMIZER (official: Adagrad) with STAGE1.LR and STAGE1.WEIGHT_DECAY."""
    make = choose(STAGE1_OPTIMIZERS, "STAGE1.OPTIMIZER", cfg.STAGE1.OPTIMIZER)
    return make(model.parameters(), cfg.STAGE1)


def train_step(model, optimizer, loss_fn, rows, inverse=None, grad_clip=10.0, scheduler=None):
    """One iteration on the rows of a batch (normal bags first) -> {"loss", terms...} as tensors."""
    # (B, L*T) each, or (B, L) pooled segments for the Sultani baseline
    normal, abnormal = model(rows, inverse).chunk(2)
    loss, parts = loss_fn(normal, abnormal)
    if not torch.isfinite(loss):
        raise FloatingPointError(
            "the stage-1 loss became NaN/inf: check the features (DATA.L2_NORM) and STAGE1.LR"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return {"loss": loss, **parts}


class Stage1Task:
    """The generator, its optimizer, the bag sampler and the random streams of one stage-1 run."""

    kind, rank, epoch_bar = "stage1", 0, True

    def __init__(self, cfg):
        self.cfg, s1 = cfg, cfg.STAGE1
        self.epochs, self.eval_period = s1.EPOCHS, s1.EVAL_PERIOD
        self.rng = seed_everything(cfg.SEED)
        self.device = resolve_device(cfg.DEVICE)
        use_deterministic(cfg.DETERMINISTIC)
        # the loop's large CPU tensors are reused instead of page-faulted in each iteration
        keep_large_blocks()
        self.train_videos, self.test_videos = load_splits(cfg)
        self.store = open_store(cfg, self.train_videos, self.test_videos)
        self.labels = test_ground_truth(cfg, self.test_videos)
        check_test_coverage(cfg, self.store, self.test_videos, self.labels)
        # val: held out of training
        fit_videos, self.val_videos = protocol.carve_validation(
            cfg, self.train_videos, validation_videos(cfg)
        )
        self.sampler = build_stage1_sampler(cfg, self.store, fit_videos, self.rng)
        self.val_masks = train_masks(cfg, self.val_videos) if self.val_videos else {}
        self.loss = build_stage1_loss(cfg)
        self.model = build_generator(cfg).to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        # None without STAGE1.WARMUP_ITERS (the official constant learning rate)
        self.scheduler = linear_warmup(self.optimizer, s1.WARMUP_ITERS)

    def describe(self):
        return (
            f"stage 1 on {self.cfg.DATA.DATASET}: {len(self.train_videos)} train "
            f"({len(self.sampler)} iterations/epoch), {len(self.test_videos)} test videos, "
            f"{self.store.__class__.__name__}, device {self.device}"
        )

    def train_epoch(self, epoch):
        """One pass of the bag sampler -> mean of each loss term over its iterations."""
        self.model.train()
        s1, totals = self.cfg.STAGE1, {}
        # normal bags first; with DEDUP_ROWS each video's distinct clips only, expanded by the model
        for rows, inverse in self.sampler.iter_rows(dedup=s1.DEDUP_ROWS):
            rows = torch.from_numpy(rows).to(self.device)
            inverse = None if inverse is None else torch.from_numpy(inverse).to(self.device)
            terms = train_step(
                self.model, self.optimizer, self.loss, rows, inverse, s1.GRAD_CLIP, self.scheduler
            )
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + value.item() / len(self.sampler)
        return totals

    def scores(self, videos, labels=None):
        """-> {video: clip scores} of the generator; with `labels` (frame ground truth), the
        scores of videos read as Sultani's 32 segments spread over their clips."""
        scores = score_videos(
            self.model,
            self.store,
            [v.name for v in videos],
            self.device,
            self.cfg.STAGE1.EVAL_BATCH_ROWS,
        )
        if labels is None:
            return scores
        return as_clip_scores(self.store, scores, labels, self.cfg.DATA.CLIP_LEN)

    def evaluate(self):
        """-> (test metrics, validation metric or {} without a validation split)."""
        cfg = self.cfg
        metrics = evaluate(
            self.scores(self.test_videos, self.labels),
            self.labels,
            self.test_videos,
            cfg.DATA.CLIP_LEN,
            cfg.TEST.THRESHOLD,
            cfg.TEST.MAX_PAD_CLIPS,
        )
        if not self.val_videos:
            return metrics, {}
        val = protocol.validation_metric(
            self.scores(self.val_videos, self.val_masks),
            self.val_videos,
            self.val_masks,
            cfg.DATA.CLIP_LEN,
            cfg.TEST.MAX_PAD_CLIPS,
        )
        return metrics, val

    def progress(self, epoch):
        return {"iteration": (epoch + 1) * len(self.sampler)}

    def state(self):
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        return state

    def restore(self, state):
        restore_model(self.model, state, self.cfg)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])

    def finish(self, best):
        """Pseudo-labels from the chosen generator, its test metrics and the results file."""
        cfg, out = self.cfg, Path(self.cfg.OUTPUT_DIR)
        chosen = out / "checkpoints" / f"{cfg.PSEUDO_LABEL.CHECKPOINT}.pth"
        self.model.load_state_dict(load_checkpoint(chosen, expect_kind="stage1")["model"])
        train_scores = self.scores(self.train_videos)
        pseudo = refine_all(
            train_scores,
            {v.name: v.label for v in self.train_videos},
            cfg.PSEUDO_LABEL.KERNEL,
            cfg.PSEUDO_LABEL.PASSES,
        )
        save_pseudo_labels(out / "pseudo_labels", pseudo)
        # before refinement (tools/pl_quality.py)
        save_npz(out / "train_scores.npz", train_scores)
        masks = train_masks(cfg, self.train_videos)
        test_scores = self.scores(self.test_videos, self.labels)
        metrics = evaluate(
            test_scores,
            self.labels,
            self.test_videos,
            cfg.DATA.CLIP_LEN,
            cfg.TEST.THRESHOLD,
            cfg.TEST.MAX_PAD_CLIPS,
        )
        save_npz(out / "test_scores.npz", test_scores)
        results = {
            "test": metrics,
            "pseudo_labels_from": chosen.name,
            "selection": SELECTION_NOTE,
            "pseudo_label_auc_raw": pseudo_label_auc(train_scores, masks, cfg.DATA.CLIP_LEN),
            "pseudo_label_auc": pseudo_label_auc(pseudo, masks, cfg.DATA.CLIP_LEN),
            "n_train_masks": len(masks),
            "test_by_checkpoint": protocol.selection_table(out, best.to_dict()),
        }
        protocol.log_selection(results["test_by_checkpoint"], logger)
        write_json(out / FINISHED_MARKER, results)
        logger.info(
            "pseudo-labels from %s: frame AUC on %d masked train videos %s (raw scores %s)",
            chosen.name,
            len(masks),
            _fmt(results["pseudo_label_auc"]),
            _fmt(results["pseudo_label_auc_raw"]),
        )
        logger.info(
            "test (%s generator): AUC %.4f  AP %.4f  FAR %.4f  FAR(normal videos) %s",
            chosen.stem,
            metrics["auc"],
            metrics["ap"],
            metrics["far"],
            _fmt(metrics["far_normal_videos"]),
        )
        return results


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"
