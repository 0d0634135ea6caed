"""The self-supervised pace pretext (datasets/pace.py, engine/pretext.py) and the video demo's
self-training chain verdict (engine/demo.py)."""

import h5py
import numpy as np
import pytest
import torch

from datasets.demo_videos import make_demo_videos
from datasets.pace import PaceClips
from engine.demo import CONFIGS, data_opts, print_self_training, run_self_training, verdict
from engine.encoders import build_encoder
from engine.frames_h5 import make_h5
from engine.pretext import ENCODER_FILE, PaceModel, pace_accuracy, pretrain
from models.mist import MIST
from models.weights import load_weights
from utils.config import load_cfg
from utils.errors import ExistsError, InputError


class NumberedFrames:
    """A frame source whose frame f of video v is filled with (f % 256, v, 0)."""

    segment_len = 16

    def __init__(self, lengths):
        self.lengths = lengths

    def num_segments(self, name):
        return self.lengths[name] // 16

    def read_frames(self, name, first, count):
        assert 0 <= first and first + count <= self.lengths[name]
        frames = np.zeros((count, 4, 4, 3), np.uint8)
        frames[..., 0] = (np.arange(first, first + count) % 256)[:, None, None]
        frames[..., 1] = sorted(self.lengths).index(name)
        return frames


def identity(frames, rng):
    return torch.from_numpy(np.ascontiguousarray(frames))


def test_items_are_clips_at_their_class_stride():
    lengths = {"a": 64, "b": 96, "c": 160}
    data = PaceClips(NumberedFrames(lengths), list(lengths), (1, 2, 4), identity, 60, seed=3)
    seen = set()
    for i in range(len(data)):
        clip, cls = data[i]
        name, first, stride, cls_drawn, _ = data.draw(i)
        assert cls == cls_drawn == i % 3 and stride == (1, 2, 4)[cls]
        index = np.arange(16) * stride + first
        assert clip.shape == (16, 4, 4, 3)
        np.testing.assert_array_equal(clip[:, 0, 0, 0].numpy(), index % 256)
        assert int(clip[0, 0, 0, 1]) == sorted(lengths).index(name)
        assert index[-1] < lengths[name]
        seen.add((name, stride))
    assert len(seen) == 9  # every video at every stride


def test_items_are_the_same_in_any_order_and_differ_by_seed():
    lengths = {"a": 64, "b": 96}

    def make(seed):
        return PaceClips(NumberedFrames(lengths), list(lengths), (1, 3), identity, 20, seed)

    first, again, other = make(0), make(0), make(1)
    order = [first.draw(i)[:3] for i in range(20)]
    assert [again.draw(i)[:3] for i in reversed(range(20))] == order[::-1]
    assert [other.draw(i)[:3] for i in range(20)] != order


def test_a_stride_takes_only_the_videos_long_enough():
    lengths = {"short": 32, "long": 80}
    data = PaceClips(NumberedFrames(lengths), list(lengths), (1, 4), identity, 40, seed=0)
    assert data.eligible == [["long", "short"], ["long"]]
    assert {data.draw(i)[0] for i in range(1, 40, 2)} == {"long"}


def test_a_stride_no_video_fits_is_refused():
    with pytest.raises(InputError, match=r"PRETEXT.STRIDES 4: .* spans 61 frames.*'b'.* 48"):
        PaceClips(NumberedFrames({"a": 32, "b": 48}), ["a", "b"], (1, 4), identity, 4, seed=0)


class FixedLogits(torch.nn.Module):
    def __init__(self, predictions):
        super().__init__()
        self.predictions = predictions

    def forward(self, clips):
        return torch.nn.functional.one_hot(self.predictions[: len(clips)], 3).float()


def test_pace_accuracy_counts_the_confusion():
    clips = torch.zeros(4, 16, 2, 2, 3, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0])
    model = FixedLogits(torch.tensor([0, 2, 2, 1]))
    accuracy, confusion = pace_accuracy(model, [(clips, labels)], torch.device("cpu"), "i3d", 3)
    assert accuracy == 0.5
    assert confusion == [[1, 1, 0], [0, 0, 1], [0, 0, 1]]


