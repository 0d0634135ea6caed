"""Stage 1 of MIST: train the MIL pseudo-label generator on clip features, evaluate it, write pseudo-labels.

    python tools/train_stage1.py --cfg configs/shanghaitech/i3d_stage1.yaml [KEY VALUE ...]
    python tools/train_stage1.py                      # the embedded demo

Writes to OUTPUT_DIR: config.yaml, log.txt, metrics.jsonl, tensorboard/, checkpoints/{last,best}.pth (+ best_val.pth
with DATA.VAL_FRACTION), pseudo_labels.{npy,npz}, train_scores.npz (before refinement), test_scores.npz and
results.json (the last file written: the run is finished).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets.bags import BagSampler  # noqa: E402
from datasets.build import check_test_coverage, load_splits, open_store, test_ground_truth, train_masks  # noqa: E402
from datasets.segments import SegmentBagSampler  # noqa: E402
from models.build import build_generator  # noqa: E402
from models.losses import mil_ranking_loss  # noqa: E402
from models.sultani import sultani_loss  # noqa: E402
from utils import protocol  # noqa: E402
from utils.checkpoint import load_checkpoint, save_checkpoint, save_npz, write_json  # noqa: E402
from utils.config import setup_cfg  # noqa: E402
from utils.env import keep_large_blocks, resolve_device, seed_everything, use_deterministic  # noqa: E402
from utils.evaluation import evaluate  # noqa: E402
from utils.logger import MetricsWriter, setup_logger  # noqa: E402
from utils.pseudo_labels import pseudo_label_auc, refine_all, save_pseudo_labels  # noqa: E402
from utils.run import FINISHED_MARKER, check_resumed_cfg, prepare_output_dir, restore_model, start_run  # noqa: E402
from utils.scoring import score_videos  # noqa: E402
from utils import cli  # noqa: E402

SELECTION_NOTE = "best.pth is chosen on the TEST set, as the paper did (docs/REFERENCE.md §6.24)"


def _batches(sampler, dedup):
    """-> (features, inverse or None) per iteration, normal bags first: gathered once; with dedup, each
    video's distinct clips only (the model expands them after its first layer: same maths, less work)."""
    if not hasattr(sampler, "iter_rows"):  # the Sultani segment sampler
        for normal, abnormal in sampler:
            yield torch.from_numpy(np.concatenate([normal, abnormal])), None
        return
    for rows, inverse in sampler.iter_rows(dedup=dedup):
        yield torch.from_numpy(rows), None if inverse is None else torch.from_numpy(inverse)


def train_one_epoch(model, optimizer, sampler, cfg, device):
    """One pass of the bag sampler -> mean of each loss term over its iterations."""
    model.train()
    s1, totals = cfg.STAGE1, {}
    for rows, inverse in _batches(sampler, s1.DEDUP_ROWS):
        scores = model(rows.to(device), None if inverse is None else inverse.to(device))
        normal, abnormal = scores.chunk(2)  # (B, L*T) each, or (B, L) pooled segments for the Sultani baseline
        if s1.METHOD == "sultani":
            loss, parts = sultani_loss(normal, abnormal, s1.LAMBDA_SPARSE, s1.LAMBDA_SMOOTH)
        else:
            loss, parts = mil_ranking_loss(normal, abnormal, s1.TOPK, s1.LAMBDA_SPARSE, s1.LAMBDA_SMOOTH,
                                           s1.BAG_SCORE, s1.PART_LEN)
        if not torch.isfinite(loss):
            raise FloatingPointError("the stage-1 loss became NaN/inf: check the features (DATA.L2_NORM) and STAGE1.LR")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s1.GRAD_CLIP)
        optimizer.step()
        for key, value in {"loss": loss, **parts}.items():
            totals[key] = totals.get(key, 0.0) + value.item() / len(sampler)
    return totals


def evaluate_generator(model, store, videos, labels, cfg, device):
    """-> (metrics dict, {video: clip scores}) on the test split."""
    scores = score_videos(model, store, [v.name for v in videos], device, cfg.STAGE1.EVAL_BATCH_ROWS)
    metrics = evaluate(scores, labels, videos, cfg.DATA.CLIP_LEN, cfg.TEST.THRESHOLD, cfg.TEST.MAX_PAD_CLIPS)
    return metrics, scores


