"""Grad-CAM on the MIST head and SGA attention maps, overlaid on the clip's middle frame (paper Fig.
8).

As the official `--vis_UCF` (docs/REFERENCE.md §4.7): Grad-CAM of the abnormal logit over the final
feature map F = (1 + A) * F5, channel weights = mean gradient over (T, h, w), CAM = ReLU(sum_c w_c
F_c) averaged over T and min-max normalised, JET colour map, blended 0.3 * CAM + 0.5 * frame. Unlike
the official code (§6.27) the frame is recovered with the inverse of the backbone's OWN
normalisation (I3D: RGB, x*128+128; C3D: BGR, x + Sports-1M mean), clipped to [0, 255] instead of
wrapping, and kept in BGR for cv2.imwrite."""

import cv2
import numpy as np
import torch

from datasets.transforms import SPECS

CAM_WEIGHT, FRAME_WEIGHT = 0.3, 0.5  # official blend


def denormalise(clip, backbone):
    """clip: float (3, T, H, W), as the backbone's transform made it -> uint8 BGR frames (T, H, W,
    3)."""
    spec = SPECS[backbone]
    std = np.asarray(spec.std, np.float32)
    x = clip.detach().cpu().float().numpy() * (std.reshape(3, 1, 1, 1) if std.ndim else std)
    x += np.asarray(spec.mean, np.float32).reshape(3, 1, 1, 1)
    frames = np.clip(np.rint(np.moveaxis(x, 0, -1)), 0, 255).astype(np.uint8)  # (T, H, W, 3)
    # RGB input -> BGR for cv2
    return np.ascontiguousarray(frames[..., ::-1] if spec.rgb else frames)


def grad_cam(model, clip):
    """model: MIST; clip: (3, T, H, W) -> (cam float32 (h, w) in [0, 1], attention (h, w) or None,
    score).

    score = softmax(logits)[1], the clip's anomaly score; attention is the SGA map A (None without
    SGA)."""
    model.eval()
    with torch.no_grad():
        out = model(clip[None].to(next(model.parameters()).device))
    # the head sees the global average of F: F as a leaf gets the head's gradient
    with torch.enable_grad():
        leaf = out["feature_map"].detach().requires_grad_(True)
        logits = model.head(model.dropout(leaf.mean(dim=(2, 3, 4))))
        logits[0, 1].backward()
    weights = leaf.grad.mean(dim=(2, 3, 4), keepdim=True)  # (1, C, 1, 1, 1)
    cam = torch.relu((weights * leaf.detach()).sum(dim=1)).mean(dim=1)[0]  # (h, w)
    cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-8)
    attention = None if out["attention"] is None else out["attention"][0, 0].mean(dim=0).detach()
    score = float(torch.softmax(logits.detach(), dim=1)[0, 1])
    return (
        cam.cpu().numpy().astype(np.float32),
        None if attention is None else attention.cpu().numpy(),
        score,
    )


def heatmap(values, size):
    """values: (h, w) in [0, 1] -> uint8 BGR (H, W, 3) JET colour map resized to size = (H, W)."""
    v = cv2.resize(
        np.asarray(values, np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR
    )
    return cv2.applyColorMap(np.uint8(np.clip(v, 0.0, 1.0) * 255), cv2.COLORMAP_JET)


def overlay(frame_bgr, heat_bgr):
    """uint8 BGR frame and heat map (H, W, 3) -> uint8 BGR blend 0.3 * heat + 0.5 * frame (official
    weights)."""
    blend = CAM_WEIGHT * heat_bgr.astype(np.float32) + FRAME_WEIGHT * frame_bgr.astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def gradcam_panel(model, clip, backbone):
    """-> (uint8 BGR panel [frame | Grad-CAM | attention], anomaly score) for one transformed
    clip."""
    frames = denormalise(clip, backbone)
    frame = frames[len(frames) // 2]
    cam, attention, score = grad_cam(model, clip)
    tiles = [frame, overlay(frame, heatmap(cam, frame.shape[:2]))]
    # A is in (0, 1) already: shown unnormalised, so its level is comparable
    if attention is not None:
        tiles.append(overlay(frame, heatmap(attention, frame.shape[:2])))
    return np.concatenate(tiles, axis=1), score
