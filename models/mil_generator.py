"""The stage-1 pseudo-label generator: an MLP scoring each clip feature (docs/REFERENCE.md §1.2)."""

import numpy as np
import torch
from torch import nn


def _no_norm(features):
    return features


def _row_standardise(features):
    """(..., D) -> (..., D): each row minus its mean, over its standard deviation. The scores no
    longer depend on the features' scale or a common offset (docs/stage1_recipe.md)."""
    mean = features.mean(-1, keepdim=True)
    std = features.std(-1, keepdim=True, correction=0)
    return (features - mean) / (std + 1e-6)


# STAGE1.INPUT_NORM -> the parameter-free map applied to every feature row before Linear(D, 512),
# in training, evaluation, pseudo-labels and export alike (it is part of the module)
INPUT_NORMS = {"none": _no_norm, "row_std": _row_standardise}


class MILGenerator(nn.Module):
    """Linear(D,512) -> ReLU -> Dropout -> Linear(512,32) -> Dropout -> Linear(32,1) -> Sigmoid.

    There is no activation after the second Linear and no dropout after the last one (official
    code). Weights are kaiming-normal (fan_in, gain sqrt(2)) and biases zero, as the official
    `weights_init`. forward(rows, inverse) scores bags given as distinct rows + an index
    (BagSampler.iter_rows(dedup=True)): the sub-bags of a short video repeat its clips (~3k distinct
    of the 17,920 rows of a ShanghaiTech batch), so Linear(D, 512) and the ReLU run once per
    distinct row, and its weight gradient skips the rows without a gradient (see _BagMLP). Same
    dropout masks and maths as forward(rows[inverse]). fast_dropout: on the CPU, dropout masks come
    from numpy's PCG64, seeded by one draw of the torch RNG, instead of torch's CPU Bernoulli, which
    is serial on non-Intel CPUs and takes about half of an iteration there. Same distribution and
    reproducibility (the torch RNG state is all there is to save), another random stream; on a GPU
    torch's own generator is fast and is used either way. input_norm: an INPUT_NORMS key ("none":
    the official raw features)."""

    def __init__(self, in_dim=1024, dropout=0.6, fast_dropout=False, input_norm="none"):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm {input_norm!r} is not one of {tuple(INPUT_NORMS)}")
        self.input_norm = input_norm
        drop = NumpyDropout if fast_dropout else nn.Dropout
        self.fast_dropout = fast_dropout
        self.regressor = nn.Sequential(
            nn.Linear(in_dim, 512),
            nn.ReLU(),
            drop(dropout),
            nn.Linear(512, 32),
            drop(dropout),
            nn.Linear(32, 1),
            nn.Sigmoid(),
        )
        for layer in self.regressor:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, features, inverse=None):
        """features: (..., D) -> scores (...) in (0, 1), one per clip.

        With inverse (int64, any shape, e.g. (2B, L*T)): features are (U, D) distinct rows and the
        scores have inverse's shape, scores[i] = score of features[inverse[i]]. Linear(D, 512) and
        the ReLU, which come before any dropout, run once per distinct row; dropout still draws one
        mask per output row from the same RNG stream, so the result equals
        forward(features[inverse]) up to float rounding of the weight gradient
        (datasets.bags.BagSampler.iter_rows gives such pairs)."""
        features = INPUT_NORMS[self.input_norm](features)
        if inverse is None:
            return self.regressor(features).squeeze(-1)
        if not self.training:
            return self.regressor(features).squeeze(-1)[inverse]
        first, second, last = self.regressor[0], self.regressor[3], self.regressor[5]
        flat = inverse.reshape(-1)
        p = self.regressor[2].p
        mask1 = dropout_mask((len(flat), first.out_features), p, features, self.fast_dropout)
        mask2 = dropout_mask((len(flat), second.out_features), p, features, self.fast_dropout)
        scores = _BagMLP.apply(
            features,
            flat,
            mask1,
            mask2,
            first.weight,
            first.bias,
            second.weight,
            second.bias,
            last.weight,
            last.bias,
        )
        return scores.view(inverse.shape)


