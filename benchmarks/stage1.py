"""Stage-1 speed: our paths against a reference that does what the official code does, same machine,
same data.

    python benchmarks/stage1.py  # SHT + UCF sizes, I3D (1024) and C3D (4096)
    python benchmarks/stage1.py --datasets sht --dims 1024 --iters 5
    python benchmarks/stage1.py --rss --rss-scale 1.0 --dir /data/tmp  # UCF-C3D stage 1, lazy, peak
    RSS

Generated features on the real splits and lengths: ShanghaiTech (238 train / 199 test videos, 8,794
test clips; anomalies follow the real frame masks) and UCF-Crime (1,610 train videos, 790,271 train
clips; 290 test videos, 69,364 clips, real temporal annotation). Clip rows carry a signal along one
direction in proportion to the clip's anomalous frames. UCF train clips come from a fixed
131,072-row pool (row r of a video = pool[(offset + r) % pool]): 13 GB of C3D features do not fit
here, and an iteration's cost depends on the batch shape and the real lengths (repeated clips), not
on the pool's size.

Rows (per dataset x width; best of --repeats, the machine may be shared):
  train it/s      40 + 40 bags of 32 x 7 = 224 clips, forward + MIL loss + backward + clip + Adagrad
                  step:
    plain           BagSampler, np.concatenate, MILGenerator on every sampled row, torch's dropout
    rows            BagSampler.iter_rows(): one gather, no concatenation (the same batches and
                    numbers; tools/train_stage1.py with STAGE1.DEDUP_ROWS False FAST_DROPOUT False)
    exact           iter_rows(dedup=True) + MILGenerator(rows, inverse): only distinct rows are
                    gathered and pass Linear(D, 512), whose weight gradient skips the rows without a
                    gradient; torch's dropout masks, so the scores of `rows` bit for bit and its
                    gradients to float rounding (tests/test_speed_paths.py; STAGE1.FAST_DROPOUT
                    False)
    default         exact + numpy dropout masks (STAGE1.FAST_DROPOUT True): what
                    tools/train_stage1.py runs by default; another random stream, so its AUC is
                    compared over a longer run (--agreement)
    reference       the official loop: Dataset.__getitem__ per video with numpy sampling (np.random,
                    a Python list of sub-bags), DataLoader(batch 40, drop_last, --ref-workers: 0,
                    the official 4 re-forks its workers every epoch = every SHT iteration) collate,
                    torch.cat, the official top-k loss with its Python loop over the batch
  eval s          every test clip scored + all metrics (AUC, AP, PR-AUC, gap, both FARs, RMSE, per
                  class)
    ours            utils.scoring.score_videos (16,384-clip batches) + utils.evaluation.evaluate
    reference       one forward per clip (official eval), Python lists extended with [score] * 16
                    and the frame labels, then the same metrics on the 1-D frame arrays
  PL s            scores of every train clip + refinement: ours score_videos + refine_all; reference
                  the official 1000-clip chunks + per-video smoothing. UCF sizes run it once
                  (--repeats 1).
  AUC             test AUC after the timed iterations of each path (SHT; UCF's pool rows carry no
                  labels)
--agreement N trains `default` and `reference` for N iterations from 3 seeds each on SHT-sized data
(every
--dims) and prints the test AUCs: the fast path learns what the official loop learns.
The paths take turns in one process with utils.env.keep_large_blocks() applied
(engine/stage1.py calls it), so the reference gains from it too; "reference, own process" then
times the reference again in a fresh process with glibc's default allocator, as the official program
runs (--no-ref-process skips it).
--rss runs tools/train_stage1.py (configs/ucf_crime/c3d_stage1.yaml: DATA.STORAGE lazy, 1 epoch = 20
iterations, evaluation, pseudo-labels of all 1,610 train videos) in a child process on an h5 of
UCF-C3D size x --rss-scale and reports its peak RSS (getrusage)."""

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from datasets.bags import BagSampler
from datasets.features import canonical_name, open_features, write_h5_features
from datasets.ground_truth import frame_labels, load_mask
from datasets.splits import read_split
from engine.stage1 import build_optimizer, train, train_step
from models.build import build_generator, build_stage1_loss
from utils.config import load_cfg
from utils.env import keep_large_blocks
from utils.evaluation import evaluate
from utils.pseudo_labels import refine_all
from utils.scoring import score_videos

from benchmarks.stage1_reference import (
    B,
    CLIP,
    L,
    T,
    TOPK,
    OfficialBags,
    reference_eval,
    reference_pseudo_labels,
    reference_steps,
)

