"""cfg -> models: the one place that turns config keys into constructor arguments.

Each choice is one entry in a plain dict (STAGE1_LOSSES here; BACKBONES, the backbone classes, in
models/mist.py, which builds MIST(backbone=name)): adding one = a builder + an entry.
"""

from functools import partial

from models.losses import mil_ranking_loss
from models.mil_generator import INPUT_NORMS, MILGenerator

# MODEL.BACKBONE -> backbone class (width=...); owned by models/mist.py, which looks the name up
from models.mist import BACKBONES, MIST
from models.sultani import sultani_loss
from utils.registry import choose


def build_generator(cfg):
    """The stage-1 MIL generator for DATA.FEATURE_DIM features."""
    # a ConfigError naming the key for an unknown STAGE1.INPUT_NORM
    choose(INPUT_NORMS, "STAGE1.INPUT_NORM", cfg.STAGE1.INPUT_NORM)
    return MILGenerator(
        in_dim=cfg.DATA.FEATURE_DIM,
        dropout=cfg.STAGE1.DROPOUT,
        fast_dropout=cfg.STAGE1.FAST_DROPOUT,
        input_norm=cfg.STAGE1.INPUT_NORM,
    )


def build_model(cfg):
    """The stage-2 MIST encoder named by MODEL.BACKBONE (a BACKBONES key), randomly initialised."""
    choose(BACKBONES, "MODEL.BACKBONE", cfg.MODEL.BACKBONE)
    return MIST(
        backbone=cfg.MODEL.BACKBONE,
        expand_k=cfg.MODEL.EXPAND_K,
        dropout=cfg.MODEL.DROPOUT,
        width=cfg.MODEL.WIDTH,
        use_sga=cfg.MODEL.SGA,
    )


def _mist_loss(cfg):
    """MIST's ranking loss over (B, L*T) sampled clip scores (top-k or sub-bag-mean bag scores)."""
    s1 = cfg.STAGE1
    return partial(
        mil_ranking_loss,
        topk=s1.TOPK,
        lambda_sparse=s1.LAMBDA_SPARSE,
        lambda_smooth=s1.LAMBDA_SMOOTH,
        bag_score=s1.BAG_SCORE,
        part_len=s1.PART_LEN,
    )


def _sultani_loss(cfg):
    """Sultani's ranking loss over (B, S) pooled segment scores (max bag score)."""
    s1 = cfg.STAGE1
    return partial(sultani_loss, lambda_sparse=s1.LAMBDA_SPARSE, lambda_smooth=s1.LAMBDA_SMOOTH)


# STAGE1.METHOD -> (cfg) -> loss(normal_scores, abnormal_scores) -> (loss scalar, {term: value})
STAGE1_LOSSES = {"mist": _mist_loss, "sultani": _sultani_loss}


def build_stage1_loss(cfg):
    """-> loss(normal (B, N), abnormal (B, N)) -> (loss, parts) of STAGE1.METHOD."""
    return choose(STAGE1_LOSSES, "STAGE1.METHOD", cfg.STAGE1.METHOD)(cfg)