def dropout_mask(shape, p, like, fast=False):
    """-> the scaled keep mask ({0, 1/(1-p)}, like's dtype and device) that nn.Dropout(p) multiplies
    by.

    fast=False draws it as torch does (bernoulli_(1 - p) then div_(1 - p): bit for bit nn.Dropout's
    mask, same RNG consumption); fast=True on the CPU draws it with numpy's PCG64 seeded by one
    torch draw."""
    if p == 0:
        return torch.ones(shape, dtype=like.dtype, device=like.device)
    if p == 1:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    if not fast or like.device.type != "cpu":
        return (
            torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p).div_(1 - p)
        )
    seed = int(torch.randint(2**62, (1,)))
    keep = np.random.default_rng(seed).random(shape, dtype=np.float32) >= np.float32(p)
    return torch.from_numpy(np.multiply(keep, np.float32(1.0 / (1.0 - p)), dtype=np.float32)).to(
        like.dtype
    )


class _BagMLP(torch.autograd.Function):
    """MILGenerator's training forward on distinct rows + an index, and the backward autograd would
    compute through its layers (the same maths, to float rounding), with less work for Linear(D,
    512).

    The first layer runs once per distinct row. Its weight gradient sums over the distinct rows that
    a score with a nonzero gradient refers to: the MIL loss reaches a normal bag through its top-k
    clips only (7 of 224), so about half of a batch's distinct rows would add zeros to the largest
    GEMM of the backward. mask1, mask2: the dropout layers' scaled masks ({0, 1/(1-p)}), drawn by
    the caller."""

    @staticmethod
    def forward(ctx, features, inverse, mask1, mask2, w1, b1, w2, b2, w3, b3):
        first = torch.relu(torch.addmm(b1, features, w1.t()))  # (U, 512): once per distinct row
        hidden = first.index_select(0, inverse).mul_(mask1)  # (R, 512)
        second = torch.addmm(b2, hidden, w2.t()).mul_(mask2)  # (R, 32)
        scores = torch.sigmoid(torch.addmm(b3, second, w3.t())).squeeze(1)  # (R,)
        ctx.save_for_backward(
            features, inverse, mask1, mask2, first, hidden, second, scores, w2, w3
        )
        return scores

    @staticmethod
    def backward(ctx, grad_scores):
        features, inverse, mask1, mask2, first, hidden, second, scores, w2, w3 = ctx.saved_tensors
        g3 = (grad_scores * scores * (1 - scores)).unsqueeze(1)  # (R, 1): through the sigmoid
        g2 = (g3 @ w3).mul_(mask2)  # (R, 32): through Linear(32, 1) and the second dropout
        g1 = (g2 @ w2).mul_(mask1)  # (R, 512): through Linear(512, 32) and the first dropout
        # (U, 512): summed per distinct row
        g0 = g1.new_zeros(first.shape).index_add_(0, inverse, g1)
        used = torch.unique(inverse[grad_scores != 0])
        if len(used) < len(features):  # the other distinct rows have a zero gradient
            g0, first, features = (t.index_select(0, used) for t in (g0, first, features))
        g0.masked_fill_(first <= 0, 0)  # through the ReLU, once per distinct row
        return (
            None,
            None,
            None,
            None,
            g0.t() @ features,
            g0.sum(0),
            g2.t() @ hidden,
            g2.sum(0),
            g3.t() @ second,
            g3.sum(0),
        )


class NumpyDropout(nn.Dropout):
    """nn.Dropout whose mask comes from dropout_mask(fast=True) (see MILGenerator)."""

    def forward(self, x):
        if not self.training:
            return x
        return x * dropout_mask(x.shape, self.p, x, fast=True)
