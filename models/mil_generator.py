"""The stage-1 pseudo-label generator: an MLP scoring each clip feature (MIST_REFERENCE.md §1.2)."""
import numpy as np
import torch
from torch import nn


class MILGenerator(nn.Module):
    """Linear(D,512) -> ReLU -> Dropout -> Linear(512,32) -> Dropout -> Linear(32,1) -> Sigmoid.

    There is no activation after the second Linear and no dropout after the last one (official code).
    Weights are kaiming-normal (fan_in, gain sqrt(2)) and biases zero, as the official `weights_init`.
    forward(rows, inverse) scores bags given as distinct rows + an index (BagSampler.iter_rows(dedup=True)):
    the sub-bags of a short video repeat its clips (~3k distinct of the 17,920 rows of a ShanghaiTech batch),
    so Linear(D, 512) and the ReLU run once per distinct row. Same dropout masks and maths.
    fast_dropout (opt-in, NOT the official random stream): dropout masks drawn by numpy's PCG64 instead of
    torch's serial CPU Bernoulli, which takes ~30% of a CPU training iteration; same distribution and
    reproducibility (seeded from the torch RNG), different masks, so results differ from the default.
    """

    def __init__(self, in_dim=1024, dropout=0.6, fast_dropout=False):
        super().__init__()
        drop = NumpyDropout if fast_dropout else nn.Dropout
        self.regressor = nn.Sequential(
            nn.Linear(in_dim, 512), nn.ReLU(), drop(dropout),
            nn.Linear(512, 32), drop(dropout),
            nn.Linear(32, 1), nn.Sigmoid(),
        )
        for layer in self.regressor:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, features, inverse=None):
        """features: (..., D) -> scores (...) in (0, 1), one per clip.

        With inverse (int64, any shape, e.g. (2B, L*T)): features are (U, D) distinct rows and the scores
        have inverse's shape, scores[i] = score of features[inverse[i]]. Linear(D, 512) and the ReLU, which
        come before any dropout, run once per distinct row; dropout still draws one mask per output row from
        the same RNG stream, so the result equals forward(features[inverse]) up to float rounding of the
        weight gradient (datasets.bags.BagSampler.iter_rows gives such pairs).
        """
        if inverse is None:
            return self.regressor(features).squeeze(-1)
        first = self.regressor[1](self.regressor[0](features))  # (U, 512)
        # an embedding lookup is a row gather whose CPU backward sums repeated rows ~2x faster than index_select's
        hidden = nn.functional.embedding(inverse, first)  # (*inverse.shape, 512)
        return self.regressor[2:](hidden).squeeze(-1)

    @torch.no_grad()
    def score(self, features, batch_rows=65536):
        """Scores many clips at once in eval mode. features: (N, D) float tensor -> (N,) float32."""
        return torch.cat([self(chunk) for chunk in features.split(batch_rows)])


class NumpyDropout(nn.Dropout):
    """nn.Dropout with its mask from numpy's PCG64, seeded by one draw of the torch RNG (see MILGenerator)."""

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        seed = int(torch.randint(2**62, (1,)))
        keep = np.random.default_rng(seed).random(x.shape, dtype=np.float32) >= np.float32(self.p)
        scale = np.float32(1.0 / (1.0 - self.p))
        return x * torch.from_numpy(keep * scale).to(x.device)
