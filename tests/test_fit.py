"""engine.fit: the run loop of both stages on a scripted task (no data): evaluation period,
selection rules, checkpoint payload, metrics records, resume."""

import json

import pytest
import torch

from engine.fit import Best, due, fit, payload, read_payload
from utils.checkpoint import load_checkpoint
from utils.config import load_cfg

# test AUC and validation metric of each evaluation, in order
AUCS = [0.60, 0.70, 0.70, 0.65]
VALS = [0.50, 0.40, 0.55, 0.55]


class ScriptedTask:
    """A task whose training counts steps and whose evaluations return AUCS / VALS in turn."""

    kind, rank, epoch_bar = "stage1", 0, False

    def __init__(self, cfg, epochs=8, eval_period=2, fail_at=None):
        self.cfg, self.epochs, self.eval_period, self.fail_at = cfg, epochs, eval_period, fail_at
        self.steps, self.evaluations, self.trained = 0, 0, []

    def describe(self):
        return "scripted"

    def train_epoch(self, epoch):
        if epoch == self.fail_at:
            raise KeyboardInterrupt
        self.trained.append(epoch)
        self.steps += 1
        return {"loss": 1.0 / (epoch + 1)}

    def evaluate(self):
        k = self.evaluations
        self.evaluations += 1
        return {"auc": AUCS[k], "ap": 0.5, "far": 0.1}, {"val": VALS[k], "val_metric": "auc"}

    def progress(self, epoch):
        return {"iteration": self.steps}

    def state(self):
        return {
            "model": {"w": torch.tensor([float(self.steps)])},
            "steps": self.steps,
            "evaluations": self.evaluations,
        }

    def restore(self, state):
        self.steps, self.evaluations = state["steps"], state["evaluations"]

    def finish(self, best):
        return {"best": best.to_dict(), "trained": self.trained}


def _cfg(out):
    return load_cfg(None, ["OUTPUT_DIR", str(out)])


def test_best_keeps_the_first_of_ties_on_test_and_on_validation():
    best = Best()
    updates = [
        best.update({"auc": a}, {"val": v, "val_metric": "auc"}, e + 1)
        for e, (a, v) in enumerate(zip(AUCS, VALS))
    ]
    assert updates == [(True, True), (True, False), (False, True), (False, False)]
    assert best.to_dict() == {
        "auc": 0.70,
        "epoch": 2,
        "val": 0.55,
        "val_epoch": 3,
        "val_metric": "auc",
    }
    assert best.update({"auc": 0.9}, {}, 5) == (True, False)  # no validation split: never best_val


def test_best_reads_the_checkpoints_of_earlier_versions():
    # before the Best record: {"auc", "epoch"} and, with a validation split, the val fields
    assert Best.from_dict({"auc": 0.8, "epoch": 3}) == Best(0.8, 3)
    assert Best.from_dict({"auc": 0.8, "epoch": 3}).to_dict() == {"auc": 0.8, "epoch": 3}
    old = {"auc": 0.8, "epoch": 3, "val": 0.7, "val_epoch": 2, "val_metric": "auc"}
    assert Best.from_dict(old).to_dict() == old


def test_evaluations_fall_every_period_and_after_the_last_epoch():
    assert [e for e in range(7) if due(e, 3, 7)] == [2, 5, 6]
    assert [e for e in range(4) if due(e, 1, 4)] == [0, 1, 2, 3]


def test_payload_is_the_shared_fields_plus_the_task_state(tmp_path):
    cfg = _cfg(tmp_path)
    saved = payload("stage2", cfg, 4, Best(0.7, 2), {"model": {}, "global_step": 9})
    assert saved == {
        "kind": "stage2",
        "epoch": 4,
        "best": {"auc": 0.7, "epoch": 2},
        "cfg": cfg.dump(),
        "model": {},
        "global_step": 9,
    }
    assert read_payload(saved) == (4, Best(0.7, 2))


def test_fit_saves_selects_records_and_finishes(tmp_path):
    task = ScriptedTask(_cfg(tmp_path / "run"))
    results = fit(task)
    assert task.trained == list(range(8)) and results["trained"] == list(range(8))
    assert results["best"] == {
        "auc": 0.70,
        "epoch": 4,
        "val": 0.55,
        "val_epoch": 6,
        "val_metric": "auc",
    }
    ckpt = tmp_path / "run" / "checkpoints"
    # best.pth from the first 0.70 (epoch 4), best_val.pth from the first 0.55 (epoch 6)
    assert {
        p: load_checkpoint(ckpt / f"{p}.pth")["epoch"] for p in ("last", "best", "best_val")
    } == {"last": 8, "best": 4, "best_val": 6}
    last = load_checkpoint(ckpt / "last.pth", expect_kind="stage1")
    assert last["steps"] == 8 and last["best"] == results["best"] and "SEED" in last["cfg"]
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [
        (r["epoch"], r["iteration"], r["auc"], r["best_auc"], r["best_epoch"], r["best_val_epoch"])
        for r in records
    ] == [
        (2, 2, 0.60, 0.60, 2, 2),
        (4, 4, 0.70, 0.70, 4, 2),
        (6, 6, 0.70, 0.70, 4, 6),
        (8, 8, 0.65, 0.70, 4, 6),
    ]
    assert records[0]["train/loss"] == 0.5 and records[0]["split"] == "test"
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_an_interrupted_fit_resumes_where_its_last_checkpoint_stopped(tmp_path):
    cfg = _cfg(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        fit(ScriptedTask(cfg, fail_at=5))
    # last.pth holds epoch 4 (the evaluation after epochs 3..4): epochs 4.. are trained again
    resumed = ScriptedTask(cfg)
    results = fit(resumed)
    assert resumed.trained == [4, 5, 6, 7] and resumed.steps == 8
    assert results["best"] == {
        "auc": 0.70,
        "epoch": 4,
        "val": 0.55,
        "val_epoch": 6,
        "val_metric": "auc",
    }
    epochs = [
        json.loads(line)["epoch"]
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [2, 4, 6, 8]


def test_stage2_loss_by_hand():
    from models.losses import mist_loss

    # logits (0, 0): p = 0.5 for both classes, so each clip's CE is -w * log(0.5) for its class
    # share
    out = {"logits": torch.zeros(2, 2), "guided_logits": torch.tensor([[0.0, 0.0], [0.0, 0.0]])}
    target = torch.tensor([1.0, 0.0])
    loss, head, guided = mist_loss(out, target, (2.0, 1.0), 0.5)
    log2 = float(torch.log(torch.tensor(2.0)))
    # head: mean(2 * log 2, 1 * log 2) = 1.5 log 2; guided the same; loss = head + 0.5 guided
    assert head.item() == pytest.approx(1.5 * log2) and guided.item() == pytest.approx(1.5 * log2)
    assert loss.item() == pytest.approx(2.25 * log2)
    loss, head, guided = mist_loss(
        {"logits": torch.zeros(2, 2), "guided_logits": None}, target, (2.0, 1.0), 0.5
    )
    assert loss.item() == head.item() == pytest.approx(1.5 * log2) and guided.item() == 0.0
