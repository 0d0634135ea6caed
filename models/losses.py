"""Stage-1 MIL ranking loss (docs/REFERENCE.md §1.4, §2.1, §2.3)."""

import torch
from utils.errors import InputError


def _topk_mean(scores, topk, part_len):
    """Official code: mean of the top-k clip scores over all N sampled clips (sub-bags ignored)."""
    return scores.topk(topk, dim=1).values.mean(dim=1)


def _max_subbag_mean(scores, topk, part_len):
    """Paper Eq. 1 and 6: max over the N/T sub-bags of each sub-bag's mean score."""
    if not part_len or scores.shape[1] % part_len:
        raise InputError(
            f"bag_score 'subbag_mean' needs part_len dividing N={scores.shape[1]}, got {part_len}"
        )
    return scores.unflatten(1, (-1, part_len)).mean(dim=2).amax(dim=1)


# bag_score -> (scores (B, N), topk, part_len) -> (B,) bag scores
BAG_SCORES = {"topk": _topk_mean, "subbag_mean": _max_subbag_mean}


def bag_scores(scores, topk, bag_score="topk", part_len=None):
    """scores: (B, N) clip scores of B bags -> (B,) bag scores.

    'topk': mean of the top-k clip scores over all N sampled clips (official code; sub-bags
    ignored). 'subbag_mean': max over the N/T sub-bags of each sub-bag's mean score (paper Eq. 1 and
    6)."""
    if bag_score not in BAG_SCORES:
        raise InputError(f"unknown bag_score {bag_score!r}; use one of {tuple(BAG_SCORES)}")
    return BAG_SCORES[bag_score](scores, topk, part_len)


def mil_ranking_loss(
    normal_scores,
    abnormal_scores,
    topk,
    lambda_sparse,
    lambda_smooth,
    bag_score="topk",
    part_len=None,
):
    """normal_scores, abnormal_scores: (B, N) in [0, 1] -> (loss scalar, {"rank", "sparse",
    "smooth"}).

    rank: margin-1 hinge averaged over all B x B (normal, abnormal) pairs (official /B^2 pairing);
    sparse: mean of all abnormal clip scores; smooth: mean squared difference of consecutive
    abnormal scores along the sampled sequence (it crosses sub-bag boundaries, as the official code
    does)."""
    normal_bag = bag_scores(normal_scores, topk, bag_score, part_len)
    abnormal_bag = bag_scores(abnormal_scores, topk, bag_score, part_len)
    rank = torch.relu(1.0 - abnormal_bag[None, :] + normal_bag[:, None]).mean()
    sparse = abnormal_scores.mean()
    smooth = (abnormal_scores[:, 1:] - abnormal_scores[:, :-1]).pow(2).mean()
    loss = rank + lambda_sparse * sparse + lambda_smooth * smooth
    return loss, {"rank": rank, "sparse": sparse, "smooth": smooth}


def weighted_soft_ce(logits, target, weight_abnormal, weight_normal):
    """Class-weighted 2-class cross-entropy with soft targets (stage 2, docs/REFERENCE.md §3.7).

    logits: (N, 2) pre-softmax; target: (N,) abnormal probability in [0, 1] -> scalar mean over N.
    Equals the official Weighted_BCE_Loss on softmax(logits)[:, 1], computed with log_softmax
    instead of log(p + 1e-8) so it stays finite under mixed precision."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    target = target.float()
    return -(
        weight_abnormal * target * log_p[:, 1] + weight_normal * (1 - target) * log_p[:, 0]
    ).mean()


def mist_loss(out, target, class_weights, lambda_guided):
    """MIST's stage-2 loss: weighted soft cross-entropy of the head + lambda_guided x that of the
    guided (SGA) head.

    out: MIST's output {"logits": (N, 2), "guided_logits": (N, 2) or None}; target: (N,) abnormal
    probability; class_weights: (abnormal, normal) -> (loss, head term, guided term): scalars.
    """
    head = weighted_soft_ce(out["logits"], target, *class_weights)
    # a MIST without SGA has no guided head to supervise
    if out["guided_logits"] is None:
        return head, head, torch.zeros((), device=head.device)
    guided = weighted_soft_ce(out["guided_logits"], target, *class_weights)
    return head + lambda_guided * guided, head, guided
