"""The plain-dict registries: every choice list is the keys of its owner's dict, checked by name."""

import re
from pathlib import Path

import pytest

from configs.defaults import CHOICES, derive_cfg, get_cfg_defaults, validate_cfg
from datasets.ground_truth import GROUND_TRUTHS
from datasets.specs import DATASETS, dataset_spec
from datasets.transforms import SPECS
from models.build import BACKBONES, build_model
from utils.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_every_dataset_has_a_spec_and_its_ground_truth_reader():
    configured = {
        p.name for p in (ROOT / "configs").iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert configured == set(DATASETS) == set(CHOICES["DATA.DATASET"])
    assert all(
        spec.name == name and spec.ground_truth in GROUND_TRUTHS for name, spec in DATASETS.items()
    )
    assert dataset_spec("xd_violence").headline == ("ap", "auc")
    with pytest.raises(ValueError, match=r"unknown dataset 'sht': expected one of \('shanghai"):
        dataset_spec("sht")


def test_every_backbone_has_a_transform_and_a_named_error():
    assert set(SPECS) == set(BACKBONES) == set(CHOICES["MODEL.BACKBONE"])
    cfg = get_cfg_defaults()
    cfg.MODEL.BACKBONE = "r3d"
    with pytest.raises(
        ConfigError, match=r"MODEL.BACKBONE = 'r3d' is not one of \('i3d', 'c3d', 'r2plus1d_18', "
    ):
        build_model(cfg)


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_validate_cfg_names_the_key_and_its_choices(key):
    cfg = get_cfg_defaults()
    section, name = key.split(".")
    cfg[section][name] = "nope"
    derive_cfg(cfg)
    with pytest.raises(ValueError, match=re.escape(f"{key} = 'nope' is not one of {CHOICES[key]}")):
        validate_cfg(cfg)
