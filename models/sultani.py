"""Sultani et al. (CVPR 2018) MIL ranking loss on 32-segment bags: the baseline MIST builds on.

The network is the same MLP as the MIST generator (Sultani's own: 512-32-1, dropout 0.6, sigmoid,
Adagrad with L2 weight decay 1e-3), so `models.mil_generator.MILGenerator` is reused; only bags and
loss differ."""

import torch


def sultani_loss(normal_scores, abnormal_scores, lambda_sparse=8e-5, lambda_smooth=8e-5):
    """normal_scores, abnormal_scores: (B, S) segment scores in [0, 1] -> (loss scalar, {"rank",
    "sparse", "smooth"}).

    rank: max(0, 1 - max_t a_j + max_t n_i) averaged over all B x B (normal i, abnormal j) pairs;
    sparse: sum_t a_t and smooth: sum_t (a_t - a_{t+1})^2 of each abnormal bag, averaged over the
    bags. Sultani's Keras objective (lambda = 8e-5 on both sums) is exactly B times this loss."""
    normal_max = normal_scores.amax(dim=1)
    abnormal_max = abnormal_scores.amax(dim=1)
    rank = torch.relu(1.0 - abnormal_max[None, :] + normal_max[:, None]).mean()
    sparse = abnormal_scores.sum(dim=1).mean()
    smooth = (abnormal_scores[:, 1:] - abnormal_scores[:, :-1]).pow(2).sum(dim=1).mean()
    loss = rank + lambda_sparse * sparse + lambda_smooth * smooth
    return loss, {"rank": rank, "sparse": sparse, "smooth": smooth}
