"""torch.distributed for multi-GPU and multi-node runs launched with `torchrun` (single process
otherwise).

`torchrun --nproc_per_node 4 tools/train_stage2.py --cfg ...` sets RANK / WORLD_SIZE / LOCAL_RANK;
NCCL is used on CUDA and gloo on the CPU. Only rank 0 writes files."""

import datetime
import os

import torch
import torch.distributed as dist

from utils.errors import DeviceError


def init_distributed(device_name):
    """Joins the process group if launched by torchrun -> (rank, world_size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        from utils.env import resolve_device

        return 0, 1, resolve_device(device_name)
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name.startswith("cuda") and not use_cuda:
        raise DeviceError(
            f"DEVICE = {device_name!r} but this machine has no usable CUDA device; set DEVICE cpu"
        )
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch.backends.cudnn.benchmark = True
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def barrier():
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value, device):
    """Python float averaged over ranks (identity when not distributed)."""
    if not is_distributed():
        return value
    tensor = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()


def gather_dicts(local):
    """Merges a dict from every rank (e.g. per-video scores of each rank's shard of the test
    videos)."""
    if not is_distributed():
        return dict(local)
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return {k: v for part in parts for k, v in part.items()}


def broadcast_object(obj, src=0):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup():
    if is_distributed():
        dist.destroy_process_group()
