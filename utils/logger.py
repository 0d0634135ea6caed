"""Run logging: `log.txt` + console through `logging`, metrics to `metrics.jsonl` and
tensorboard."""

import json
import logging
import math
import sys
from pathlib import Path

LOGGER_NAME = "mist"


def setup_logger(output_dir=None, name=LOGGER_NAME, rank=0):
    """Console (INFO) and, when output_dir is given, `<output_dir>/log.txt` (appended on resume).

    rank > 0 (torchrun): the console shows warnings and errors only, so a run prints each line once.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%m/%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(fmt)
    console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.addHandler(console)
    if output_dir is not None:
        file_handler = logging.FileHandler(Path(output_dir) / "log.txt")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    logging.captureWarnings(True)  # warnings (e.g. padded ground truth) also reach log.txt
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers = logger.handlers
    warnings_logger.propagate = False
    return logger


class MetricsWriter:
    """Appends one JSON object per evaluation to `metrics.jsonl` and mirrors scalars to
    tensorboard."""

    def __init__(self, output_dir, enabled=True):
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled:
            from tensorboardX import SummaryWriter  # imported here: only the writing rank needs it

            self.tb = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def write(self, record, step):
        """record: JSON-serialisable dict; its numeric top-level values also go to tensorboard."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        for key, value in record.items():
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                self.tb.add_scalar(key, value, step)
        self.tb.flush()

    def scalar(self, key, value, step):
        if self.enabled:
            self.tb.add_scalar(key, value, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def read_metrics(output_dir):
    """All records of `<output_dir>/metrics.jsonl` (empty list if none)."""
    path = Path(output_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