POOL_ROWS = 131_072
OUR_PATHS = ("plain", "rows", "exact", "default")
SHT, UCF = ROOT / "data" / "shanghaitech", ROOT / "data" / "ucf_crime"


def describe_machine():
    """-> lines naming the CPU, cores, load, GPU and versions (printed by every benchmark)."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        "?",
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    import h5py, sklearn  # noqa: E401

    load = os.getloadavg()
    return [
        (
            f"CPU: {cpu}, {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable),"
            f" torch threads {torch.get_num_threads()}; GPU: {gpu}"
        ),
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        + ("  -> MEASURED UNDER LOAD" if load[0] > 2 else ""),
        (
            f"python {platform.python_version()}, torch {torch.__version__}, numpy"
            f" {np.__version__}, sklearn {sklearn.__version__}, h5py {h5py.__version__}; command:"
            f" python {' '.join(sys.argv)}"
        ),
    ]


def best_of(fn, repeats):
    """-> (seconds of the fastest of `repeats` calls, the last result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


# ---------------------------------------------------------------------------------------- the data
def split_lengths(dataset):
    """-> (train [(name, label, n_clips, anomalous-frame fraction per clip or None)], test videos,
    test GT)."""
    if dataset == "sht":
        test = read_split(SHT / "SH_Test_NEW.txt", "shanghaitech")
        gt = frame_labels(test, "shanghaitech", mask_dir=SHT / "test_frame_mask")
        frames = {
            r["video"]: int(r["frames"])
            for r in csv.DictReader(open(SHT / "train_frame_counts.csv"))
        }
        train = []
        for v in read_split(SHT / "SH_Train_new.txt", "shanghaitech"):
            mask = load_mask(SHT / "test_frame_mask" / f"{v.name}.npy") if v.label else None
            train.append((v.name, v.label, frames[v.name] // CLIP, mask))
        return train, test, gt
    test = read_split(UCF / "Temporal_Anomaly_Annotation_New.txt", "ucf_crime")
    gt = frame_labels(test, "ucf_crime", annotation=UCF / "Temporal_Anomaly_Annotation_New.txt")
    rows = csv.DictReader(open(UCF / "train_frame_counts.csv"))
    train = [
        (
            canonical_name(r["video"]),
            int("Normal" not in r["video"]),
            int(r["frames"]) // CLIP,
            None,
        )
        for r in rows
    ]
    return train, test, gt


def clip_fraction(mask, n_clips):
    return mask[: n_clips * CLIP].reshape(n_clips, CLIP).mean(axis=1)


def video_features(rng, n_clips, fraction, direction):
    """float32 (n_clips, D): noise of row norm ~3.5 (§10: the official recipe needs small rows) +
    signal."""
    dim = len(direction)
    x = rng.standard_normal((n_clips, dim), dtype=np.float32) * np.float32(3.5 / np.sqrt(dim))
    if fraction is not None:
        x += np.outer(fraction, direction).astype(np.float32)
    return x


def make_data(dataset, dim, tmp, seed=0):
    """-> (train store, train videos [(name, label)], test store, test videos, test GT)."""
    rng = np.random.default_rng(seed)
    direction = np.abs(rng.standard_normal(dim)) * (0.25 / np.sqrt(dim))  # ~2.3 noise sd along it
    train, test, gt = split_lengths(dataset)
    n_test = {v.name: len(gt[v.name]) // CLIP for v in test}
    test_feats = {
        n: video_features(rng, c, clip_fraction(gt[n], c), direction) for n, c in n_test.items()
    }
    path = Path(tmp) / f"{dataset}_{dim}_test.h5"
    write_h5_features(path, test_feats)
    test_store = open_features(path, list(test_feats), dim=dim)
    if dataset == "sht":
        feats = {
            n: video_features(rng, c, None if m is None else clip_fraction(m, c), direction)
            for n, _, c, m in train
        }
        path = Path(tmp) / f"{dataset}_{dim}_train.h5"
        write_h5_features(path, feats)
        train_store = open_features(path, list(feats), dim=dim)
    else:
        train_store = PoolStore(
            {n: c for n, _, c, _ in train}, video_features(rng, POOL_ROWS, None, direction)
        )
    return train_store, [(n, lab) for n, lab, _, _ in train], test_store, test, gt


class PoolStore:
    """The FeatureStore calls stage 1 makes (num_clips, gather, iter_batches), over a pool of
    rows."""

    def __init__(self, lengths, pool):
        self.names, self.pool, self.dim = list(lengths), pool, pool.shape[1]
        self.lengths = lengths
        self.offsets = dict(zip(self.names, np.cumsum([0] + list(lengths.values()))[:-1]))

    def num_clips(self, name):
        return self.lengths[name]

    def video(self, name):
        """-> an array-like of the video's rows (len, fancy indexing) that copies only what is
        indexed."""
        return _PoolVideo(self, name)

    def get(self, name):
        return self.pool[(self.offsets[name] + np.arange(self.lengths[name])) % len(self.pool)]

    def gather(self, names, idx):
        rows = np.array([self.offsets[n] for n in names])[:, None] + np.stack(idx)
        return self.pool[rows % len(self.pool)]

    def gather_rows(self, names, idx):
        rows = np.repeat([self.offsets[n] for n in names], [len(i) for i in idx]) + np.concatenate(
            idx
        )
        return self.pool[rows % len(self.pool)]

    def iter_batches(self, names, max_rows=65536):
        names, start, rows = list(names), 0, 0
        for i, name in enumerate(names + [None]):
            if name is None or (rows and rows + self.lengths[name] > max_rows):
                batch = names[start:i]
                yield (
                    batch,
                    np.concatenate([self.get(n) for n in batch]),
                    np.array([self.lengths[n] for n in batch]),
                )
                start, rows = i, 0
            if name is not None:
                rows += self.lengths[name]


class _PoolVideo:
    def __init__(self, store, name):
        self.store, self.name = store, name

    def __len__(self):
        return self.store.lengths[self.name]

    def __getitem__(self, idx):
        return self.store.gather([self.name], [np.asarray(idx)])[0]


# --------------------------------------------------------------------------------------------- ours
def bench_cfg(mode="default", dim=1024):
    """The stage-1 config of a path: the defaults with the official batch shape (B, L, T, TOPK)."""
    shape = {
        "STAGE1.BATCH_SIZE": B,
        "STAGE1.PART_NUM": L,
        "STAGE1.PART_LEN": T,
        "STAGE1.TOPK": TOPK,
    }
    opts = {**shape, "STAGE1.FAST_DROPOUT": mode == "default", "DATA.FEATURE_DIM": dim}
    return load_cfg(None, [str(x) for kv in opts.items() for x in kv])


def our_steps(model, optimizer, sampler, mode, cfg):
    """Generator: one iteration (engine.stage1.train_step) per next(); mode 'plain' | 'rows' |
    'exact' | 'default'."""
    loss_fn = build_stage1_loss(cfg)
    while True:
        batches = iter(sampler) if mode == "plain" else sampler.iter_rows(dedup=mode != "rows")
        for first, second in batches:
            if mode == "plain":
                rows, inverse = torch.from_numpy(np.concatenate([first, second])), None
            else:
                rows, inverse = (
                    torch.from_numpy(first),
                    (None if second is None else torch.from_numpy(second)),
                )
            terms = train_step(model, optimizer, loss_fn, rows, inverse, cfg.STAGE1.GRAD_CLIP)
            yield {k: v.item() for k, v in terms.items()}


def fresh_model(dim, seed=0, mode="default"):
    torch.manual_seed(seed)
    cfg = bench_cfg(mode, dim)
    model = build_generator(cfg)
    return model, build_optimizer(cfg, model)


def make_path(mode, train_store, train, seed=0, ref_workers=0):
    """-> (model, generator of iterations) of one training path: OUR_PATHS or "reference"."""
    normal, abnormal = [n for n, lab in train if lab == 0], [n for n, lab in train if lab == 1]
    model, opt = fresh_model(train_store.dim, seed, mode)
    if mode == "reference":
        np.random.seed(seed)
        return model, reference_steps(
            model.train(), opt, OfficialBags(train_store, normal, abnormal), ref_workers
        )
    sampler = BagSampler(
        train_store, normal, abnormal, B, L, T, "uniform", np.random.default_rng(seed)
    )
    return model, our_steps(model.train(), opt, sampler, mode, bench_cfg(mode))


def time_paths(paths, n_iters):
    """paths {name: (model, steps)} take turns, one iteration each, so a change of the machine's
    load hits all of them alike; each starts with one untimed warm-up -> {name: (best s/iteration,
    median, model)}."""
    times = {mode: [] for mode in paths}
    for i in range(n_iters + 1):
        for mode, (model, steps) in paths.items():
            torch.manual_seed(1000 + i)  # the same dropout masks for every path
            start = time.perf_counter()
            next(steps)
            times[mode].append(time.perf_counter() - start)
    return {
        mode: (min(t[1:]), float(np.median(t[1:])), paths[mode][0]) for mode, t in times.items()
    }


def bench_training(train_store, train, n_iters, ref_workers=0):
    """-> {path: (best s/iteration, median, trained model)} for OUR_PATHS and the reference."""
    return time_paths(
        {
            mode: make_path(mode, train_store, train, ref_workers=ref_workers)
            for mode in OUR_PATHS + ("reference",)
        },
        n_iters,
    )


def reference_process(dataset, dim, iters, threads):
    """Times the reference loop in a fresh interpreter (glibc's default allocator) -> (best, median)
    s/it."""
    cmd = [sys.executable, __file__, "--ref-child", f"{dataset},{dim},{iters}"] + (
        ["--threads", str(threads)] if threads else []
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["best"], result["median"]


def reference_child(spec):
    """--ref-child DATASET,DIM,ITERS: the reference's iterations as bench_training times them ->
    JSON line."""
    dataset, dim, iters = spec.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        train_store, train, *_ = make_data(dataset, int(dim), tmp)
        best, median, _ = time_paths(
            {"reference": make_path("reference", train_store, train)}, int(iters)
        )["reference"]
    print(json.dumps({"best": best, "median": median}))


def run_config(dataset, dim, args, tmp):
    start = time.perf_counter()
    train_store, train, test_store, test, gt = make_data(dataset, dim, tmp)
    print(
        f"\n## {dataset.upper()}-sized, D={dim}: {len(train)} train / {len(test)} test videos,"
        f" {sum(len(g) // CLIP for g in gt.values()):,} test clips (data made in"
        f" {time.perf_counter() - start:.0f} s)"
    )
    train_res = bench_training(train_store, train, args.iters, args.ref_workers)
    model = train_res["rows"][2]
    names, cpu = [v.name for v in test], torch.device("cpu")
    ours_eval, ref_eval, ours_pl, ref_pl = [float("inf")] * 4
    for r in range(args.repeats):  # ours and the reference alternate, as the training paths do
        t, ours = best_of(
            lambda: evaluate(score_videos(model, test_store, names, cpu, 16384), gt, test), 1
        )
        ours_eval = min(ours_eval, t)
        if r < 2:  # the reference is slow: best of two
            t, ref = best_of(lambda: reference_eval(model, test_store, test, gt), 1)
            ref_eval = min(ref_eval, t)
        if r < (1 if dataset == "ucf" else args.repeats):  # UCF: ~800k train clips, once
            t, pl = best_of(
                lambda: refine_all(
                    score_videos(model, train_store, [n for n, _ in train], cpu, 16384), dict(train)
                ),
                1,
            )
            ours_pl = min(ours_pl, t)
            t, ref_labels = best_of(lambda: reference_pseudo_labels(model, train_store, train), 1)
            ref_pl = min(ref_pl, t)
    pl_diff = max(float(np.abs(pl[n] - ref_labels[n]).max()) for n, _ in train)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows = [(f"train it/s ({k})", 1 / v[0], 1 / v[1]) for k, v in train_res.items()]
    if not args.no_ref_process:
        own = reference_process(dataset, dim, args.iters, args.threads)
        rows.append(("train it/s (reference, own process)", 1 / own[0], 1 / own[1]))
    print(f"{'measure':<26} {'best':>9} {'median':>9}")
    for name, best, median in rows:
        print(f"{name:<26} {best:9.3f} {median:9.3f}")
    ref_it = train_res["reference"][0]
    print(
        "train speed-up vs reference (best): "
        + ", ".join(f"{k} {ref_it / v[0]:.2f}x" for k, v in train_res.items() if k != "reference")
    )
    if not args.no_ref_process:
        print(
            "train speed-up vs reference in its own process (best): "
            + ", ".join(
                f"{k} {own[0] / v[0]:.2f}x" for k, v in train_res.items() if k != "reference"
            )
        )
    print(
        f"eval s: ours {ours_eval:.3f}, reference {ref_eval:.3f}  -> {ref_eval / ours_eval:.1f}x"
        f" (AUC ours {ours['auc']:.6f}, reference {ref['auc']:.6f}, |diff|"
        f" {abs(ours['auc'] - ref['auc']):.1e})"
    )
    print(
        f"PL s:   ours {ours_pl:.3f}, reference {ref_pl:.3f}  -> {ref_pl / ours_pl:.2f}x "
        f"(max |PL diff| {pl_diff:.1e})"
    )
    if dataset == "sht":
        aucs = {
            k: evaluate(score_videos(v[2], test_store, names, cpu), gt, test)["auc"]
            for k, v in train_res.items()
        }
        print(
            f"test AUC after {args.iters + 1} iterations: "
            + ", ".join(f"{k} {v:.4f}" for k, v in aucs.items())
        )
    print(f"peak RSS of this process so far: {rss:.2f} GiB")


def agreement(args, tmp):
    """Trains `default` and `reference` for args.agreement iterations from 3 seeds on SHT-sized
    data."""
    for dim in args.dims:
        train_store, train, test_store, test, gt = make_data("sht", dim, tmp)
        names, aucs = [v.name for v in test], {"default": [], "reference": []}
        for seed in range(3):
            for key in aucs:
                model, steps = make_path(key, train_store, train, seed)
                for _ in range(args.agreement):
                    next(steps)
                aucs[key].append(
                    evaluate(score_videos(model, test_store, names, torch.device("cpu")), gt, test)[
                        "auc"
                    ]
                )
        print(
            f"\n## agreement, SHT-sized, D={dim}: test AUC after {args.agreement} iterations, seeds"
            " 0 1 2"
        )
        for key, values in aucs.items():
            print(
                f"{key:<10} "
                + " ".join(f"{v:.4f}" for v in values)
                + f"   mean {np.mean(values):.4f}"
            )


# ---------------------------------------------------------------------------------------- peak RSS
def rss_run(args):
    """Writes a UCF-C3D-sized h5 (real split names, lengths x scale) and runs stage 1 on it in a
    child."""
    from benchmarks.feature_memory import SyntheticFeatures

    train, test, gt = split_lengths("ucf")
    lengths = {n: max(1, round(c * args.rss_scale)) for n, _, c, _ in train}
    lengths.update({v.name: max(1, round(len(gt[v.name]) // CLIP * args.rss_scale)) for v in test})
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        h5 = Path(tmp) / "ucf_c3d.h5"
        start = time.perf_counter()
        write_h5_features(h5, SyntheticFeatures(lengths, 4096))
        total = sum(lengths.values())
        print(
            f"wrote {total:,} clips x 4096 = {total * 4096 * 4 / 1e9:.1f} GB in"
            f" {time.perf_counter() - start:.0f} s"
        )
        opts = [
            "--cfg",
            str(ROOT / "configs/ucf_crime/c3d_stage1.yaml"),
            "DATA.FEATURES",
            str(h5),
            "OUTPUT_DIR",
            str(Path(tmp) / "run"),
            "STAGE1.EPOCHS",
            "1",
            "STAGE1.EVAL_PERIOD",
            "1",
            "DEVICE",
            "cpu",
            "STAGE1.PART_LEN",
            str(T),
        ]
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", json.dumps(opts)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        res = json.loads(out.strip().splitlines()[-1])
    print(
        f"stage 1 (lazy, 20 iterations of 40+40 x {L}x{T} clips, test evaluation, pseudo-labels of "
        f"{len(train)} videos) at scale {args.rss_scale}: peak RSS {res['peak_rss_gib']:.2f} GiB, "
        f"{res['seconds']:.0f} s"
    )


def rss_child(opts):
    opts = json.loads(opts)
    start = time.perf_counter()
    train(load_cfg(opts[1], opts[2:]))
    print(
        json.dumps(
            {
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                "seconds": time.perf_counter() - start,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["sht", "ucf"], choices=["sht", "ucf"])
    parser.add_argument("--dims", nargs="+", type=int, default=[1024, 4096])
    parser.add_argument(
        "--iters", type=int, default=8, help="timed training iterations per path (+1 warm-up)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="evaluation / PL timings: best of this many"
    )
    parser.add_argument(
        "--ref-workers",
        type=int,
        default=0,
        help="reference DataLoader workers (official: 4, re-forked every epoch; 0 = kinder)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    parser.add_argument(
        "--agreement",
        type=int,
        default=0,
        metavar="N",
        help="only train default and reference for N iterations x 3 seeds (SHT) and print AUCs",
    )
    parser.add_argument("--rss", action="store_true", help="only the UCF-C3D lazy peak-RSS run")
    parser.add_argument(
        "--rss-scale", type=float, default=0.1, help="--rss: multiply every clip count"
    )
    parser.add_argument(
        "--dir", default=None, help="--rss: folder for the h5 (default: the system temp dir)"
    )
    parser.add_argument(
        "--no-ref-process",
        action="store_true",
        help="skip timing the reference again in a fresh process (default allocator)",
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--ref-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args.rss_child)
    if args.ref_child:
        return reference_child(args.ref_child)
    print("\n".join(describe_machine()))
    if args.rss:
        return rss_run(args)
    print(f"utils.env.keep_large_blocks(): {keep_large_blocks()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.agreement:
            return agreement(args, tmp)
        for dataset in args.datasets:
            for dim in args.dims:
                run_config(dataset, dim, args, tmp)


if __name__ == "__main__":
    main()
