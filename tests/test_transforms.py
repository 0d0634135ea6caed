"""Stage-2 clip transforms: sizes, normalisation, colour order, crop/flip draws, 10-crop
(docs/REFERENCE.md §3.6, §4.1, §4.5)."""

import cv2
import numpy as np
import pytest
import torch

from datasets.transforms import (
    CropParams,
    TestTransform,
    TrainTransform,
    crop_candidates,
    five_crop_offsets,
    fixed_offsets,
    normalise,
    resize_clip,
    resized_crop,
)


def _assert_equal(actual, expected):
    """Exact equality (broadcasting expected); numpy's check is much faster than torch.testing
    here."""
    np.testing.assert_array_equal(
        actual.numpy(), np.broadcast_to(np.asarray(expected), actual.shape)
    )


def _constant_clip(bgr=(10, 20, 30), shape=(4, 60, 80)):
    clip = np.empty(shape + (3,), np.uint8)
    clip[...] = bgr
    return clip


def _random_clip(shape=(16, 60, 80), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)


@pytest.mark.parametrize(
    "make, out_shape",
    [
        (lambda: TrainTransform("i3d"), (3, 16, 224, 224)),
        (lambda: TrainTransform("c3d"), (3, 16, 112, 112)),
        (lambda: TrainTransform("i3d", size=((64, 85), 56)), (3, 16, 56, 56)),
        (lambda: TestTransform("i3d", "shanghaitech"), (3, 16, 240, 320)),
        (lambda: TestTransform("i3d", "ucf_crime"), (3, 16, 256, 340)),
        (lambda: TestTransform("i3d", "xd_violence"), (3, 16, 256, 340)),
        (lambda: TestTransform("c3d", "shanghaitech"), (3, 16, 112, 112)),
        (lambda: TestTransform("c3d", "ucf_crime", ten_crop=True), (10, 3, 16, 112, 112)),
        (
            lambda: TestTransform("i3d", "demo", ten_crop=True, size=((64, 85), 56)),
            (10, 3, 16, 56, 56),
        ),
    ],
)
def test_output_shapes_and_dtype(make, out_shape):
    out = make()(_random_clip((16, 120, 160)), np.random.default_rng(0))
    assert (
        isinstance(out, torch.Tensor)
        and out.dtype == torch.float32
        and tuple(out.shape) == out_shape
    )


def test_i3d_is_rgb_scaled_by_128():
    expect = torch.tensor([(30 - 128) / 128, (20 - 128) / 128, (10 - 128) / 128])  # R, G, B
    for out in (
        TrainTransform("i3d")(_constant_clip(), np.random.default_rng(3)),
        TestTransform("i3d", "shanghaitech")(_constant_clip()),
    ):
        _assert_equal(out, expect.view(3, 1, 1, 1))


def test_c3d_stays_bgr_minus_sports1m_mean():
    mean = np.float32([90.25, 97.66, 101.41])
    expect = torch.from_numpy(np.float32([10, 20, 30]) - mean).view(3, 1, 1, 1)  # B, G, R
    train = TrainTransform("c3d").apply(
        _constant_clip(), CropParams(0, 0, 128, 128, flip=True, gray=False)
    )
    for out in (train, TestTransform("c3d", "ucf_crime")(_constant_clip())):
        _assert_equal(out, expect)
    gray = TrainTransform("c3d").apply(
        _constant_clip(), CropParams(0, 0, 128, 128, flip=False, gray=True)
    )
    luma = np.float32(22)  # round(0.114*10 + 0.587*20 + 0.299*30) = round(21.85), cv2 BGR2GRAY
    _assert_equal(gray, torch.from_numpy(luma - mean).view(3, 1, 1, 1))


def test_multiscale_crop_candidates_match_reference():
    assert crop_candidates(256, 340, 224) == [(256, 256), (256, 204), (204, 256), (204, 204)]  # I3D
    assert {s for pair in crop_candidates(128, 171, 112) for s in pair} == {128, 102}  # C3D
    assert TrainTransform("i3d").candidates == crop_candidates(256, 340, 224)
    # 114 snaps to 112
    assert crop_candidates(114, 150, 112) == [(112, 112), (112, 91), (91, 112), (91, 91)]
    assert crop_candidates(256, 340, 224, max_distort=0) == [(256, 256), (204, 204)]
    assert fixed_offsets(256, 340, 204, 256) == [(0, 0), (0, 84), (52, 0), (52, 84), (26, 42)]
    assert len(fixed_offsets(256, 340, 204, 256, more_fix_crop=True)) == 13


def test_sampled_parameters_cover_candidates_offsets_flip_and_gray():
    rng = np.random.default_rng(0)
    c3d = TrainTransform("c3d")
    draws = [c3d.sample(rng) for _ in range(2000)]
    allowed = {
        (top, left, h, w) for h, w in c3d.candidates for top, left in fixed_offsets(128, 171, h, w)
    }
    seen = {(p.top, p.left, p.height, p.width) for p in draws}
    assert seen == allowed  # 4 sizes x 5 positions, nothing else
    assert 0.4 < np.mean([p.flip for p in draws]) < 0.6
    assert 0.07 < np.mean([p.gray for p in draws]) < 0.13
    # no grayscale for I3D
    assert not any(TrainTransform("i3d").sample(rng).gray for _ in range(200))


