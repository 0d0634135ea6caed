"""cfg -> model constructors: the one place that reads model keys of the config."""
from models.mil_generator import MILGenerator


def build_generator(cfg):
    """The stage-1 MIL generator for DATA.FEATURE_DIM features."""
    return MILGenerator(in_dim=cfg.DATA.FEATURE_DIM, dropout=cfg.STAGE1.DROPOUT)
