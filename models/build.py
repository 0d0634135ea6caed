"""cfg -> models: the one place that turns config keys into constructor arguments."""
from models.mil_generator import MILGenerator
from models.mist import MIST


def build_generator(cfg):
    """The stage-1 MIL generator for DATA.FEATURE_DIM features."""
    return MILGenerator(in_dim=cfg.DATA.FEATURE_DIM, dropout=cfg.STAGE1.DROPOUT, fast_dropout=cfg.STAGE1.FAST_DROPOUT)


def build_model(cfg):
    """The stage-2 MIST encoder named by MODEL.BACKBONE (i3d | c3d), randomly initialised."""
    return MIST(backbone=cfg.MODEL.BACKBONE, expand_k=cfg.MODEL.EXPAND_K, dropout=cfg.MODEL.DROPOUT,
                width=cfg.MODEL.WIDTH, use_sga=cfg.MODEL.SGA)
