"""A dataset of your own (datasets/manifest.py): the manifest format, its errors, and every tool on
generated videos described by a manifest under names and folders of their own."""

import json
import shutil

import numpy as np
import pytest

from datasets.manifest import read_manifest
from datasets.splits import Video
from run_tool import run_tool
from utils.config import ConfigError, load_cfg
from utils.errors import InputError, NotFoundError
from utils.video import probe_video

HEADER = "name,label,split,frames,intervals\n"
GOOD = "a,1,train,100,10-20\nb,0,train,80,\nc,1,test,50,5-10;20-30\nd,0,test,40,\n"


def _write(tmp_path, text, name="m.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_and_jsonl_describe_the_same_dataset(tmp_path):
    csv = read_manifest(_write(tmp_path, HEADER + GOOD))
    rows = [
        {"name": "a", "label": 1, "split": "train", "frames": 100, "intervals": [[10, 20]]},
        {"name": "b", "label": 0, "split": "train", "frames": 80},
        {"name": "c", "label": 1, "split": "test", "frames": 50, "intervals": [[5, 10], [20, 30]]},
        {"name": "d", "label": 0, "split": "test", "frames": 40},
    ]
    jsonl = read_manifest(_write(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), "m.jsonl"))
    for m in (csv, jsonl):
        assert m.videos("train") == [Video("a", 1, 100, ""), Video("b", 0, 80, "Normal")]
        assert [v.name for v in m.videos("test")] == ["c", "d"] and m.videos("val") == []
        truth = m.frame_labels(["c", "d"])
        expected = np.zeros(50, np.uint8)
        expected[5:10] = expected[20:30] = 1
        assert np.array_equal(truth["c"], expected) and np.array_equal(truth["d"], np.zeros(40))


def test_intervals_in_seconds_masks_and_categories(tmp_path):
    np.save(tmp_path / "e.npy", np.array([0, 1, 1, 0], np.uint8))
    text = (
        "name,label,split,category,frames,fps,intervals_s,mask\n"
        "a,1,train,fight,100,,,\nb,0,train,,80,,,\n"
        "c,1,test,fight,50,10,0.5-1.5,\ne,1,test,theft,,,,e.npy\n"
    )
    m = read_manifest(_write(tmp_path, text))
    # 0.5 s .. 1.5 s at 10 fps: frames [5, 15)
    assert np.flatnonzero(m.frame_labels(["c"])["c"]).tolist() == list(range(5, 15))
    assert m.frame_labels(["e"])["e"].tolist() == [0, 1, 1, 0]
    assert [v.category for v in m.videos("test")] == ["fight", "theft"]
    # a train video without intervals has no mask: the pseudo-label AUC skips it
    assert m.frame_labels(["a", "b"]).keys() == {"b"}


@pytest.mark.parametrize(
    "rows,error,match",
    [
        (
            "a,1,train,100,10-20\na,0,test,40,\n",
            InputError,
            r"m\.csv:3: video 'a' is listed twice \(also on line 2\)",
        ),
        ("a,2,train,100,\n", InputError, r"m\.csv:2: label '2' of 'a' must be 0 or 1"),
        ("a,1,dev,100,\n", InputError, r"m\.csv:2: split 'dev' of 'a' must be one of"),
        (
            "a,1,test,50,40-60\n",
            InputError,
            r"m\.csv:2: interval \[40, 60\) of 'a' is outside its 50 frames",
        ),
        (
            "a,1,test,50,10-20;15-30\n",
            InputError,
            r"m\.csv:2: intervals \[10, 20\) and \[15, 30\) of 'a' overlap",
        ),
        ("a,1,test,50,\n", InputError, r"m\.csv:2: test video 'a' has no ground truth"),
        ("a,0,test,,\n", InputError, r"m\.csv:2: test video 'a' has no ground truth: give its"),
        ("a,0,train,50,\nb,0,test,40,\n", InputError, r"no abnormal \(label 1\) training video"),
        ("a,0,train,50,10-20\n", InputError, r"m\.csv:2: 'a' is labelled 0 \(normal\) but has"),
        ("a,1,train,many,\n", InputError, r"m\.csv:2: frames 'many' is not a whole number"),
        ("a,1,test,,10-20\n", InputError, r"m\.csv:2: 'a' has intervals but neither `frames`"),
        ("a,1,test,50,10-x\n", InputError, r"m\.csv:2: intervals '10-x': write start-end"),
    ],
)
def test_bad_manifests_name_the_file_line_and_field(tmp_path, rows, error, match):
    with pytest.raises(error, match=match):
        read_manifest(_write(tmp_path, HEADER + rows))


