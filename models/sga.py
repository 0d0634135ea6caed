"""Self-guided attention (SGA) branch, as `models/Attention.py` of the official code
(docs/REFERENCE.md §3.1)."""

import torch
from torch import nn
from torch.nn import functional as F
from utils.errors import InputError


class SelfGuidedAttention(nn.Module):
    """Turns the 4th-block feature map into an attention map A and guided (pseudo-label) logits.

    conv_atten: Conv3d(C, C, 3x3x3, stride (1,2,2)) -> ReLU     (official `Conv_Atten.0`)
    att_1:      Conv3d(C, 2k, 1x1x1) -> ReLU = M*               (official `Att_1.0`)
    att_2:      Conv3d(2k, 2k, 1x1x1), GAP, mean per class group (official `Att_2`)
    att_3:      Conv3d(2k, 1, (out_t,1,1)) -> Sigmoid = A        (official `Att_3.0`)

    All convs have a bias. Weights keep PyTorch's default init, as the official module does.
    """

    def __init__(self, in_channels, expand_k=8, out_t=2):
        super().__init__()
        if out_t not in (2, 4):
            raise InputError(
                f"SelfGuidedAttention out_t must be 2 or 4 (the official variants), got {out_t}"
            )
        self.expand_k = expand_k
        heads = 2 * expand_k
        # out_t=2 (the variant used, §3.1) pads T by 0 so T 4->2; out_t=4 pads by 1 and keeps T=4.
        t_pad = 1 if out_t == 4 else 0
        self.conv_atten = nn.Conv3d(
            in_channels, in_channels, 3, stride=(1, 2, 2), padding=(t_pad, 1, 1)
        )
        self.att_1 = nn.Conv3d(in_channels, heads, 1)
        self.att_2 = nn.Conv3d(heads, heads, 1)
        self.att_3 = nn.Conv3d(heads, 1, (out_t, 1, 1))

    def forward(self, x):
        """x: (B, C, T, H, W) -> att_map (B, 1, T'-out_t+1, ceil(H/2), ceil(W/2)) in (0, 1),
        guided_logits (B, 2) raw (no softmax inside the module, §3.1; the training loss applies it),
        m = M* (B, 2k, T', ceil(H/2), ceil(W/2)); T' = T-2 for out_t=2, T for out_t=4.

        A 16-frame clip gives T=4 at the 4th block and T'-out_t+1 = 1; other clip lengths break the
        temporal match with the 5th block (§3.1).
        """
        m = F.relu(self.att_1(F.relu(self.conv_atten(x))))
        heads = self.att_2(m).mean(dim=(2, 3, 4))
        # channels 0..k-1 vote for class 0 (normal), k..2k-1 for class 1 (abnormal)
        guided_logits = heads.view(-1, 2, self.expand_k).mean(dim=2)
        att_map = torch.sigmoid(self.att_3(m))
        return att_map, guided_logits, m
