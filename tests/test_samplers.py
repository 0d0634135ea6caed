"""Stage-2 batch sharding: per-rank shares of every world size, and the loss weights that make the
DDP gradient equal the single-process one."""

import numpy as np
import pytest

from datasets.samplers import PairedBatchSampler, rank_share


@pytest.mark.parametrize(
    "batch, world, expected",
    [
        (10, 1, [(0, 10)]),
        (10, 2, [(0, 5), (5, 5)]),
        (10, 4, [(0, 3), (3, 3), (6, 2), (8, 2)]),
        (10, 3, [(0, 4), (4, 3), (7, 3)]),
        (3, 3, [(0, 1), (1, 1), (2, 1)]),
    ],
)
def test_rank_shares_cover_the_batch_once(batch, world, expected):
    assert [rank_share(batch, r, world) for r in range(world)] == expected


def test_more_ranks_than_videos_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="cannot be shared by 16 processes.*at most 10"):
        rank_share(10, 0, 16)


def test_uneven_shards_are_disjoint_and_cover_each_iteration():
    normal, abnormal = list(range(0, 23)), list(range(100, 121))
    world, batch = 4, 10
    per_rank = [
        list(PairedBatchSampler(normal, abnormal, batch, r, world, seed=3)) for r in range(world)
    ]
    single = list(PairedBatchSampler(normal, abnormal, batch, 0, 1, seed=3))
    assert len(single) == 2 and all(len(p) == 2 for p in per_rank)  # min(23, 21) // 10 iterations
    for it, whole in enumerate(single):
        shards = [p[it] for p in per_rank]
        assert [len(s) for s in shards] == [6, 6, 4, 4]  # 3, 3, 2, 2 videos of each class
        merged = [i for s in shards for i in s if i < 100] + [
            i for s in shards for i in s if i >= 100
        ]
        # rank order = the single process's batch order, normal then abnormal
        assert merged == whole


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_share_weighted_losses_average_to_the_whole_batch_mean(world):
    """Trainer weights rank r's mean loss by world * share_r / B; DDP averages over ranks -> batch
    mean."""
    from engine.stage2 import Trainer

    batch, rng = 10, np.random.default_rng(0)
    losses = rng.random(batch)  # one loss per video of a class
    weights = [world * rank_share(batch, r, world)[1] / batch for r in range(world)]
    shards = [losses[f : f + n] for f, n in (rank_share(batch, r, world) for r in range(world))]
    ddp_mean = sum(w * s.mean() for w, s in zip(weights, shards)) / world
    assert ddp_mean == pytest.approx(losses.mean(), rel=1e-12)

    class Cfg:  # the two keys Trainer reads before building its optimizer
        class STAGE2:
            BATCH_SIZE = batch

    assert [Trainer.share_weight(Cfg, r, world) for r in range(world)] == weights