def test_bad_columns_and_missing_files(tmp_path):
    with pytest.raises(InputError, match=r"m\.csv:1: unknown field\(s\) \['lable'\]"):
        read_manifest(_write(tmp_path, "name,lable,split\na,1,train\n"))
    with pytest.raises(InputError, match=r"m\.csv:1: the `split` field is missing"):
        read_manifest(_write(tmp_path, "name,label\na,1\n"))
    with pytest.raises(NotFoundError, match=r"m\.csv:2: path 'cams/a\.mp4' does not exist"):
        read_manifest(_write(tmp_path, "path,label,split\ncams/a.mp4,1,train\n"))
    with pytest.raises(InputError, match=r"m\.csv:3: 2 values for the 3 columns"):
        read_manifest(_write(tmp_path, "name,label,split\na,1,train\nb,0\n"))
    with pytest.raises(InputError, match=r"m\.csv:2: fps 'fast' must be a positive number"):
        read_manifest(_write(tmp_path, "name,label,split,fps,intervals_s\na,1,test,fast,1-2\n"))
    (tmp_path / "cams").mkdir()
    (tmp_path / "cams" / "a.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"m\.csv:2: name 'b' differs from its file's name 'a'"):
        read_manifest(_write(tmp_path, "name,path,label,split\nb,cams/a.mp4,1,train\n"))
    with pytest.raises(NotFoundError, match=r"manifest .*none\.csv does not exist"):
        read_manifest(tmp_path / "none.csv")


def test_an_unknown_dataset_needs_a_manifest(tmp_path):
    with pytest.raises(ConfigError, match=r"DATA\.DATASET = 'cameras' is not one of .*MANIFEST"):
        load_cfg(None, ["DATA.DATASET", "cameras"])
    manifest = _write(tmp_path, HEADER + GOOD)
    cfg = load_cfg(None, ["DATA.DATASET", "cameras", "DATA.MANIFEST", str(manifest)])
    assert cfg.DATA.MANIFEST == str(manifest)


# ------------------------------------------------------------------------------ the whole chain
COUNTS = (3, 3, 2, 2)  # generated train normal, train abnormal, test normal, test abnormal
TINY = [
    "MODEL.BACKBONE",
    "c3d",
    "MODEL.WIDTH",
    "0.0625",
    "MODEL.EXPAND_K",
    "2",
    "DATA.TRAIN_SIZE",
    "[32, 40, 32]",
    "DATA.TEST_SIZE",
    "[32, 40, 32]",
]


def _runs(mask):
    """uint8 (n,) -> [(start, end)] of its runs of 1s."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """Generated videos renamed into two camera folders, described by a manifest; one normal and one
    abnormal training video held out as `val`."""
    from datasets.demo_videos import make_demo_videos
    from datasets.splits import read_split

    root = tmp_path_factory.mktemp("own")
    made = make_demo_videos(root / "made", *COUNTS)
    videos = [(v, "train") for v in read_split(made["train_split"], "demo")]
    videos += [(v, "test") for v in read_split(made["test_split"], "demo")]
    lines, held = ["path,label,split,intervals"], set()
    for k, (video, split) in enumerate(videos):
        folder = root / "footage" / ("lobby" if k % 2 else "gate")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"cam{k:02d}_{'incident' if video.label else 'quiet'}.mp4"
        shutil.copy(made["out_dir"] + f"/videos/{video.name}.mp4", target)
        if split == "train" and video.label not in held:
            split = "val"
            held.add(video.label)
        intervals = ""
        if video.label:
            mask = np.load(f"{made['mask_dir']}/{video.name}.npy")
            intervals = ";".join(f"{s}-{e}" for s, e in _runs(mask))
        lines.append(f"{target.relative_to(root)},{video.label},{split},{intervals}")
    (root / "cameras.csv").write_text("\n".join(lines) + "\n")
    # the manifest's intervals give back the generator's frame masks exactly
    truth = read_manifest(root / "cameras.csv").frame_labels(
        [f"cam{k:02d}_incident" for k, (v, _) in enumerate(videos) if v.label]
    )
    for k, (video, _) in enumerate(videos):
        if video.label:
            mask = np.load(f"{made['mask_dir']}/{video.name}.npy")
            assert np.array_equal(truth[f"cam{k:02d}_incident"], mask)
    return root


def _is_val(root, video):
    rows = (root / "cameras.csv").read_text().splitlines()
    return any(r.startswith(str(video.relative_to(root)) + ",") and ",val," in r for r in rows)


def test_every_tool_runs_on_a_dataset_of_your_own(own, tmp_path):
    from datasets.demo_features import FEATURE_DIM, extract_all
    from datasets.frames import open_frames

    manifest = own / "cameras.csv"
    data = ["DATA.DATASET", "cameras", "DATA.MANIFEST", str(manifest), "DATA.NUM_WORKERS", "0"]
    # frames h5 straight from the manifest's paths
    assert run_tool("make_h5", [str(manifest), str(tmp_path / "frames.h5")]) == 0
    frames = open_frames(tmp_path / "frames.h5")
    names = sorted(frames.names)
    assert names == sorted(p.stem for p in (own / "footage").rglob("*.mp4")) and len(names) == 10
    extract_all(frames, names, tmp_path / "features.h5", progress=False)
    s1 = run_tool(
        "train_stage1",
        [
            "--cfg",
            "",
            *data,
            "DATA.FEATURES",
            str(tmp_path / "features.h5"),
            "DATA.FEATURE_DIM",
            str(FEATURE_DIM),
            "STAGE1.EPOCHS",
            "4",
            "STAGE1.EVAL_PERIOD",
            "2",
            "STAGE1.BATCH_SIZE",
            "2",
            "OUTPUT_DIR",
            str(tmp_path / "s1"),
        ],
    )
    # 4 test videos (2 abnormal), the val split as the manifest says, pseudo-labels of 6 videos
    assert s1["test"]["n_videos"] == 4 and set(s1["test_by_checkpoint"]) >= {"best_val"}
    assert len(np.load(tmp_path / "s1" / "pseudo_labels.npz").files) == 6
    stage2 = (
        data
        + TINY
        + [
            "DATA.FRAMES",
            str(tmp_path / "frames.h5"),
            "DATA.PSEUDO_LABELS",
            str(tmp_path / "s1" / "pseudo_labels.npz"),
            "STAGE2.BATCH_SIZE",
            "1",
            "STAGE2.CLIP_NUM",
            "1",
            "STAGE2.EPOCHS",
            "1",
            "TEST.BATCH_SIZE",
            "8",
        ]
    )
    s2 = run_tool("train_stage2", ["--cfg", "", *stage2, "OUTPUT_DIR", str(tmp_path / "s2")])
    ckpt = tmp_path / "s2" / "checkpoints" / "last.pth"
    test = run_tool(
        "test",
        ["--cfg", "", *stage2, "TEST.CHECKPOINT", str(ckpt), "OUTPUT_DIR", str(tmp_path / "test")],
    )
    assert test["auc"] == pytest.approx(s2["test"]["auc"]) and test["n_videos"] == 4
    calibration = tmp_path / "test" / "test_last_calibration.json"
    assert json.loads(calibration.read_text())["split"] == "test"
    # thresholds from the held-out val videos instead (one normal, one abnormal)
    run_tool(
        "test",
        [
            "--cfg",
            "",
            *stage2,
            "TEST.CHECKPOINT",
            str(ckpt),
            "TEST.CALIBRATION_SPLIT",
            "val",
            "OUTPUT_DIR",
            str(tmp_path / "val"),
        ],
    )
    on_val = json.loads((tmp_path / "val" / "test_last_calibration.json").read_text())
    val_normal = next(p for p in (own / "footage").rglob("*quiet.mp4") if _is_val(own, p))
    assert on_val["split"] == "val" and on_val["n_reference_frames"] == 16 * (
        probe_video(val_normal)[0] // 16
    )
    # features of the fine-tuned encoder, read from the manifest's videos
    feats = run_tool(
        "extract_features",
        [
            str(manifest),
            str(tmp_path / "mist.h5"),
            "--encoder",
            "mist",
            "--weights",
            str(ckpt),
            "--no-progress",
            *stage2,
        ],
    )
    assert feats["videos_written"] == 10
    video = next((own / "footage").rglob("*incident.mp4"))
    far = json.loads(calibration.read_text())["thresholds"][0]["target_far"]
    result = run_tool(
        "infer",
        [
            str(video),
            "--model",
            str(ckpt),
            "--calibration",
            str(calibration),
            "--far",
            str(far),
            "--quiet",
            "--out",
            str(tmp_path / "infer"),
        ],
    )
    assert result["stats"]["windows"] >= 1
    figures = run_tool("visualize", [str(tmp_path / "s1"), "--out", str(tmp_path / "fig")])
    assert (tmp_path / "fig" / "score_curves.png").is_file() and figures["metrics"]
