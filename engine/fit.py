"""One run loop for both stages (and the Sultani baseline): fit(task).

A task (engine/stage1.py, engine/stage2.py) holds what differs between the stages: its inputs,
model, optimizer, one epoch of training, one evaluation, its part of the checkpoint and its final
step. fit() holds what they share, written once:

- the run folder: a finished run is refused without --resume, an interrupted one resumes from
  checkpoints/last.pth, and config.yaml / log.txt are written only once the resumed state is
  restored;
- the evaluation period (every EVAL_PERIOD epochs and after the last one);
- the selection rules: `best.pth` has the best TEST AUC (as the paper chose, docs/REFERENCE.md
  §6.24),
  `best_val.pth` the best validation metric (DATA.VAL_FRACTION), `last.pth` the latest evaluation;
  ties keep the first;
- the checkpoint payload (`payload`) and its reader (`read_payload`), the metrics.jsonl record and
  the
  log line of each evaluation.

Under torchrun every rank runs fit(); rank 0 writes the files.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from utils.progress import bar as progress_bar

from utils import distributed as dist
from utils.checkpoint import save_checkpoint
from utils.logger import MetricsWriter, setup_logger
from utils.run import check_resumed_cfg, prepare_output_dir, start_run

SELECTION_NOTE = "best.pth is chosen on the TEST set, as the paper did (docs/REFERENCE.md §6.24)"
logger = logging.getLogger("mist")


@dataclass
class Best:
    """The best evaluations so far: by test AUC (best.pth) and by the validation metric
    (best_val.pth)."""

    auc: float = -1.0
    epoch: int | None = None
    val: float = -1.0
    val_epoch: int | None = None
    val_metric: str | None = None

    def update(self, metrics, val, epoch):
        """-> (best on test, best on validation): strictly better than before, so the first of ties
        wins."""
        improved = metrics["auc"] > self.auc
        if improved:
            self.auc, self.epoch = metrics["auc"], epoch
        improved_val = bool(val) and val["val"] > self.val
        if improved_val:
            self.val, self.val_epoch, self.val_metric = val["val"], epoch, val["val_metric"]
        return improved, improved_val

    def to_dict(self):
        """-> the checkpoint / results.json form: the validation fields only once there was a
        validation."""
        out = asdict(self)
        if self.val_epoch is None:
            for key in ("val", "val_epoch", "val_metric"):
                del out[key]
        return out

    @classmethod
    def from_dict(cls, state):
        return cls(
            **{
                k: state[k]
                for k in ("auc", "epoch", "val", "val_epoch", "val_metric")
                if k in state
            }
        )

    def record(self, val):
        """-> the best-so-far fields of a metrics.jsonl record."""
        out = {"best_auc": self.auc, "best_epoch": self.epoch, "selection": SELECTION_NOTE}
        if val:
            out.update(
                val=val["val"],
                val_metric=val["val_metric"],
                best_val=self.val,
                best_val_epoch=self.val_epoch,
            )
        return out


def payload(kind, cfg, epoch, best, state):
    """-> the checkpoint of both stages: kind ("stage1" / "stage2"), epoch, best, cfg, and the
    task's own state (model, optimizer, random streams, ...)."""
    return {"kind": kind, "epoch": epoch, "best": best.to_dict(), "cfg": cfg.dump(), **state}


def read_payload(state):
    """checkpoint -> (epoch, Best): the shared part of a payload (the task restores its own
    part)."""
    return state["epoch"], Best.from_dict(state["best"])


def scalars(metrics):
    """-> the metrics of a record: per_class only where the dataset has classes."""
    out = {k: v for k, v in metrics.items() if k != "per_class"}
    if metrics.get("per_class"):
        out["per_class"] = metrics["per_class"]
    return out


def due(epoch, period, epochs):
    """True when the evaluation is due after `epoch` (0-based): every `period` epochs and at the
    end."""
    return (epoch + 1) % period == 0 or epoch + 1 == epochs


def fit(task, resume=False):
    """Trains `task` from scratch or from its run folder's last.pth -> task.finish(best)'s
    results."""
    cfg, rank = task.cfg, task.rank
    state = prepare_output_dir(cfg, resume, kind=task.kind) if rank == 0 else None
    state = dist.broadcast_object(state)
    dist.barrier()
    start, best = 0, Best()
    if state is not None:
        check_resumed_cfg(state, cfg)
        task.restore(state)
        start, best = read_payload(state)
    log = logger
    if rank == 0:
        # config.yaml and log.txt only now: a refused resume leaves the run as it was
        start_run(cfg)
        log = setup_logger(cfg.OUTPUT_DIR)
    if state is not None:
        log.info("resumed from epoch %d (best test AUC %.4f)", start, best.auc)
    log.info("%s", task.describe())
    writer = MetricsWriter(cfg.OUTPUT_DIR, enabled=rank == 0)
    checkpoints = Path(cfg.OUTPUT_DIR) / "checkpoints"
    bar = progress_bar(
        range(start, task.epochs),
        initial=start,
        total=task.epochs,
        desc=task.kind,
        dynamic_ncols=True,
        enabled=task.epoch_bar and rank == 0,
    )
    for epoch in bar:
        losses = task.train_epoch(epoch)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", best_auc=f"{best.auc:.4f}")
        if not due(epoch, task.eval_period, task.epochs):
            continue
        metrics, val = task.evaluate()
        improved, improved_val = best.update(metrics, val, epoch + 1)
        # task.state() is collective under torchrun: every rank calls it
        saved = payload(task.kind, cfg, epoch + 1, best, task.state())
        if rank == 0:
            save_checkpoint(checkpoints / "last.pth", **saved)
            if improved:
                save_checkpoint(checkpoints / "best.pth", **saved)
            if improved_val:
                save_checkpoint(checkpoints / "best_val.pth", **saved)
        record = {
            "epoch": epoch + 1,
            **task.progress(epoch),
            "split": "test",
            **{f"train/{k}": v for k, v in losses.items()},
            **scalars(metrics),
            **best.record(val),
        }
        writer.write(record, epoch + 1)
        log.info("%s", evaluation_line(epoch + 1, losses, metrics, val, best))
    writer.close()
    return task.finish(best)


def evaluation_line(epoch, losses, metrics, val, best):
    line = (
        f"epoch {epoch}: loss {losses['loss']:.4f}  test AUC {metrics['auc']:.4f}  "
        f"AP {metrics['ap']:.4f}  FAR {metrics['far']:.4f}  "
        f"(best {best.auc:.4f} at epoch {best.epoch})"
    )
    if val:
        line += f"  val {val['val_metric']} {val['val']:.4f} (best at epoch {best.val_epoch})"
    return line
