"""Command line -> frozen config, the same for every tool: `--cfg FILE` then `KEY VALUE ...`
overrides."""

import argparse
import sys
from pathlib import Path

from configs.defaults import derive_cfg, get_cfg_defaults, validate_cfg
from utils.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CFG = REPO_ROOT / "configs" / "demo" / "stage1.yaml"
# input paths: relative ones are looked up in the working directory first, then in the repository
INPUT_PATH_KEYS = (
    "DATA.FEATURES",
    "DATA.TEST_FEATURES",
    "DATA.FEATURE_ROOT",
    "DATA.TRAIN_SPLIT",
    "DATA.MANIFEST",
    "DATA.TEST_SPLIT",
    "DATA.TEST_MASK_DIR",
    "DATA.TEST_ANNOTATION",
    "DATA.TRAIN_MASK_DIR",
    "DATA.FRAMES",
    "DATA.FRAMES_ROOT",
    "DATA.PSEUDO_LABELS",
    "MODEL.PRETRAINED",
    "TEST.CHECKPOINT",
    "TEST.SCORES",
)


class ConfigError(InputError):
    """A user mistake in the config or command line (utils/cli.py prints it as one line, no
    traceback)."""


def parse_args(description, argv=None, default_cfg=DEMO_CFG):
    """--cfg FILE [--resume] [KEY VALUE ...]; no --cfg means `default_cfg` (the demo)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--cfg", default=str(default_cfg), help="experiment YAML (default: the demo config)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue or redo a run whose OUTPUT_DIR is finished"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="tools/test.py: overwrite the results of an earlier test",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config"
    )
    return parser.parse_args(argv)


def load_cfg(cfg_file=None, opts=()):
    """defaults -> YAML -> overrides -> derived -> validated -> frozen CfgNode; raises
    ConfigError."""
    cfg = get_cfg_defaults()
    try:
        if cfg_file:
            cfg.merge_from_other_cfg(read_yaml_cfg(cfg_file))
        if len(opts) % 2:
            raise ConfigError(
                f"overrides must be KEY VALUE pairs, got an odd list: {' '.join(opts)}"
            )
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as err:  # yacs: "Non-existent (config) key: X"
        raise ConfigError(f"{err.args[0]} (see configs/defaults.py for every key)") from None
    except ValueError as err:  # yacs: type mismatch
        raise ConfigError(
            f"{err} (write floats as 0.0 / 1e-4, strings in quotes in YAML)"
        ) from None
    derive_cfg(cfg)
    _resolve_paths(cfg)
    try:
        validate_cfg(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    cfg.freeze()
    return cfg


def read_yaml_cfg(cfg_file):
    """A config file -> CfgNode, read as plain YAML data only: yacs would import a `.py` config
    (running its code), and YAML tags that build Python objects (`!!python/...`) are refused by the
    safe loader."""
    import yaml
    from yacs.config import CfgNode

    path = Path(cfg_file)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(
            f"config file {cfg_file} is not a .yaml/.yml file: configs are YAML only (a .py "
            "config would run code)"
        )
    if not path.is_file():
        raise ConfigError(f"config file {cfg_file} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(
            f"config file {cfg_file}{line} is not plain YAML data: "
            f"{getattr(err, 'problem', None) or err}; tags such as !!python/... are refused"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {cfg_file} holds a {type(data).__name__}, not a mapping of KEY: value"
        )
    return CfgNode(data)


def resolve_input_path(value):
    """Relative path -> absolute: the working directory if it exists there, else the repository
    root."""
    if not value:
        return value
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists() or not (REPO_ROOT / path).exists():
        return str(path.resolve())
    return str((REPO_ROOT / path).resolve())


def _resolve_paths(cfg):
    for key in INPUT_PATH_KEYS:
        node_name, leaf = key.split(".")
        node = cfg[node_name]
        if leaf in node:
            node[leaf] = resolve_input_path(node[leaf])
    cfg.OUTPUT_DIR = str(Path(cfg.OUTPUT_DIR).expanduser().resolve())


def setup_cfg(description, argv=None):
    """Parses the command line of a tool -> (frozen cfg, parsed args)."""
    args = parse_args(description, sys.argv[1:] if argv is None else argv)
    return load_cfg(args.cfg, args.opts), args
