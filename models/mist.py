"""MIST stage-2 model: backbone + self-guided attention + weighted-classification head
(docs/REFERENCE.md §3.4)."""

import torch
from torch import nn

from models.c3d import C3D
from models.i3d import I3D
from models.sga import SelfGuidedAttention
from models.tv_video import TORCHVISION, TorchvisionBackbone, torchvision_backbone
from utils.errors import InputError

# MODEL.BACKBONE -> the backbone's builder (width=...); the torchvision models are
# models/tv_video.py's
BACKBONES = {"i3d": I3D, "c3d": C3D, **{name: torchvision_backbone(name) for name in TORCHVISION}}


class MIST(nn.Module):
    """Official I3D_SGA_STD / C3D_SGA_STD with plain names.

    backbone: I3D (SGA on mixed_4f, head on mixed_5c) or C3D (SGA on conv4b, head on conv5b); sga:
    SelfGuidedAttention(out_t=2), which also holds the guided head; head: Dropout(dropout) ->
    Linear(C, 2) on the global average of (1 + A) * F5. At width=1 the parameter counts are
    30,993,827 (I3D) and 34,743,875 (C3D), as the official models. Official key names map to these
    by `models.weights.convert_state_dict`. use_sga=False drops the SGA (A = 0, no guided head): the
    paper's Table 5 "w/o SGA" row. The torchvision backbones (models/tv_video.py: r2plus1d_18, s3d,
    mvit_v2_s, swin3d_t) take the same SGA and head."""

    def __init__(self, backbone="i3d", expand_k=8, dropout=0.8, width=1.0, use_sga=True):
        super().__init__()
        if backbone not in BACKBONES:
            raise InputError(f"unknown backbone {backbone!r}; use one of {sorted(BACKBONES)}")
        self.backbone_name = backbone
        self.backbone = BACKBONES[backbone](width=width)
        self.sga = (
            SelfGuidedAttention(self.backbone.sga_channels, expand_k=expand_k, out_t=2)
            if use_sga
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.out_channels, 2)

    def forward(self, clips):
        """clips: (B, 3, 16, H, W) -> dict of
        logits (B, 2) and guided_logits (B, 2): pre-softmax;
        attention A (B, 1, 1, h, w) in (0, 1); feature_map (1 + A) * F5 (B, C, 2, h, w);
        pooled (B, C): the head's input, the global average of feature_map;
        sga_m M* (B, 2k, 2, h, w). h, w = 7, 7 for I3D at 224x224 and C3D at 112x112.
        Without SGA, guided_logits, attention and sga_m are None and feature_map is F5.
        """
        if isinstance(self.backbone, TorchvisionBackbone):
            return self._forward_torchvision(clips)
        f5, f4 = self.backbone(clips)
        if self.sga is None:
            pooled = f5.mean(dim=(2, 3, 4))
            return {
                "logits": self.head(self.dropout(pooled)),
                "guided_logits": None,
                "attention": None,
                "feature_map": f5,
                "pooled": pooled,
                "sga_m": None,
            }
        attention, guided_logits, sga_m = self.sga(f4)
        # A broadcasts over channels and time: F = F5 + A * F5 (§3.4)
        feature_map = f5 + attention * f5
        pooled = feature_map.mean(dim=(2, 3, 4))
        return {
            "logits": self.head(self.dropout(pooled)),
            "guided_logits": guided_logits,
            "attention": attention,
            "feature_map": feature_map,
            "pooled": pooled,
            "sga_m": sga_m,
        }

    def _forward_torchvision(self, clips):
        """forward of a torchvision backbone: pooled = summary(F5) + mean(A * F5)
        (models/tv_video.py), feature_map = (1 + A) * F5."""
        f5, f4, summary = self.backbone.encode(clips)
        attention, guided_logits, sga_m = self.sga(f4) if self.sga is not None else (None,) * 3
        pooled = summary if attention is None else summary + (attention * f5).mean(dim=(2, 3, 4))
        return {
            "logits": self.head(self.dropout(pooled)),
            "guided_logits": guided_logits,
            "attention": attention,
            "feature_map": f5 if attention is None else f5 + attention * f5,
            "pooled": pooled,
            "sga_m": sga_m,
        }


def anomaly_score(out):
    """MIST output dict (or (B, 2) logits) -> (B,) anomaly scores softmax(logits)[:, 1] (§3.4)."""
    logits = out["logits"] if isinstance(out, dict) else out
    return torch.softmax(logits, dim=1)[:, 1]
