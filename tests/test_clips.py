"""Stage-2 ClipDataset on a fake frame source whose pixels encode (video, frame index)
(docs/REFERENCE.md §3.6)."""

import warnings

import numpy as np
import pytest
import torch

from datasets.clip_labels import clip_labels
from datasets.clips import ClipDataset
from datasets.frames import FrameSource
from datasets.splits import Video
from datasets.transforms import TrainTransform


class FakeFrames(FrameSource):
    """A FrameSource whose frame f of video number v has B = f % 256, G = f // 256, R = v in every
    pixel (read_frames: the base class's slice of read_segments)."""

    def __init__(self, n_frames, hw=(6, 8)):
        super().__init__(list(n_frames), 16, "fake frames")
        self.n_frames, self.hw = dict(n_frames), hw

    def num_segments(self, name):
        return self.n_frames[name] // 16

    def read_segments(self, name, start, count):
        assert 0 <= start and count >= 1 and start + count <= self.num_segments(name), (
            name,
            start,
            count,
        )
        f = np.arange(start * 16, (start + count) * 16)
        out = np.zeros((f.size, *self.hw, 3), np.uint8)
        out[..., 0], out[..., 1], out[..., 2] = (
            (f % 256)[:, None, None],
            (f // 256)[:, None, None],
            self.names.index(name),
        )
        return out

    def iter_segments(self, name, batch):
        for start in range(0, self.num_segments(name), batch):
            yield (
                start,
                self.read_segments(name, start, min(batch, self.num_segments(name) - start)),
            )


def raw(frames, rng):
    """Identity 'transform': uint8 (16, H, W, 3) -> float32 (3, 16, H, W), BGR kept."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float()


def decode(clip):
    """(3, 16, H, W) raw clip -> (video number, frame indices (16,))."""
    frames = (clip[0, :, 0, 0] + 256 * clip[1, :, 0, 0]).long().numpy()
    return int(clip[2, 0, 0, 0]), frames


VIDEOS = [Video("abn_long", 1), Video("norm", 0), Video("abn_one_seg", 1), Video("abn_two_seg", 1)]
FRAMES = {"abn_long": 16 * 20 + 5, "norm": 16 * 9, "abn_one_seg": 20, "abn_two_seg": 40}
PLS = {
    "abn_long": np.linspace(0.0, 0.95, 20) ** 2,
    "norm": np.full(9, 0.3),
    "abn_one_seg": np.array([0.7]),
    "abn_two_seg": np.array([0.1, 0.9]),
}


def make(**kw):
    args = dict(frames=FakeFrames(FRAMES), videos=VIDEOS, pseudo_labels=PLS, transform=raw)
    return ClipDataset(**{**args, **kw})


def test_clips_are_16_consecutive_frames_at_perturbed_positions_with_matching_labels():
    ds, begins = make(), set()
    for epoch in range(15):
        ds.set_epoch(epoch)
        clips, labels = ds[0]
        assert clips.shape == (3, 3, 16, 6, 8) and clips.dtype == labels.dtype == torch.float32
        starts = []
        for clip in clips:
            video, frames = decode(clip)
            assert video == 0
            np.testing.assert_array_equal(frames, frames[0] + np.arange(16))
            starts.append(frames[0])
        c, begin = np.array(starts) // 16, np.array(starts) % 16
        # random_perturb(19, 3) strata: [0, 6], [6, 12], [12, 18] -> segment c + 1 <= 19 always
        # exists
        assert (c >= [0, 6, 12]).all() and (c <= [6, 12, 18]).all()
        # correct direction: ((16-b) PL[c] + b PL[c+1]) / 16
        s = clip_labels(PLS["abn_long"], c, begin)
        np.testing.assert_allclose(labels.numpy(), np.stack([1 - s, s], 1), rtol=1e-6)
        begins |= set(begin.tolist())
    assert len(begins) > 10  # temporal jitter over U{0..15}


def test_label_modes_reach_the_labels():
    ds = make(label_mode="max")
    clips, labels = ds[0]
    starts = np.array([decode(c)[1][0] for c in clips])
    pl = PLS["abn_long"]
    np.testing.assert_allclose(
        labels[:, 1].numpy(), np.maximum(pl[starts // 16], pl[starts // 16 + 1]), rtol=1e-6
    )


def test_short_videos():
    ds = make()
    clips, labels = ds[2]  # 20 frames = 1 segment: the clip is segment 0, begin 0
    for clip in clips:
        np.testing.assert_array_equal(decode(clip)[1], np.arange(16))
    np.testing.assert_allclose(labels.numpy(), [[0.3, 0.7]] * 3, rtol=1e-6)
    for epoch in range(10):  # 2 segments < clip_num: c = 0 for every clip, frames 0..31 only
        ds.set_epoch(epoch)
        clips, labels = ds[3]
        begin = np.array([decode(clip)[1][0] for clip in clips])
        assert (begin < 16).all()
        np.testing.assert_allclose(
            labels[:, 1].numpy(), (16 - begin) / 16 * 0.1 + begin / 16 * 0.9, rtol=1e-6
        )


def test_normal_and_hard_labels():
    np.testing.assert_array_equal(make()[1][1].numpy(), [[1, 0]] * 3)  # paper: normal clips are 0
    np.testing.assert_allclose(
        make(normal_label="pseudo")[1][1].numpy(), [[0.7, 0.3]] * 3, rtol=1e-6
    )
    hard = make(pseudo_labels=None, hard_labels=True)  # "w/o PLs": no pseudo-labels needed
    np.testing.assert_array_equal(hard[0][1].numpy(), [[0, 1]] * 3)
    np.testing.assert_array_equal(hard[1][1].numpy(), [[1, 0]] * 3)
    assert make().normal_indices() == [1] and make().abnormal_indices() == [0, 2, 3]


def test_missing_pseudo_labels_and_empty_videos_are_named():
    pls = {k: v for k, v in PLS.items() if k != "abn_two_seg"}
    with pytest.raises(
        KeyError, match=r"'abn_two_seg' has no pseudo-labels .* look like \['abn_long'"
    ):
        make(pseudo_labels=pls)
    # normal videos need none ('zero')
    make(pseudo_labels={"abn_long": PLS["abn_long"]}, videos=VIDEOS[:2])
    with pytest.raises(KeyError, match="'norm' has no pseudo-labels"):
        make(pseudo_labels={"abn_long": PLS["abn_long"]}, videos=VIDEOS[:2], normal_label="pseudo")
    with pytest.raises(ValueError, match="'abn_long' needs pseudo-labels but none"):
        make(pseudo_labels=None)
    frames = FakeFrames({**FRAMES, "tiny": 15})
    with pytest.raises(
        ValueError, match="'tiny' has fewer than 16 frames.*drop it from the train split"
    ):
        make(frames=frames, videos=VIDEOS + [Video("tiny", 0)])
    with pytest.raises(KeyError, match="'ghost' of the train split has no frames"):
        make(videos=[Video("ghost", 0)])


def test_pseudo_label_length_mismatch_is_aligned_and_warned():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one short (C3D-style): silent
        ds = make(pseudo_labels={**PLS, "abn_long": PLS["abn_long"][:19]})
    np.testing.assert_array_equal(ds.pls[0], np.append(PLS["abn_long"][:19], PLS["abn_long"][18]))
    with pytest.warns(UserWarning, match="'abn_long': 17 pseudo-labels for 20 frame segments"):
        make(pseudo_labels={**PLS, "abn_long": PLS["abn_long"][:17]})


def test_draws_depend_on_seed_epoch_and_index_only():
    a, b = make(seed=3), make(seed=3)
    a.set_epoch(2), b.set_epoch(2)
    for x, y in zip(a[0], b[0]):
        assert torch.equal(x, y)
    first = a[0][0]
    a.set_epoch(3)
    assert a.epoch == 3 and not torch.equal(a[0][0], first)
    assert not torch.equal(make(seed=4)[0][0], make(seed=3)[0][0])


def test_workers_see_set_epoch_and_give_the_same_items():
    ds = make()
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=1, persistent_workers=True
    )
    for epoch in (0, 1):
        ds.set_epoch(epoch)  # after the persistent worker started: must still reach it
        expect = [ds[i][0] for i in range(len(ds))]
        got = [clips for clips, _ in loader]
        assert all(torch.equal(x, y) for x, y in zip(got, expect))
    assert not torch.equal(got[0], make()[0][0])  # epoch 1 differs from epoch 0


def test_with_the_real_train_transform():
    clips, labels = make(transform=TrainTransform("c3d", size=((6, 8), 4)))[0]
    assert clips.shape == (3, 3, 16, 4, 4) and labels.shape == (3, 2)
