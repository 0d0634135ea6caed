"""One home per dataset: what ShanghaiTech, UCF-Crime, XD-Violence and the demo do differently.

Split reading (datasets/splits.py), ground truth (datasets/ground_truth.py), the test transform
(datasets/transforms.py), the feature set a demo generates (datasets/build.py) and the metric
order of reports (engine/evaluate.py, engine/visualize.py) look the dataset up here
(`dataset_spec(DATA.DATASET)`) instead of testing its name.
Adding a dataset = one DatasetSpec entry in DATASETS + configs/<name>/*.yaml + data/<name>/ (its
splits and annotations). This module imports no other dataset module, so all of them can import it.
"""

import re
from dataclasses import dataclass, field
from typing import Callable

from utils.errors import InputError


@dataclass(frozen=True)
class DatasetSpec:
    """What DATA.DATASET decides; the callables take plain values (video names, paths)."""

    name: str
    # (name, where) -> 1 abnormal / 0 normal, for split files that list videos without a label
    label_from_name: Callable
    # abnormal video name -> its anomaly class for the per-class AUC ('' when names do not say)
    category: Callable
    # how the test ground truth is stored: a key of datasets.ground_truth.GROUND_TRUTHS
    ground_truth: str
    # backbone -> test resize (H, W) replacing the backbone's default (datasets/transforms.py)
    test_resize: dict = field(default_factory=dict)
    # report order of the headline metrics (the first is the dataset's headline number)
    headline: tuple = ("auc", "ap")
    # (path, data_dir, dim) -> summary: writes DATA.FEATURES when it is missing (None: never)
    make_features: Callable | None = None


def _sht_label(name, where):
    # the weakly-supervised split takes its abnormal videos from the original test set, whose
    # names have a 4-digit second part (01_0014); the original training set (all normal) has 3
    # digits (01_002)
    m = re.fullmatch(r"\d+_(\d{3,4})", name)
    if m is None:
        raise InputError(
            f"{where}: cannot infer the label of '{name}' from its name (ShanghaiTech "
            "names look like 01_0014 = abnormal, 01_002 = normal); use a `name,label` "
            "split file instead"
        )
    return int(len(m.group(1)) == 4)


def _ucf_label(name, where):
    return int("Normal" not in name)


def _ucf_category(name):
    # official eval_each_part rule (docs/REFERENCE.md §4.4): Abuse028_x264 -> Abuse
    return name.split("_")[0][:-3]


def _xd_label(name, where):
    if "_label_" not in name:
        raise InputError(
            f"{where}: XD-Violence video '{name}' has no '_label_<code>' in its name, "
            "so its label is unknown; use the official rgb.list / rgb_test.list names"
        )
    return int(name.rsplit("_label_", 1)[1] != "A")


def _xd_category(name):
    # primary (first) label code: ..._label_B2-G-0 -> B2
    return name.rsplit("_label_", 1)[1].split("-")[0]


def _unnamed(name):
    return ""


def _make_demo_features(path, data_dir, dim):
    """The demo's generated feature set (datasets/demo.py) at `path`, from data_dir's splits."""
    from datasets.demo import make_demo_features

    # the demo data set is fixed (seed 0): SEED varies the training, not the data
    return make_demo_features(path, data_dir=data_dir, dim=dim, seed=0)


# DATA.DATASET -> DatasetSpec
DATASETS = {
    "shanghaitech": DatasetSpec(
        "shanghaitech", _sht_label, _unnamed, "masks", test_resize={"i3d": (240, 320)}
    ),
    "ucf_crime": DatasetSpec("ucf_crime", _ucf_label, _ucf_category, "ucf_annotation"),
    "xd_violence": DatasetSpec(
        "xd_violence", _xd_label, _xd_category, "xd_intervals", headline=("ap", "auc")
    ),
    "demo": DatasetSpec("demo", _sht_label, _unnamed, "masks", make_features=_make_demo_features),
}


def _own_label(name, where):
    raise InputError(
        f"{where}: a dataset of your own gives its labels in its manifest (DATA.MANIFEST, "
        "docs/own_data.md), not by video names"
    )


def own_spec(name):
    """The rules of a dataset described by a manifest (datasets/manifest.py): labels, classes and
    ground truth all come from the manifest; the backbone's default test resize."""
    return DatasetSpec(name, _own_label, _unnamed, "manifest")


def dataset_spec(dataset, own=False):
    """DATA.DATASET value -> its DatasetSpec; InputError naming the allowed values otherwise.
    own: any other name is a dataset of your own (own_spec), as with DATA.MANIFEST."""
    if dataset in DATASETS:
        return DATASETS[dataset]
    if own:
        return own_spec(dataset)
    raise InputError(
        f"unknown dataset '{dataset}': expected one of {tuple(DATASETS)}, or describe your own "
        "dataset in a manifest (DATA.MANIFEST, docs/own_data.md)"
    )
