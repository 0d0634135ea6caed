"""Configs: every YAML loads on top of the defaults and builds its model; the official values are the defaults."""
from pathlib import Path

import pytest
import yaml

from configs.defaults import get_cfg_defaults
from models.build import build_generator
from utils.config import REPO_ROOT, ConfigError, load_cfg, parse_args

CONFIGS = sorted((REPO_ROOT / "configs").rglob("*stage1.yaml"))


def test_defaults_are_the_official_stage1_setting():
    s1 = get_cfg_defaults().STAGE1
    assert (s1.PART_NUM, s1.PART_LEN, s1.TOPK, s1.BATCH_SIZE, s1.EPOCHS) == (32, 7, 0, 40, 3001)
    assert (s1.LR, s1.WEIGHT_DECAY, s1.GRAD_CLIP, s1.LAMBDA_SPARSE, s1.LAMBDA_SMOOTH, s1.DROPOUT) == \
        (0.01, 1e-3, 10.0, 0.01, 0.0, 0.6)
    assert (s1.SAMPLING, s1.BAG_SCORE, get_cfg_defaults().DATA.CLIP_LEN) == ("uniform", "topk", 16)
    assert load_cfg(CONFIGS[0]).STAGE1.TOPK == load_cfg(CONFIGS[0]).STAGE1.PART_LEN  # top-k = T


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_each_config_loads_and_builds_its_model(path):
    assert len(path.read_text().splitlines()) <= 25  # YAMLs only override
    cfg = load_cfg(path)
    model = build_generator(cfg)
    assert model.regressor[0].in_features == cfg.DATA.FEATURE_DIM
    backbone = "c3d" if "c3d" in path.name else "i3d"
    assert cfg.DATA.FEATURE_DIM == {"c3d": 4096, "i3d": 1024}[backbone]
    expected_t = {"shanghaitech": 7, "ucf_crime": {"c3d": 3, "i3d": 4}[backbone], "demo": 7}[path.parent.name]
    assert cfg.STAGE1.PART_LEN == expected_t and cfg.STAGE1.TOPK == expected_t
    for key in ("TRAIN_SPLIT", "TEST_SPLIT"):
        assert Path(cfg.DATA[key]).is_file(), f"{path}: DATA.{key} must point at a file shipped in data/"


STAGE2_CONFIGS = sorted((REPO_ROOT / "configs").rglob("*stage2.yaml"))
OFFICIAL_STAGE2 = {  # MIST_REFERENCE.md §3.8: (batch, accumulate, grad clip, class weights, freeze epochs)
    "shanghaitech/i3d": (10, 3, 20.0, [0.8, 0.65], 30), "shanghaitech/c3d": (10, 1, 10.0, [1.0, 1.0], 30),
    "ucf_crime/c3d": (32, 5, 20.0, [1.0, 1.0], 60), "ucf_crime/i3d": (10, 3, 20.0, [1.2, 0.8], 30),
}


@pytest.mark.parametrize("path", STAGE2_CONFIGS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_each_stage2_config_has_the_official_settings_and_builds_its_model(path):
    from models.build import build_model

    assert len(path.read_text().splitlines()) <= 25
    cfg = load_cfg(path)
    key = f"{path.parent.name}/{path.name.split('_')[0]}"
    if key in OFFICIAL_STAGE2:
        s2 = cfg.STAGE2
        assert (s2.BATCH_SIZE, s2.ACCUMULATE, s2.GRAD_CLIP, list(s2.CLASS_WEIGHTS), s2.FREEZE_EPOCHS) == \
            OFFICIAL_STAGE2[key]
        assert (s2.EPOCHS, s2.CLIP_NUM, s2.LR, s2.WEIGHT_DECAY, s2.WARMUP_EPOCHS, cfg.MODEL.DROPOUT,
                cfg.MODEL.EXPAND_K) == (301, 3, 1e-4, 5e-4, 5, 0.8, 8)
    model = build_model(cfg)
    assert model.backbone_name == cfg.MODEL.BACKBONE == path.name.split("_")[0]
    if cfg.MODEL.WIDTH == 1.0:
        assert sum(p.numel() for p in model.parameters()) == {"i3d": 30_993_827, "c3d": 34_743_875}[cfg.MODEL.BACKBONE]


def test_no_cfg_means_the_demo():
    args = parse_args("x", [])
    assert load_cfg(args.cfg, args.opts).DATA.DATASET == "demo"


def test_overrides_and_their_errors():
    cfg = load_cfg(None, ["STAGE1.PART_LEN", "3", "DATA.FEATURES", "f.h5"])
    assert cfg.STAGE1.PART_LEN == 3 and cfg.STAGE1.TOPK == 3 and cfg.is_frozen()
    with pytest.raises(ConfigError, match="STAGE1.NOPE"):
        load_cfg(None, ["STAGE1.NOPE", "1", "DATA.FEATURES", "f.h5"])
    with pytest.raises(ConfigError, match="Type mismatch"):
        load_cfg(None, ["STAGE1.EPOCHS", "1.5", "DATA.FEATURES", "f.h5"])
    with pytest.raises(ConfigError, match="STAGE1.SAMPLING"):
        load_cfg(None, ["STAGE1.SAMPLING", "dense", "DATA.FEATURES", "f.h5"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_cfg(None, ["STAGE1.EPOCHS"])


def test_relative_data_paths_work_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_cfg(REPO_ROOT / "configs" / "shanghaitech" / "i3d_stage1.yaml")
    assert cfg.DATA.TRAIN_SPLIT == str(REPO_ROOT / "data" / "shanghaitech" / "SH_Train_new.txt")
    assert cfg.OUTPUT_DIR == str(tmp_path / "output" / "shanghaitech" / "i3d_stage1")


def test_yaml_keys_exist_in_defaults():
    """yacs would reject them at load time too; this names the file."""
    defaults = get_cfg_defaults()
    for path in CONFIGS:
        for section, values in yaml.safe_load(path.read_text()).items():
            if isinstance(values, dict):
                assert set(values) <= set(defaults[section]), path
