"""Writes the I3D ResNet-50 golden vectors (tests/golden/README.md §5): the reference code, fetched
outside this repository, run on the seeded weights and inputs of tests/i3d_r50_fixtures.py.

    python tests/golden/make_i3d_r50.py --resnet3d /tmp/ref_r3d --extractor /tmp/ref_gg

--resnet3d: a checkout of Tushar-N/pytorch-resnet3d (its models/resnet.py is imported unchanged);
--extractor: a checkout of GowthamGottimukkala/I3D_Feature_Extraction_resnet (its resnet.py and
extract_features.py imported unchanged; they need natsort). Two things are supplied around them, not
changed in them: Pillow >= 10 has no Image.ANTIALIAS, the old name of Image.LANCZOS, so it is set
back; the extractor moves batches to CUDA, so Tensor.cuda is the identity here (CPU only)."""

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.i3d_r50_fixtures import (  # noqa: E402
    GOLDEN,
    MANIFEST,
    clip_input,
    noise_frames,
    rule_state_dict,
)
from utils.video import read_video_frames  # noqa: E402

REAL = ROOT / "tests" / "data" / "videos" / "Normal_Videos020_x264_head100.mp4"
BLOCKS = ("layer1", "layer2", "layer3", "layer4")


def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commit(folder):
    try:
        return subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).astype("<f4").tobytes()).hexdigest()


def write_manifest(model, source):
    state = model.state_dict()
    MANIFEST.write_text(
        json.dumps(
            {
                "source": source,
                "keys_shapes": [[k, list(v.shape)] for k, v in state.items()],
                "n_state_dict_entries": len(state),
                "n_parameters": sum(p.numel() for p in model.parameters()),
            },
            indent=1,
        )
        + "\n"
    )


def forward(model, x):
    """-> (features (B, 2048), logits (B, 400), {block: output}) of the reference model."""
    seen = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, o))
        for name in (*BLOCKS, "avgpool")
    ]
    with torch.no_grad():
        logits, _ = model({"frames": x})
    for hook in hooks:
        hook.remove()
    return seen.pop("avgpool").flatten(1), logits, seen


def model_vectors(resnet, extractor_resnet):
    model = resnet.I3Res50(num_classes=400, use_nl=False).eval()
    model.load_state_dict(rule_state_dict(), strict=True)
    other = extractor_resnet.I3Res50(num_classes=400, use_nl=False).eval()
    other.load_state_dict(rule_state_dict(), strict=True)
    out = {}
    for size in (64, 224):
        x = torch.from_numpy(clip_input(size, size))
        feats, logits, blocks = forward(model, x)
        with torch.no_grad():
            # the extractor's copy of the network returns the pooled layer4 itself
            assert torch.equal(other({"frames": x}).flatten(1), feats)
        feats64, logits64, blocks64 = forward(model.double(), x.double())
        model.float()
        out[f"features_{size}"] = feats.numpy()
        out[f"features_{size}_f64"] = feats64.numpy()
        out[f"logits_{size}_f64"] = logits64.numpy()
        for name in BLOCKS if size == 64 else ():
            out[f"block_{name}_{size}_mean_hw_f64"] = blocks64[name][0].mean(dim=(2, 3)).numpy()
    return model, out


def write_frames(frames, folder):
    """uint8 BGR frames -> lossless RGB PNGs 0.png, 1.png, ... (the extractor's input folder)."""
    for i, frame in enumerate(frames):
        Image.fromarray(np.ascontiguousarray(frame[..., ::-1])).save(folder / f"{i}.png")
    return [f"{i}.png" for i in range(len(frames))]


def views_vectors(extractor, frames, tag, folder):
    """The extractor's 16-frame chunk of `frames` -> npz arrays and digests of its 10 views, as
    float32 (10, 3, 16, 224, 224), the layout the network gets."""
    files = write_frames(frames, folder)
    batch = extractor.load_rgb_batch(str(folder), files, np.arange(16)[None])
    views = np.stack([v[0].transpose(3, 0, 1, 2) for v in extractor.oversample_data(batch)])
    views = views.astype(np.float32)
    arrays = {
        f"{tag}_views_sample": views[:, :, ::5, ::16, ::16],
        f"{tag}_view_sums_f64": views.astype(np.float64).sum(axis=(1, 2, 3, 4)),
    }
    digests = {f"{tag}_views_sha256": sha256(views), f"{tag}_resized_sha256": sha256(batch[0])}
    return arrays, digests


def layout_vectors(extractor, folder):
    """extract_features.run on the 100 frames of the shipped video with a stand-in network whose
    every feature is the mean of its input view -> (n_clips, 10) of those means."""

    def mean_net(batch):
        x = batch["frames"]
        return x.mean(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1, 1).expand(-1, 2048, 1, 1, 1)

    write_frames(read_video_frames(REAL, 0, 100), folder)
    feats = extractor.run(mean_net, 16, str(folder), 20, "oversample")
    assert (feats == feats[..., :1]).all()
    return {"layout_means": feats[..., 0], "layout_shape": np.array(feats.shape, np.int64)}


def checksums(arrays):
    def digest(a):
        a = np.ascontiguousarray(a)
        h = hashlib.sha256(a.dtype.str.encode() + str(a.shape).encode())
        h.update(a.tobytes())
        return h.hexdigest()

    return {k: digest(v) for k, v in sorted(arrays.items())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resnet3d", required=True, type=Path)
    parser.add_argument("--extractor", required=True, type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    Image.ANTIALIAS = Image.LANCZOS
    torch.Tensor.cuda = lambda self, *a, **k: self
    resnet = import_file(args.resnet3d / "models" / "resnet.py", "ref_resnet3d")
    extractor_resnet = import_file(args.extractor / "resnet.py", "ref_extractor_resnet")
    extractor = import_file(args.extractor / "extract_features.py", "ref_extract_features")
    source = {
        "repo": "Tushar-N/pytorch-resnet3d",
        "commit": commit(args.resnet3d),
        "file": "models/resnet.py",
        "model": "I3Res50(num_classes=400, use_nl=False)",
    }
    write_manifest(resnet.I3Res50(num_classes=400, use_nl=False), source)
    _, arrays = model_vectors(resnet, extractor_resnet)
    real = read_video_frames(REAL, 0, 16)
    digests = {"real_frames_sha256": hashlib.sha256(real.tobytes()).hexdigest()}
    with tempfile.TemporaryDirectory() as tmp:
        for tag, frames in (("noise", noise_frames()), ("real", real)):
            (Path(tmp) / tag).mkdir()
            more, more_digests = views_vectors(extractor, frames, tag, Path(tmp) / tag)
            arrays.update(more)
            digests.update(more_digests)
        (Path(tmp) / "layout").mkdir()
        arrays.update(layout_vectors(extractor, Path(tmp) / "layout"))
    np.savez_compressed(GOLDEN / "i3d_r50.npz", **arrays)
    digests.update(
        resnet3d=source,
        extractor={
            "repo": "GowthamGottimukkala/I3D_Feature_Extraction_resnet",
            "commit": commit(args.extractor),
            "files": ["resnet.py", "extract_features.py"],
        },
        pillow=PIL.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
    )
    (GOLDEN / "i3d_r50.json").write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    sums = json.loads((GOLDEN / "CHECKSUMS.json").read_text())
    sums["i3d_r50.npz"] = checksums(arrays)
    (GOLDEN / "CHECKSUMS.json").write_text(json.dumps(sums, indent=1) + "\n")


if __name__ == "__main__":
    main()