def test_apply_crops_the_drawn_box_then_resizes():
    clip = _random_clip((16, 100, 130))
    params = CropParams(top=26, left=42, height=204, width=256, flip=False, gray=False)
    out = TrainTransform("i3d").apply(clip, params)
    frame = cv2.resize(clip[5], (340, 256), interpolation=cv2.INTER_LINEAR)[26:230, 42:298]
    frame = cv2.resize(frame, (224, 224), interpolation=cv2.INTER_LINEAR)[..., ::-1]  # RGB
    expect = (torch.from_numpy(frame.astype(np.float32)).permute(2, 0, 1) - 128) / 128
    _assert_equal(out[:, 5], expect)


def test_flip_mirrors_width():
    clip, t = _random_clip(), TrainTransform("c3d", size=((60, 80), 48))
    plain = t.apply(clip, CropParams(6, 8, 48, 60, flip=False, gray=False))
    flipped = t.apply(clip, CropParams(6, 8, 48, 60, flip=True, gray=False))
    assert not torch.equal(plain, flipped)
    _assert_equal(flipped, plain.flip(-1))


@pytest.mark.parametrize("backbone", ["i3d", "c3d"])
def test_one_draw_per_clip_all_frames_transformed_alike(backbone):
    clip = np.repeat(_random_clip((1, 90, 120)), 16, axis=0)  # 16 identical frames
    t = TrainTransform(backbone, size=((64, 85), 56))
    outs = [t(clip, np.random.default_rng(seed)) for seed in range(8)]
    for out in outs:
        _assert_equal(out, out[:, :1])
    assert len({o.sum().item() for o in outs}) > 1  # while different clips do get different draws


def test_randomness_only_from_the_generator():
    clip, t = _random_clip(), TrainTransform("c3d", size=((60, 80), 48))
    np.random.seed(1), torch.manual_seed(1)
    a = t(clip, np.random.default_rng(5))
    np.random.seed(2), torch.manual_seed(2)
    _assert_equal(a, t(clip, np.random.default_rng(5)))


def test_c3d_centre_crop_uses_official_offsets():
    # left 30, not 29
    assert five_crop_offsets(128, 171, 112) == [(0, 0), (0, 59), (16, 0), (16, 59), (8, 30)]
    clip = _random_clip((16, 128, 171))  # already at the resize size: no interpolation
    out = TestTransform("c3d", "shanghaitech")(clip)
    expect = torch.from_numpy(clip[:, 8:120, 30:142].astype(np.float32)).permute(3, 0, 1, 2)
    _assert_equal(out, expect - torch.tensor([90.25, 97.66, 101.41]).view(3, 1, 1, 1))


