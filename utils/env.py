"""Seeds and devices."""
import os
import random

import numpy as np
import torch


def seed_everything(seed):
    """Seeds python, numpy's legacy global RNG and torch once; returns a numpy Generator for sampling."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(name):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"DEVICE = {name!r} but this machine has no usable CUDA device; set DEVICE cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(f"DEVICE = {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device
