"""Seeds, devices and the CPU allocator."""

import ctypes
import ctypes.util
import os
import random
import sys

import numpy as np
import torch

from utils.errors import DeviceError


def seed_everything(seed):
    """Seeds python, numpy's legacy global RNG and torch once; returns a numpy Generator for
    sampling."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def resolve_device(name):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device; asking for CUDA without one is an
    error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"DEVICE = {name!r} but this machine has no usable CUDA device; set DEVICE cpu (or"
            " auto)"
        )
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise DeviceError(
            f"DEVICE = {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def use_deterministic(enabled):
    """DETERMINISTIC True: cuDNN without autotuning and with deterministic algorithms only, torch's
    deterministic implementations (a warning where an operation has none), deterministic cuBLAS
    workspaces (read when cuBLAS starts: call this before the first GPU matmul)."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def keep_large_blocks(mmap_threshold=512 * 2**20, trim_threshold=2**30):
    """Let glibc serve tensors up to mmap_threshold bytes from its heap and keep up to
    trim_threshold bytes of freed heap -> True if applied (Linux with glibc), False elsewhere
    (nothing changes).

    By default glibc maps each block above ~32 MB fresh from the kernel and unmaps it when freed, so
    a CPU training loop that allocates the same large tensors every iteration (stage 1: 17,920 x 512
    activations, masks and gradients) page-faults all of them in again each time. With this, a
    stage-1 iteration took 0.14 s instead of 0.195 s on the benchmark machine
    (benchmarks/RESULTS.md). Process-wide; memory freed by the loop is reused, not returned. (Plain
    malloc blocks are reused every time, tests/test_env.py; torch's 64-byte-aligned blocks were seen
    to fault in again part of the time on that VM.)"""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
            and libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))
        )
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