def validate_generator(model, store, videos, masks, cfg, device):
    """-> {} without a validation split, else the validation metric of the held-out training videos."""
    if not videos:
        return {}
    scores = score_videos(model, store, [v.name for v in videos], device, cfg.STAGE1.EVAL_BATCH_ROWS)
    return protocol.validation_metric(scores, videos, masks, cfg.DATA.CLIP_LEN, cfg.TEST.MAX_PAD_CLIPS)


def build_sampler(cfg, store, videos, rng):
    """MIST sub-bags (datasets/bags.py), or Sultani's pooled segments for STAGE1.METHOD sultani."""
    s1 = cfg.STAGE1
    normal, abnormal = [v.name for v in videos if v.label == 0], [v.name for v in videos if v.label == 1]
    if s1.METHOD == "sultani":
        return SegmentBagSampler(store, normal, abnormal, s1.BATCH_SIZE, s1.PART_NUM, rng, cfg.DATA.L2_NORM)
    return BagSampler(store, normal, abnormal, s1.BATCH_SIZE, s1.PART_NUM, s1.PART_LEN, s1.SAMPLING, rng)


def state_dict(model, optimizer, rng, epoch, best, cfg):
    return {"kind": "stage1", "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
            "best": best, "cfg": cfg.dump(), "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}


def restore(state, model, optimizer, rng, cfg):
    check_resumed_cfg(state, cfg)
    restore_model(model, state, cfg)
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"], state["best"]


def finish(cfg, model, store, train_videos, test_videos, labels, device, logger, best):
    """Pseudo-labels from the chosen generator, its test metrics and the results file."""
    ckpt_dir = Path(cfg.OUTPUT_DIR) / "checkpoints"
    chosen = ckpt_dir / f"{cfg.PSEUDO_LABEL.CHECKPOINT}.pth"
    model.load_state_dict(load_checkpoint(chosen, expect_kind="stage1")["model"])
    train_scores = score_videos(model, store, [v.name for v in train_videos], device, cfg.STAGE1.EVAL_BATCH_ROWS)
    pseudo = refine_all(train_scores, {v.name: v.label for v in train_videos}, cfg.PSEUDO_LABEL.KERNEL,
                        cfg.PSEUDO_LABEL.PASSES)
    save_pseudo_labels(Path(cfg.OUTPUT_DIR) / "pseudo_labels", pseudo)
    save_npz(Path(cfg.OUTPUT_DIR) / "train_scores.npz", train_scores)  # before refinement (tools/pl_quality.py)
    masks = train_masks(cfg, train_videos)
    metrics, test_scores = evaluate_generator(model, store, test_videos, labels, cfg, device)
    save_npz(Path(cfg.OUTPUT_DIR) / "test_scores.npz", test_scores)
    results = {"test": metrics, "pseudo_labels_from": chosen.name, "selection": SELECTION_NOTE,
               "pseudo_label_auc_raw": pseudo_label_auc(train_scores, masks, cfg.DATA.CLIP_LEN),
               "pseudo_label_auc": pseudo_label_auc(pseudo, masks, cfg.DATA.CLIP_LEN), "n_train_masks": len(masks),
               "test_by_checkpoint": protocol.selection_table(cfg.OUTPUT_DIR, best)}
    protocol.log_selection(results["test_by_checkpoint"], logger)
    write_json(Path(cfg.OUTPUT_DIR) / FINISHED_MARKER, results)
    logger.info("pseudo-labels from %s: frame AUC on %d masked train videos %s (raw scores %s)", chosen.name,
                len(masks), _fmt(results["pseudo_label_auc"]), _fmt(results["pseudo_label_auc_raw"]))
    logger.info("test (%s generator): AUC %.4f  AP %.4f  FAR %.4f  FAR(normal videos) %s", chosen.stem,
                metrics["auc"], metrics["ap"], metrics["far"], _fmt(metrics["far_normal_videos"]))
    return results


def _fmt(value):
    return "n/a" if value is None else f"{value:.4f}"


def main(argv=None):
    cfg, args = setup_cfg(__doc__, argv)
    logger = setup_logger()
    rng = seed_everything(cfg.SEED)
    device = resolve_device(cfg.DEVICE)
    use_deterministic(cfg.DETERMINISTIC)
    keep_large_blocks()  # the loop's large CPU tensors are reused instead of page-faulted in each iteration
    # all input is read and checked before anything is written to OUTPUT_DIR
    train_videos, test_videos = load_splits(cfg)
    store = open_store(cfg, train_videos, test_videos)
    labels = test_ground_truth(cfg, test_videos)
    check_test_coverage(cfg, store, test_videos, labels)
    s1 = cfg.STAGE1
    fit_videos, val_videos = protocol.carve_validation(cfg, train_videos)  # val: held out of training
    sampler = build_sampler(cfg, store, fit_videos, rng)
    val_masks = train_masks(cfg, val_videos) if val_videos else {}
    resume_state = prepare_output_dir(cfg, args.resume, kind="stage1")
    model = build_generator(cfg).to(device)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=s1.LR, weight_decay=s1.WEIGHT_DECAY)
    start, best = 0, {"auc": -1.0, "epoch": None}
    if resume_state is not None:
        start, best = restore(resume_state, model, optimizer, rng, cfg)
    start_run(cfg)  # config.yaml and log.txt only now: a refused resume leaves the run as it was
    logger = setup_logger(cfg.OUTPUT_DIR)
    if resume_state is not None:
        logger.info("resumed from epoch %d (best test AUC %.4f)", start, best["auc"])
    logger.info("stage 1 on %s: %d train (%d iterations/epoch), %d test videos, %s, device %s", cfg.DATA.DATASET,
                len(train_videos), len(sampler), len(test_videos), store.__class__.__name__, device)
    writer = MetricsWriter(cfg.OUTPUT_DIR)
    ckpt_dir = Path(cfg.OUTPUT_DIR) / "checkpoints"
    bar = tqdm(range(start, s1.EPOCHS), initial=start, total=s1.EPOCHS, desc="stage 1", dynamic_ncols=True)
    for epoch in bar:
        losses = train_one_epoch(model, optimizer, sampler, cfg, device)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", best_auc=f"{best['auc']:.4f}")
        if (epoch + 1) % s1.EVAL_PERIOD and epoch + 1 != s1.EPOCHS:
            continue
        metrics, _ = evaluate_generator(model, store, test_videos, labels, cfg, device)
        val = validate_generator(model, store, val_videos, val_masks, cfg, device)
        if metrics["auc"] > best["auc"]:
            best.update(auc=metrics["auc"], epoch=epoch + 1)
            save_checkpoint(ckpt_dir / "best.pth", **state_dict(model, optimizer, rng, epoch + 1, best, cfg))
        if protocol.update_best_val(best, val, epoch + 1):
            save_checkpoint(ckpt_dir / "best_val.pth", **state_dict(model, optimizer, rng, epoch + 1, best, cfg))
        save_checkpoint(ckpt_dir / "last.pth", **state_dict(model, optimizer, rng, epoch + 1, best, cfg))
        writer.write({"epoch": epoch + 1, "iteration": (epoch + 1) * len(sampler), "split": "test",
                      **{f"train/{k}": v for k, v in losses.items()}, **_scalars(metrics),
                      "best_auc": best["auc"], "best_epoch": best["epoch"], "selection": SELECTION_NOTE,
                      **protocol.val_record(val, best)}, epoch + 1)
        logger.info("epoch %d: loss %.4f  test AUC %.4f  AP %.4f  FAR %.4f  (best %.4f at epoch %s)%s", epoch + 1,
                    losses["loss"], metrics["auc"], metrics["ap"], metrics["far"], best["auc"], best["epoch"],
                    f"  val {val['val_metric']} {val['val']:.4f} (best at epoch {best['val_epoch']})" if val else "")
    writer.close()
    return finish(cfg, model, store, train_videos, test_videos, labels, device, logger, best)


def _scalars(metrics):
    return {k: v for k, v in metrics.items() if k != "per_class"} | ({"per_class": metrics["per_class"]}
                                                                     if metrics.get("per_class") else {})


if __name__ == "__main__":
    sys.exit(cli.run(main))
