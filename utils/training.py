"""Stage-2 training pieces: optimizer, warm-up, backbone freezing, BatchNorm modes, gradient
bookkeeping."""

import hashlib

import torch
from torch import nn


def _adam(params, s2):
    return torch.optim.Adam(params, lr=s2.LR, weight_decay=s2.WEIGHT_DECAY)


def _nesterov_sgd(params, s2):
    return torch.optim.SGD(
        params, lr=s2.LR, momentum=0.9, nesterov=True, weight_decay=s2.WEIGHT_DECAY
    )


# STAGE2.OPTIMIZER -> (parameters or groups, cfg.STAGE2) -> torch optimizer
OPTIMIZERS = {"adam": _adam, "sgd": _nesterov_sgd}


def _adagrad_stage1(params, s1):
    return torch.optim.Adagrad(params, lr=s1.LR, weight_decay=s1.WEIGHT_DECAY)


def _adam_stage1(params, s1):
    return torch.optim.Adam(params, lr=s1.LR, weight_decay=s1.WEIGHT_DECAY)


def _adamw_stage1(params, s1):
    return torch.optim.AdamW(params, lr=s1.LR, weight_decay=s1.WEIGHT_DECAY)


# STAGE1.OPTIMIZER -> (parameters, cfg.STAGE1) -> torch optimizer; adagrad is the official one,
# adam couples WEIGHT_DECAY into the gradient, adamw decouples it (docs/stage1_recipe.md)
STAGE1_OPTIMIZERS = {"adagrad": _adagrad_stage1, "adam": _adam_stage1, "adamw": _adamw_stage1}
# STAGE2.COMPILE: "" = not compiled, else a torch.compile mode
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune")


def build_optimizer(cfg, model):
    """Adam (or Nesterov SGD) over all parameters; frozen ones simply have no gradient
    (docs/REFERENCE.md §3.8)."""
    s2 = cfg.STAGE2
    params = model.parameters()
    if s2.NO_BIAS_DECAY:  # official UCF-C3D: decay only parameters named '*weight*'
        named = list(model.named_parameters())
        params = [
            {"params": [p for n, p in named if "weight" in n]},
            {"params": [p for n, p in named if "weight" not in n], "weight_decay": 0.0},
        ]
    return OPTIMIZERS[s2.OPTIMIZER](params, s2)


def maybe_compile(module, mode):
    """-> torch.compile(module, mode=mode) for a STAGE2.COMPILE mode, the module itself for ""
    (off). The compiled wrapper shares the module's parameters: checkpoints are written from the
    module, unchanged."""
    return torch.compile(module, mode=mode) if mode else module


def linear_warmup(optimizer, warmup_iters):
    """Per-iteration LambdaLR: x (i + 1) / warmup_iters for the first iterations, then x 1; None
    for warmup_iters 0 (no scheduler: the official constant learning rate)."""
    if warmup_iters == 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / warmup_iters))


def warmup_schedule(optimizer, warmup_epochs):
    """Per-epoch LambdaLR: x (epoch + 0.5) / warmup for the first epochs (0.1, 0.3, ... for 5), then
    x 1."""

    def factor(epoch):
        return (epoch + 0.5) / warmup_epochs if epoch < warmup_epochs else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def set_backbone_trainable(model, trainable):
    for p in model.backbone.parameters():
        p.requires_grad_(trainable)


def set_train_mode(model, backbone_bn_eval):
    """model.train(), with the backbone's BatchNorm layers in eval mode (running statistics) if
    asked.

    Frozen backbones keep BN in eval mode, so neither their affine parameters nor their statistics
    change."""
    model.train()
    if backbone_bn_eval:
        for module in model.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def pending_grads(model):
    """Accumulated gradients not yet stepped (None where a parameter has none), for checkpoints."""
    return [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]


def restore_grads(model, grads):
    for p, g in zip(model.parameters(), grads):
        p.grad = None if g is None else g.to(p.device)


def average_grads_across_ranks(model):
    """Averages accumulated (unsynchronised) gradients over ranks, so rank 0's copy stands for
    all."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist.get_world_size()


def sync_buffers(model):
    """Makes every rank hold the same buffers: floating ones (BatchNorm running mean/var) become the
    mean over ranks, the others (num_batches_tracked) rank 0's. Collective: every rank must call it.

    DDP runs with broadcast_buffers=False, so each rank's running statistics are an exponential
    moving average of its own batches' statistics; the average is linear, so averaging the ranks'
    EMAs (all from the same start) equals the EMA of the rank-averaged batch statistics: every
    rank's data counts, for two collectives per evaluation instead of a broadcast before every
    forward that keeps rank 0's only. The mean is taken as rank 0's value + the mean difference from
    it, so buffers that already agree (a frozen backbone, a second call) stay exactly as they are.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    buffers = list(model.buffers())
    for tensor in [b for b in buffers if not b.is_floating_point()]:
        dist.broadcast(tensor, src=0)
    floating = [b for b in buffers if b.is_floating_point()]
    if not floating:
        return
    flat = torch.cat([b.detach().reshape(-1).double() for b in floating])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    delta = flat - reference
    dist.all_reduce(delta)
    mean = reference + delta / dist.get_world_size()
    for b, part in zip(floating, mean.split([b.numel() for b in floating])):
        b.copy_(part.view_as(b))


def weights_digest(model):
    """-> {"parameters", "buffers"}: sha256 of each (bytes, in state-dict order); equal =
    identical."""
    params = {id(p) for p in model.parameters()}
    digests = {"parameters": hashlib.sha256(), "buffers": hashlib.sha256()}
    for tensor in model.state_dict(keep_vars=True).values():
        kind = "parameters" if id(tensor) in params else "buffers"
        digests[kind].update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {kind: digest.hexdigest() for kind, digest in digests.items()}
