"""Videos -> the official stage-2 frames h5 (docs/REFERENCE.md §4.8), read back by
datasets/frames.py.

    python tools/make_h5.py /data/UCF_Crime/videos frames/ucf_frames.h5 --workers 8
    python tools/make_h5.py data/sht_videos.txt frames/sht.h5 --root /data/SHT/videos --resize 240
    320

VIDEOS: a folder (searched recursively), a list file of video paths, or one video. Resumable: run
the same command again after a kill. Exit code: 0; 1 if any video was skipped (unless
--allow-skips); 2 when nothing is written; 130 on Ctrl-C (engine/frames_h5.py says more).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.frames import SEGMENT_LEN
from engine import frames_h5
from utils import cli


def parse_args(argv=None):
    # no --cfg: a conversion takes no config
    parser = cli.tool_parser(__doc__, cfg=False)
    parser.add_argument(
        "videos", help="folder of videos (recursive), list file of video paths, or one video"
    )
    parser.add_argument("out", help="output frames h5")
    parser.add_argument("--root", default=None, help="base folder of relative paths in a list file")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes, one video each")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (official: 95)")
    parser.add_argument(
        "--resize",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="store frames resized to H x W (default: original size, as official)",
    )
    parser.add_argument(
        "--segment-len", type=int, default=SEGMENT_LEN, help="frames per key (official: 16)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument(
        "--allow-skips", action="store_true", help="exit 0 even if some videos were skipped"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return frames_h5.convert(
        args.videos,
        args.out,
        args.workers,
        args.quality,
        args.resize,
        args.segment_len,
        args.root,
        args.force,
        args.allow_skips,
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
