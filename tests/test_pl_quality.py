"""tools/pl_quality.py: the paper's Table 7 measure on the authors' pseudo-labels and on a run
folder."""

import json

import numpy as np
import pytest
import yaml

from utils.config import REPO_ROOT
from utils.pseudo_labels import save_pseudo_labels
from utils.errors import UserError
from run_tool import run_tool

OFFICIAL = REPO_ROOT / "data" / "shanghaitech" / "official_pseudo_labels"


@pytest.mark.parametrize("backbone, expected", [("I3D", 0.7299), ("C3D", 0.6990)])
def test_authors_pseudo_labels_on_the_63_train_masks(backbone, expected):
    """docs/REFERENCE.md §5: the shipped files score 0.7299 (I3D) and 0.6990 (C3D) pooled frame
    AUC."""
    result = run_tool("pl_quality", [str(OFFICIAL / f"SHT_{backbone}_PLs.npy")])
    after = result["after"]
    assert round(after["auc"], 4) == expected and after["n_videos"] == 63 and "before" not in result
    assert result["n_without_mask"] == result["n_without_pseudo_label"] == 0


def _write_run(run, masks_dir):
    """A stage-1 run folder: config (split + masks), refined and raw scores of a 3-clip abnormal
    video."""
    (run).mkdir()
    (run / "train.txt").write_text("v_0000,0\nv_0001,1\nv_0002,1\n")
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "DATA": {
                    "DATASET": "shanghaitech",
                    "TRAIN_SPLIT": str(run / "train.txt"),
                    "TRAIN_MASK_DIR": str(masks_dir),
                }
            }
        )
    )
    save_pseudo_labels(
        run / "pseudo_labels",
        {
            "v_0000": np.zeros(2),
            "v_0001": np.array([0.0, 1.0, 0.5]),
            "v_0002": np.array([0.2, 0.9]),
        },
    )
    np.savez(
        run / "train_scores.npz",
        v_0000=np.zeros(2),
        v_0001=np.array([0.9, 0.1, 0.2]),
        v_0002=np.array([0.2, 0.9]),
    )


def test_run_folder_before_and_after_hand_computed(tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    # clip_len 4: clips 1, 2 anomalous
    np.save(masks / "v_0001.npy", np.repeat([0, 1, 1], 4).astype(np.uint8))
    np.save(masks / "v_0002.npy", np.repeat([0, 1], 4).astype(np.uint8))
    _write_run(tmp_path / "run", masks)
    result = run_tool(
        "pl_quality", [str(tmp_path / "run"), "--clip-len", "4", "--json", str(tmp_path / "q.json")]
    )
    # after: positives 1.0 .5 .9 (x4 frames), negatives 0.0 .2 -> every positive frame beats every
    # negative
    assert result["after"]["auc"] == 1.0 and result["after"]["n_videos"] == 2
    # before: positives .1 .2 .9, negatives .9 .2 -> pairs (pos > neg) + 0.5 ties: (0 + .5 + 1.5) /
    # 6 = 1/3
    assert result["before"]["auc"] == pytest.approx(1 / 3)
    # v_0001: 0, v_0002: 1
    assert result["before"]["mean_video_auc"] == pytest.approx((0.0 + 1.0) / 2)
    assert json.loads((tmp_path / "q.json").read_text())["after"]["auc"] == 1.0
    printed = capsys.readouterr().out
    assert "before refinement" in printed and "33.33" in printed and "Table 7" in printed


def test_missing_masks_is_an_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run_tool(
            "pl_quality", [str(OFFICIAL / "SHT_I3D_PLs.npy"), "--masks", str(tmp_path / "none")]
        )
