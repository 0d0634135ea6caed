"""Clip features from videos or a frames h5 for stage 1: Kinetics I3D, Sports-1M C3D, a fine-tuned
MIST encoder, I3D-ResNet50, CLIP image towers or torchvision's video models (--encoder,
engine/encoders.py).

    python tools/extract_features.py /data/SHT/videos features/SHT_I3D.h5 \\
        --encoder i3d --weights model_rgb.pth
    python tools/extract_features.py frames/ucf.h5 features/UCF_C3D.h5 --encoder c3d \\
        --weights c3d.pickle --cfg configs/ucf_crime/c3d_stage1.yaml
    python tools/extract_features.py frames/sht.h5 features/sht_mist_i3d --encoder mist \\
        --format npy --crops 10 --weights output/sht_i3d_stage2/checkpoints/best.pth \\
        --cfg configs/shanghaitech/i3d_stage2.yaml
    python tools/extract_features.py frames/ucf.h5 features/UCF_I3D_R50 --encoder i3d_r50 \\
        --format npy --crops 10 --weights pretrained/i3d_r50_kinetics.pth
    python tools/extract_features.py frames/ucf.h5 features/UCF_R2P1D.h5 --encoder r2plus1d_18 \\
        --weights pretrained/r2plus1d_18-91a641e6.pth
    torchrun --standalone --nproc_per_node 8 tools/extract_features.py frames/ucf.h5 \\
        features/UCF_I3D.h5 ...

One feature per whole 16-frame clip: i3d 1024-d, c3d 4096-d (fc6), mist 1024-d (I3D) or 512-d
(C3D), i3d_r50 2048-d (docs/i3d_r50.md), clip_vit_b16 512-d, clip_vit_l14 768-d (docs/clip.md),
r2plus1d_18 512-d, s3d 1024-d, mvit_v2_s and swin3d_t 768-d (docs/backbones.md). Resumable (the
same command skips finished videos), any number of torchrun processes; the output's dimension is
printed at the end (DATA.FEATURE_DIM). engine/extract.py says more.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import extract
from utils import cli
from utils.config import load_cfg


def parse_args(argv=None):
    parser = cli.tool_parser(__doc__)
    parser.add_argument(
        "source", help="frames h5 (tools/make_h5.py), a folder or list file of videos, or a video"
    )
    parser.add_argument("out", help="output .h5 file (--format h5) or folder (--format npy)")
    parser.add_argument(
        "--encoder",
        choices=extract.ENCODERS,
        required=True,
        help="the feature extractor (README 'Encoders', engine/encoders.py)",
    )
    parser.add_argument("--weights", required=True, help="the encoder's checkpoint")
    parser.add_argument(
        "--format",
        choices=("h5", "npy"),
        default="h5",
        help="official h5 or RTFM-style .npy folder",
    )
    parser.add_argument(
        "--crops", type=int, default=1, choices=(1, 5, 10), help="views per clip (crop axis if > 1)"
    )
    parser.add_argument(
        "--names", default=None, help="split file: extract only its videos (DATA.DATASET format)"
    )
    parser.add_argument(
        "--force", action="store_true", help="delete an existing output and start over"
    )
    parser.add_argument(
        "--frame-features",
        action="store_true",
        help="also each frame's features (clip_* encoders; engine/extract.py says where)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--timeout-hours",
        type=float,
        default=24.0,
        help="torchrun: how long a rank may wait for the others (at the start and the end)",
    )
    cli.add_overrides(parser)
    return parser.parse_intermixed_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_cfg(args.cfg or None, args.opts)
    return extract.extract_features(
        cfg,
        args.source,
        args.out,
        args.encoder,
        args.weights,
        args.format,
        args.crops,
        args.names,
        args.force,
        not args.no_progress,
        args.timeout_hours,
        args.frame_features,
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
