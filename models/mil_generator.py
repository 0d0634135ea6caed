"""The stage-1 pseudo-label generator: an MLP scoring each clip feature (MIST_REFERENCE.md §1.2)."""
import torch
from torch import nn


class MILGenerator(nn.Module):
    """Linear(D,512) -> ReLU -> Dropout -> Linear(512,32) -> Dropout -> Linear(32,1) -> Sigmoid.

    There is no activation after the second Linear and no dropout after the last one (official code).
    Weights are kaiming-normal (fan_in, gain sqrt(2)) and biases zero, as the official `weights_init`.
    """

    def __init__(self, in_dim=1024, dropout=0.6):
        super().__init__()
        self.regressor = nn.Sequential(
            nn.Linear(in_dim, 512), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(512, 32), nn.Dropout(dropout),
            nn.Linear(32, 1), nn.Sigmoid(),
        )
        for layer in self.regressor:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, features):
        """features: (..., D) -> scores (...) in (0, 1), one per clip."""
        return self.regressor(features).squeeze(-1)

    @torch.no_grad()
    def score(self, features, batch_rows=65536):
        """Scores many clips at once in eval mode. features: (N, D) float tensor -> (N,) float32."""
        return torch.cat([self(chunk) for chunk in features.split(batch_rows)])