def test_pretext_keys_are_checked():
    for key, value, message in [
        ("PRETEXT.STRIDES", "[1]", "at least two different"),
        ("PRETEXT.STRIDES", "[2, 2]", "at least two different"),
        ("PRETEXT.STRIDES", "[0, 2]", "at least two different"),
        ("PRETEXT.ITERS", "0", "PRETEXT.ITERS must be positive"),
        ("PRETEXT.LR", "0.0", "PRETEXT.LR must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_cfg(CONFIGS / "stage2_self_training.yaml", [key, value])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(cfg, output folder, report) of a 3-iteration pace pretraining on 4 generated videos."""
    root = tmp_path_factory.mktemp("pretext")
    make_demo_videos(root / "videos", 2, 2, 1, 1)
    make_h5(root / "videos" / "videos.txt", root / "frames.h5", progress=False)
    opts = ["DATA.FRAMES", str(root / "frames.h5"), "DATA.NUM_WORKERS", "0", "DEVICE", "cpu"]
    opts += ["PRETEXT.ITERS", "3", "PRETEXT.BATCH_SIZE", "3", "PRETEXT.EVAL_CLIPS", "6"]
    cfg = load_cfg(CONFIGS / "stage2_self_training.yaml", opts + data_opts(root))
    report = pretrain(cfg, root / "pretext")
    return cfg, root / "pretext", report


def test_pretraining_reports_its_run(pretrained):
    _, _, report = pretrained
    assert report["iterations"] == 3 and report["videos"] == 4 and report["strides"] == [1, 2, 4]
    confusion = np.array(report["eval_confusion"])
    assert confusion.sum() == 6 and (confusion.sum(1) == 2).all()  # 2 clips per stride
    assert report["eval_accuracy"] == np.trace(confusion) / 6
    assert report["chance"] == pytest.approx(1 / 3)
    assert [c["iteration"] for c in report["train_curve"]] == [3]


def test_the_encoder_loads_into_stage_2_and_the_extractor(pretrained):
    cfg, out, _ = pretrained
    saved = torch.load(out / ENCODER_FILE, weights_only=True)
    assert saved["kind"] == "pretext" and all(k.startswith("backbone.") for k in saved["model"])
    # training moved the weights away from the seeded initialisation
    torch.manual_seed(cfg.SEED)
    init = PaceModel("i3d", cfg.MODEL.WIDTH, 3).backbone.state_dict()
    moved = [k for k, v in init.items() if not torch.equal(v, saved["model"][f"backbone.{k}"])]
    assert "conv3d_1a_7x7.conv3d.weight" in moved
    model = MIST("i3d", width=cfg.MODEL.WIDTH)
    report = load_weights(model, out / ENCODER_FILE)
    assert report.left_at_init and all(k.startswith(("sga.", "head.")) for k in report.left_at_init)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, saved["model"][f"backbone.{key}"]), key
    encoder = build_encoder("i3d", out / ENCODER_FILE, cfg, 1)
    assert encoder.dim == model.backbone.out_channels == 256  # the demo's 1/4 width
    for key, value in encoder.module.backbone.state_dict().items():
        assert torch.equal(value, saved["model"][f"backbone.{key}"]), key


def test_an_existing_encoder_is_not_overwritten(pretrained):
    cfg, out, _ = pretrained
    before = (out / ENCODER_FILE).read_bytes()
    with pytest.raises(ExistsError, match="encoder.pth exists"):
        pretrain(cfg, out)
    assert (out / ENCODER_FILE).read_bytes() == before


def test_pace_needs_a_backbone_it_can_train():
    with pytest.raises(InputError, match="r2plus1d_18"):
        PaceModel("r2plus1d_18", 1.0, 3)


def _result(s1, s2, mist):
    return {
        k: {"test": {"auc": v}} for k, v in (("stage1", s1), ("stage2", s2), ("stage1_mist", mist))
    }


def test_the_verdict_says_which_way_it_went():
    gain, gain_mist, text = verdict(_result(0.80, 0.875, 0.83))
    assert gain == pytest.approx(7.5) and gain_mist == pytest.approx(3.0)
    assert text.startswith("self-training helped: the fine-tuned encoder scores +7.50")
    gain, _, text = verdict(_result(0.80, 0.79, 0.78))
    assert gain == pytest.approx(-1.0) and "did NOT help" in text and "-1.00" in text


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The self-training chain of engine/demo.py at toy size: 3 pace iterations, 1 stage-2 epoch."""
    data = tmp_path_factory.mktemp("chain")
    make_demo_videos(data / "videos", 2, 2, 1, 1)
    make_h5(data / "videos" / "videos.txt", data / "frames.h5", progress=False)
    opts = ["DATA.NUM_WORKERS", "0", "DEVICE", "cpu", "PRETEXT.ITERS", "3"]
    opts += ["PRETEXT.BATCH_SIZE", "3", "PRETEXT.EVAL_CLIPS", "3"]
    opts += ["STAGE2.EPOCHS", "1", "STAGE2.EVAL_PERIOD", "1", "STAGE2.BATCH_SIZE", "2"]
    stage1_extra = ["STAGE1.BATCH_SIZE", "2", "STAGE1.EPOCHS", "3", "STAGE1.EVAL_PERIOD", "3"]
    return data, run_self_training(data, 0, data / "st", opts, stage1_extra), (opts, stage1_extra)


def _rows(path):
    with h5py.File(path, "r") as h5:
        return {key: h5[key][()] for key in h5 if isinstance(h5[key], h5py.Dataset)}


def test_the_chain_fine_tunes_the_pretrained_encoder(chain):
    data, result, _ = chain
    out = data / "st"
    assert result["pretext"]["iterations"] == 3
    cfg = load_cfg(out / "stage2" / "config.yaml")
    assert cfg.MODEL.PRETRAINED == str(out / "pretext" / ENCODER_FILE)
    assert cfg.DATA.PSEUDO_LABELS == str(out / "stage1" / "pseudo_labels.npz")
    before, after = _rows(out / "features_pretext.h5"), _rows(out / "features_mist.h5")
    assert before.keys() == after.keys() and len(before) == 6  # every train and test video
    dim = MIST("i3d", width=cfg.MODEL.WIDTH).backbone.out_channels
    assert all(v.shape[1] == dim and np.isfinite(v).all() for v in before.values())
    # the second stage-1 run reads the fine-tuned encoder's features, not the pretrained ones
    assert all(not np.allclose(before[k], after[k]) for k in before)
    for key in ("stage1", "stage1_mist"):
        assert load_cfg(out / key / "config.yaml").DATA.FEATURES == str(
            out / ("features_pretext.h5" if key == "stage1" else "features_mist.h5")
        )
    assert {"stage1", "stage2", "stage1_mist"} <= result.keys()


def test_an_interrupted_chain_continues_without_retraining(chain, capsys):
    data, result, (opts, stage1_extra) = chain
    out = data / "st"
    encoder = (out / "pretext" / ENCODER_FILE).read_bytes()
    again = run_self_training(data, 0, out, opts, stage1_extra)
    assert (out / "pretext" / ENCODER_FILE).read_bytes() == encoder
    for key in ("stage1", "stage2", "stage1_mist"):
        assert again[key]["test"]["auc"] == result[key]["test"]["auc"], key
    print_self_training(again, 60.0)
    text = capsys.readouterr().out
    for row in (
        "stage 1 on the pretrained encoder's features",
        "stage 2: the fine-tuned encoder's scores",
        "stage 1 on the fine-tuned encoder's features (MIST)",
    ):
        assert row in text
    assert verdict(again)[2] in text and "done in 1.0 min" in text
