"""Ablation configs (paper Tables 4 and 5, the Sultani baseline): each changes only its row's keys
and builds its model; the w/o-SGA model and its training step."""

import re

import pytest
import torch
import yaml

from configs.defaults import get_cfg_defaults
from models.build import build_generator, build_model
from engine.stage2 import Trainer
from utils.config import REPO_ROOT, load_cfg
from utils.run import _flat

ABLATIONS = sorted((REPO_ROOT / "configs").rglob("ablation_*.yaml"))
STAGE2_ROWS = {  # Table 5 row -> the keys it changes from the full <backbone>_stage2.yaml
    "baseline": {"STAGE2.HARD_LABELS": True, "MODEL.SGA": False, "DATA.PSEUDO_LABELS": None},
    "no_pl": {"STAGE2.HARD_LABELS": True, "DATA.PSEUDO_LABELS": None},
    "no_guided": {"STAGE2.LAMBDA_GUIDED": 0.0},
    "no_sga": {"MODEL.SGA": False},
}
# no sub-bags
UNUSED_BY_SULTANI = {"STAGE1.PART_LEN", "STAGE1.TOPK", "STAGE1.SAMPLING", "STAGE1.BAG_SCORE"}


def _expected(path):
    """-> (base config path, {key: expected value or None for 'any'}) of an ablation file."""
    m = re.fullmatch(r"ablation_(t4_isolated|sultani|t5_(\w+?))_(i3d|c3d)\.yaml", path.name)
    assert m, f"{path.name}: ablation files are ablation_<row>_<backbone>.yaml"
    backbone = m.group(3)
    if m.group(1) == "t4_isolated":
        return path.parent / f"{backbone}_stage1.yaml", {"STAGE1.SAMPLING": "isolated"}
    if m.group(1) == "sultani":
        return path.parent / f"{backbone}_stage1.yaml", {
            "STAGE1.METHOD": "sultani",
            "STAGE1.LAMBDA_SPARSE": 8e-5,
            "STAGE1.LAMBDA_SMOOTH": 8e-5,
        }
    return path.parent / f"{backbone}_stage2.yaml", STAGE2_ROWS[m.group(2)]


def test_there_is_one_config_per_table_row():
    names = {p.name for p in ABLATIONS}
    assert {f"ablation_t4_isolated_{b}.yaml" for b in ("i3d", "c3d")} <= names
    assert {f"ablation_t5_{row}_i3d.yaml" for row in STAGE2_ROWS} <= names
    assert "ablation_sultani_i3d.yaml" in names


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_ablation_changes_only_its_row_and_builds_its_model(path):
    assert len(path.read_text().splitlines()) <= 25  # overrides only
    defaults = get_cfg_defaults()
    for section, values in yaml.safe_load(path.read_text()).items():
        assert not isinstance(values, dict) or set(values) <= set(defaults[section]), path
    base_path, changes = _expected(path)
    cfg, base = load_cfg(path), load_cfg(base_path)
    flat, base_flat = _flat(cfg), _flat(base)
    differ = {k for k in flat if flat[k] != base_flat[k]} - {"OUTPUT_DIR"}
    if cfg.STAGE1.METHOD == "sultani":
        differ -= UNUSED_BY_SULTANI
    assert differ == set(changes), f"{path.name} vs {base_path.name}"
    assert all(v is None or flat[k] == v for k, v in changes.items())
    if base_path.name.endswith("stage1.yaml"):
        assert build_generator(cfg).regressor[0].in_features == cfg.DATA.FEATURE_DIM
    else:
        model = build_model(cfg)
        n_params = sum(p.numel() for p in model.parameters())
        full = {"i3d": 30_993_827, "c3d": 34_743_875}[cfg.MODEL.BACKBONE]
        sga = sum(p.numel() for p in build_model(base).sga.parameters())
        assert n_params == (full if cfg.MODEL.SGA else full - sga) and (model.sga is None) == (
            not cfg.MODEL.SGA
        )


def _tiny_cfg(**extra):
    opts = {
        "MODEL.BACKBONE": "c3d",
        "MODEL.WIDTH": 0.0625,
        "MODEL.EXPAND_K": 2,
        "MODEL.DROPOUT": 0.0,
        "STAGE2.ACCUMULATE": 1,
        **extra,
    }
    return load_cfg(None, [str(x) for kv in opts.items() for x in kv])


@pytest.mark.parametrize("sga, lambda_guided", [(False, 1.0), (True, 0.0)])
def test_training_step_without_sga_or_guided_head(sga, lambda_guided):
    cfg = _tiny_cfg(**{"MODEL.SGA": sga, "STAGE2.LAMBDA_GUIDED": lambda_guided})
    torch.manual_seed(0)
    model = build_model(cfg)
    clips = torch.randn(2, 1, 3, 16, 32, 32)
    out = model(clips[:, 0])
    assert (out["guided_logits"] is None) == (out["attention"] is None) == (not sga)
    trainer = Trainer(cfg, model, torch.device("cpu"), 1)
    trainer.set_phase(cfg.STAGE2.FREEZE_EPOCHS)  # unfrozen
    losses = trainer.step(clips, torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
    assert losses["loss"] == pytest.approx(losses["loss_head"])  # the guided loss adds nothing
    assert (losses["loss_guided"] > 0) == sga  # computed (for the log) when the head exists
