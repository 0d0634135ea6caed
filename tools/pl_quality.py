"""Pseudo-label quality, the paper's Table 7: frame AUC of pseudo-labels on the abnormal TRAINING
videos.

    python tools/pl_quality.py data/shanghaitech/official_pseudo_labels/SHT_I3D_PLs.npy
    python tools/pl_quality.py output/shanghaitech/i3d_stage1  # a stage-1 run: before and after
    python tools/pl_quality.py PL_FILE --raw RAW_SCORES --masks DIR --split FILE [--clip-len 16]
    [--json OUT]

PL_FILE is any pseudo-label file (ours .npz/.npy or the authors' pickled .npy) or a stage-1 run
folder (its pseudo_labels.npz, and train_scores.npz = the generator's scores before refinement),
measured against the per-frame masks of the split's abnormal videos (default: the 63 masked
ShanghaiTech training videos; engine/pl_quality.py says more).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import pl_quality
from utils import cli


def parse_args(argv):
    # no --cfg: the inputs are files and folders
    parser = cli.tool_parser(__doc__, cfg=False)
    parser.add_argument("pl_file", help="pseudo-label file (.npz / .npy) or a stage-1 run folder")
    parser.add_argument(
        "--raw", help="generator scores before refinement (default: RUN/train_scores.npz)"
    )
    parser.add_argument(
        "--masks", help="folder of <video>.npy frame masks (default: ShanghaiTech's)"
    )
    parser.add_argument(
        "--split", help="train split naming the abnormal videos (default: SH_Train_new.txt)"
    )
    parser.add_argument(
        "--dataset", default="shanghaitech", help="split naming convention (default shanghaitech)"
    )
    parser.add_argument(
        "--clip-len", type=int, default=16, help="frames per pseudo-label value (default 16)"
    )
    parser.add_argument("--json", help="also write the report as JSON here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return pl_quality.measure(
        args.pl_file, args.raw, args.masks, args.split, args.dataset, args.clip_len, args.json
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
