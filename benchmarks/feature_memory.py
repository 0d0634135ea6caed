"""Peak RSS, held feature bytes and gather time of the three storage modes of datasets/features.py.

The synthetic official-layout h5 is shaped like UCF-Crime C3D train features: the 1,610 train videos
with their real clip counts (data/ucf_crime/train_frame_counts.csv // 16 = 790,271 clips) x 4096
float32 = 12.9 GB on disk at --scale 1. --scale s multiplies every clip count (at least 1 clip per
video), so
--scale 0.02 writes ~260 MB. Each storage mode runs in its own process, so the peak RSS
(resource.getrusage) is that mode's alone; the stage-1 workload is 40 normal + 40 abnormal bags of
32 x 7 = 224 clips (datasets/sampling.py, 'uniform'), gathered --iters times, then one full pass of
iter_batches over every clip (the evaluation / pseudo-label workload).

    python benchmarks/feature_memory.py --scale 0.02            # writes to a temp dir, deletes it
    python benchmarks/feature_memory.py --dir /data/tmp --keep   # full size, keeps the h5
Lazy-mode times are with the h5 in the page cache (it was just written) unless it exceeds free RAM.
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from datasets.features import STORAGES, canonical_name, open_features, write_h5_features
from datasets.sampling import sparse_continuous_sample

# official stage-1 bag: L=32 sub-bags of T=7 clips (docs/REFERENCE.md §1.3)
PART_NUM, PART_LEN = 32, 7


class SyntheticFeatures(Mapping):
    """{video: float32 (n_clips, dim)} generated on access, so writing never holds more than one
    video."""

    def __init__(self, lengths, dim, seed=0):
        self.lengths, self.dim, self.seed = lengths, dim, seed
        self.order = list(lengths)

    def __getitem__(self, name):
        rng = np.random.default_rng([self.seed, self.order.index(name)])
        return rng.standard_normal((self.lengths[name], self.dim), dtype=np.float32)

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


def ucf_lengths(scale):
    """{canonical UCF train video: clip count} from the real frame counts, scaled (>= 1 clip
    each)."""
    with open(ROOT / "data" / "ucf_crime" / "train_frame_counts.csv") as f:
        rows = list(csv.DictReader(f))
    clips = np.array([int(r["frames"]) // 16 for r in rows])
    clips = np.maximum(1, np.round(clips * scale)).astype(int)
    return {canonical_name(r["video"]): int(n) for r, n in zip(rows, clips)}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_mode(path, names, storage, iters, bags):
    """One storage mode, in this process -> dict of measurements."""
    base = peak_rss_mib()
    start = time.perf_counter()
    store = open_features(path, names, storage=storage)
    open_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    times = []
    for _ in range(iters):
        batch = [names[i] for i in rng.choice(len(names), 2 * bags, replace=False)]
        idx = [
            sparse_continuous_sample(store.num_clips(n), PART_NUM, PART_LEN, "uniform", rng)
            for n in batch
        ]
        start = time.perf_counter()
        store.gather(batch, idx)
        times.append(time.perf_counter() - start)
    gather_rss = peak_rss_mib()
    start = time.perf_counter()
    rows = sum(len(feats) for _, feats, _ in store.iter_batches(names))
    pass_s = time.perf_counter() - start
    assert rows == sum(store.num_clips(n) for n in names)
    return {
        "storage": storage,
        "open_s": open_s,
        "held_mib": store.memory_bytes() / 2**20,
        "import_rss_mib": base,
        "gather_rss_mib": gather_rss,
        "pass_rss_mib": peak_rss_mib(),
        "gather_ms": 1e3 * np.mean(times),
        "gather_max_ms": 1e3 * np.max(times),
        "pass_s": pass_s,
    }


def print_table(results, clips, dim, path, bags):
    print(
        f"\n{clips:,} clips x {dim} float32 = {clips * dim * 4 / 1e9:.2f} GB in {path}"
        f" ({os.path.getsize(path) / 1e9:.2f} GB on disk); peak RSS is after the gathers / after"
        " the full pass,"
    )
    print(
        f"minus {results[0]['import_rss_mib']:.0f} MiB of RSS after imports; one gather returns "
        f"{2 * bags * PART_NUM * PART_LEN * dim * 4 / 2**20:.0f} MiB"
    )
    print(
        f"{'storage':<8} {'open s':>7} {'memory_bytes':>13} {'peak RSS gather':>16}"
        f" {'peak RSS pass':>14} {'gather ms':>10} {'(max)':>7} {'full pass s':>12}"
    )
    for r in results:
        base = r["import_rss_mib"]
        print(
            f"{r['storage']:<8} {r['open_s']:7.2f} {r['held_mib']:9.0f} MiB"
            f" {r['gather_rss_mib'] - base:12.0f} MiB {r['pass_rss_mib'] - base:10.0f} MiB"
            f" {r['gather_ms']:10.1f} {r['gather_max_ms']:7.1f} {r['pass_s']:12.2f}"
        )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every video's clip count"
    )
    parser.add_argument(
        "--dim", type=int, default=4096, help="feature dimension (C3D: 4096, I3D: 1024)"
    )
    parser.add_argument("--iters", type=int, default=20, help="gathers of 40+40 bags per mode")
    parser.add_argument("--bags", type=int, default=40, help="bags per class per gather")
    parser.add_argument(
        "--dir", default=None, help="folder for the h5 (default: a temp dir, deleted after)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the h5 (with --dir)")
    parser.add_argument("--worker", choices=STORAGES, help=argparse.SUPPRESS)
    parser.add_argument("--h5", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keep and not args.dir:
        parser.error("--keep needs --dir (the default temp dir is always deleted)")
    lengths = ucf_lengths(args.scale)
    if args.worker:  # child process: one mode, measurements as JSON on stdout
        print(json.dumps(run_mode(args.h5, list(lengths), args.worker, args.iters, args.bags)))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(
            args.dir if args.keep and args.dir else tmp, f"ucf_synthetic_{args.scale:g}.h5"
        )
        start = time.perf_counter()
        write_h5_features(path, SyntheticFeatures(lengths, args.dim))
        print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
        results = []
        for storage in STORAGES:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                storage,
                "--h5",
                path,
                "--scale",
                str(args.scale),
                "--iters",
                str(args.iters),
                "--bags",
                str(args.bags),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        print_table(results, sum(lengths.values()), args.dim, path, args.bags)


if __name__ == "__main__":
    main()