@pytest.mark.parametrize("backbone, dataset", [("c3d", "ucf_crime"), ("i3d", "shanghaitech")])
def test_ten_crop_views_and_mirrors(backbone, dataset):
    clip = _random_clip((16, 50, 60))
    ten = TestTransform(backbone, dataset, ten_crop=True, size=((40, 52), 30))(clip)
    assert ten.shape == (10, 3, 16, 30, 30)
    _assert_equal(ten[5:], ten[:5].flip(-1))  # views 5..9 mirror views 0..4
    offsets = five_crop_offsets(40, 52, 30)
    assert offsets == [(0, 0), (0, 22), (10, 0), (10, 22), (5, 11)]  # 4 corners + centre
    resized = np.stack([cv2.resize(f, (52, 40), interpolation=cv2.INTER_LINEAR) for f in clip])
    # 30x30 input: no resize, no crop
    normalise_only = TestTransform(backbone, dataset, size=((30, 30), 30))
    for k, (top, left) in enumerate(offsets):
        view = normalise_only(np.ascontiguousarray(resized[:, top : top + 30, left : left + 30]))
        _assert_equal(ten[k], view)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown backbone 'r3d'"):
        TrainTransform("r3d")
    with pytest.raises(ValueError, match="uint8 BGR frames"):
        TestTransform("i3d", "shanghaitech")(np.zeros((16, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        TrainTransform("c3d", size=((40, 52), 60))


def test_resize_clip_reads_crop_and_flipped_views_as_their_copies():
    clip = np.random.default_rng(3).integers(0, 256, (4, 30, 40, 3), dtype=np.uint8)
    for view in (clip[:, 5:25, 7:33], clip[:, :, ::-1], clip[:, ::-1], clip[..., ::-1]):
        out = resize_clip(view, (11, 17))
        assert out.shape == (4, 11, 17, 3) and out.flags.c_contiguous
        np.testing.assert_array_equal(out, resize_clip(np.ascontiguousarray(view), (11, 17)))
        np.testing.assert_array_equal(
            out[2],
            cv2.resize(np.ascontiguousarray(view[2]), (17, 11), interpolation=cv2.INTER_LINEAR),
        )
    assert resize_clip(clip, (30, 40)) is clip  # already that size


@pytest.mark.parametrize("backbone", ["i3d", "c3d"])
def test_uint8_clips_normalised_later_equal_the_float_transform_bit_for_bit(backbone):
    frames = np.random.default_rng(4).integers(0, 256, (16, 40, 52, 3), dtype=np.uint8)
    size = ((32, 44), 24)
    floats = TrainTransform(backbone, size=size)
    raw = TrainTransform(backbone, size=size, normalise=False)
    for seed in range(6):  # crops, flips and (C3D) grayscale draws
        u8 = raw(frames, np.random.default_rng(seed))
        # BGR, channels last: no CPU transpose
        assert u8.dtype == torch.uint8 and u8.shape == (16, 24, 24, 3)
        batch = normalise(torch.stack([u8, u8]), backbone)
        assert batch.shape == (2, 3, 16, 24, 24) and batch.is_contiguous(
            memory_format=torch.channels_last_3d
        )
        assert torch.equal(batch[1], floats(frames, np.random.default_rng(seed)))
    with pytest.raises(TypeError, match="uint8 .* clips"):
        normalise(u8.float(), backbone)
    # the old channels-first layout
    with pytest.raises(TypeError, match=r"got torch.uint8 \(3, 16, 24, 24\)"):
        normalise(u8.permute(3, 0, 1, 2), backbone)


def _two_resizes(frames, resize, crop, params):
    """The official training transform, written out: full cv2 resize, crop, cv2 resize, flip."""
    x = np.stack([cv2.resize(f, resize[::-1], interpolation=cv2.INTER_LINEAR) for f in frames])
    x = x[:, params.top : params.top + params.height, params.left : params.left + params.width]
    x = np.stack(
        [
            cv2.resize(np.ascontiguousarray(f), (crop, crop), interpolation=cv2.INTER_LINEAR)
            for f in x
        ]
    )
    return x[:, :, ::-1] if params.flip else x


@pytest.mark.parametrize(
    "backbone, src",
    [("i3d", (240, 320)), ("i3d", (480, 640)), ("c3d", (240, 320)), ("i3d", (72, 96))],
)
def test_train_transform_resizing_only_the_crop_window_gives_the_official_pixels(backbone, src):
    # every MultiScaleCrop box (13 fixed positions x the crop sizes), both flips, on a real-looking
    # gradient
    # + noise clip: the windowed resize must equal two full cv2 resizes bit for bit
    t = TrainTransform(backbone, normalise=False, more_fix_crop=True)
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[: src[0], : src[1]]
    frames = ((yy * 3 + xx * 5)[None, ..., None] + rng.integers(0, 60, (4, *src, 3))).astype(
        np.uint8
    )
    boxes = 0
    for ch, cw in t.candidates:
        for top, left in fixed_offsets(*t.resize, ch, cw, more_fix_crop=True):
            for flip in (False, True):
                params = CropParams(top, left, ch, cw, flip, False)
                expect = _two_resizes(frames, t.resize, t.crop, params)
                np.testing.assert_array_equal(
                    t.apply(frames, params).numpy(), expect, err_msg=str(params)
                )
                boxes += 1
    assert boxes == 2 * 13 * len(t.candidates)


def test_resized_crop_windows_are_on_the_resize_period_and_equal_the_full_resize():
    from datasets.transforms import _EXACT_WINDOWS, _axis_window

    # 320 -> 340: 17 outputs per 16 inputs; a crop at 84..340 -> outputs 68..340 from inputs 64..320
    assert _axis_window(320, 340, 84, 256) == (64, 320, 68, 340)
    assert _axis_window(240, 256, 52, 204) == (45, 240, 48, 256)  # 16 outputs per 15 inputs
    # 204 = 12 periods: one more for the margin
    assert _axis_window(320, 340, 0, 204) == (0, 208, 0, 221)
    # on the period: the margin is one more
    assert _axis_window(320, 340, 68, 136) == (48, 208, 51, 221)
    assert _axis_window(97, 101, 10, 50) == (0, 97, 0, 101)  # coprime sizes: the whole frame
    frames = np.random.default_rng(6).integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    full = resize_clip(frames, (256, 340))
    for box in [(52, 84, 204, 204), (0, 0, 256, 256), (26, 42, 204, 256), (13, 63, 204, 204)]:
        out = resized_crop(frames, (256, 340), box)
        np.testing.assert_array_equal(
            out, full[:, box[0] : box[0] + box[2], box[1] : box[1] + box[3]]
        )
    assert _EXACT_WINDOWS[((240, 320), (256, 340), (52, 84, 204, 204))] == (
        (45, 240, 48, 256),
        (64, 272, 68, 289),
    )
    # a window that is not exact is never used: poison the cache and the fallback still gives the
    # pixels
    key = ((240, 320), (256, 340), (0, 0, 204, 204))
    _EXACT_WINDOWS[key] = None
    np.testing.assert_array_equal(resized_crop(frames, (256, 340), key[2]), full[:, :204, :204])
    del _EXACT_WINDOWS[key]
