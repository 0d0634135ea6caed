"""The reference of benchmarks/stage1.py: what the official stage-1 code does (docs/REFERENCE.md
§1.3-§1.7), re-implemented on the benchmark's feature stores: per-item numpy sampling in a
DataLoader, the top-k loss with its Python loop, one forward per test clip with Python-list frame
expansion, PLs in 1000-clip chunks."""

import numpy as np
import torch

from utils.metrics import average_precision, false_alarm_rate, frame_auc, pr_auc, rmse, score_gap

# official batch (normal + abnormal bags), sub-bags, clips, top-k, frames
B, L, T, TOPK, CLIP = 40, 32, 7, 7, 16


class OfficialBags(torch.utils.data.Dataset):
    """SHT_MIL_dataset (docs/REFERENCE.md §1.3): item i = (normal i, abnormal i), sampled with
    np.random."""

    def __init__(self, store, normal, abnormal):
        # load_feat: every train array in RAM (the pool's videos are views: 13 GB of UCF-C3D would
        # not fit)
        self.feats = {
            n: store.video(n) if hasattr(store, "video") else store.get(n)
            for n in normal + abnormal
        }
        self.normal, self.abnormal = normal, abnormal
        self.shuffle_keys()

    def shuffle_keys(self):
        self.norm_iters = np.random.permutation(len(self.normal))
        self.abnorm_iters = np.random.permutation(len(self.abnormal))

    def __len__(self):
        return min(len(self.normal), len(self.abnormal))

    @staticmethod
    def sample_feat(feat):
        n = len(feat)
        if n < T:  # the official code raises IndexError here; repeat clips as ours does
            return torch.from_numpy(feat[np.tile(np.arange(T) * n // T, L)]), np.ones(L * T)
        move = np.random.randint((n - T) // (L + 1)) if (n - T) // (L + 1) >= 1 else 0
        starts = np.linspace(0, n - T, L + 1, dtype=int) + move
        chosen = np.concatenate([np.arange(s, s + T) for s in starts])[: L * T]
        return torch.from_numpy(feat[chosen]), np.ones(L * T)

    def __getitem__(self, i):
        norm, norm_labs = self.sample_feat(self.feats[self.normal[self.norm_iters[i]]])
        abn, abn_labs = self.sample_feat(self.feats[self.abnormal[self.abnorm_iters[i]]])
        return norm, norm_labs, abn, abn_labs


def official_loss(y_pred, lambda_1=0.01, lambda_2=0.0):
    """train_MIL_Generator.topk_rank_loss (§1.4), with its Python loop over the normal bags."""
    topk_pred = torch.mean(torch.topk(y_pred.view(2 * B, L * T), TOPK, dim=-1)[0], dim=-1)
    nor_max, abn_max = topk_pred[:B], topk_pred[B:]
    err = 0
    for i in range(B):
        err += torch.sum(torch.relu(1 - abn_max + nor_max[i]))
    err = err / B**2
    abn = y_pred.view(2 * B, L * T)[B:]
    return err + lambda_1 * abn.mean() + lambda_2 * ((abn[:, :-1] - abn[:, 1:]) ** 2).mean()


def reference_steps(model, optimizer, dataset, workers=0):
    """Generator: one official iteration per next() (a new DataLoader iterator, i.e. new workers,
    per epoch)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=B, drop_last=True, num_workers=workers)
    while True:
        for norm, _, abn, _ in loader:
            feats = torch.cat([norm, abn], dim=0).float().view(2 * B, L * T, -1)
            loss = official_loss(
                model(feats.view(-1, feats.shape[-1])).view(2 * B, L * T, -1).mean(-1)
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            yield loss.item()  # the official loop prints the loss every iteration
        dataset.shuffle_keys()


@torch.no_grad()
def reference_eval(model, store, videos, gt):
    """Official evaluation: a forward per clip, Python lists extended 16 frames at a time, then
    metrics."""
    model.eval()
    scores, labels, owners = [], [], []
    for v in videos:
        feats = torch.from_numpy(store.get(v.name))
        for j in range(len(feats)):
            score = float(model(feats[j : j + 1]).cpu().numpy()[0])
            scores.extend([score] * CLIP)
            owners.extend([v] * CLIP)
        labels.extend(gt[v.name][: CLIP * len(feats)].tolist())
    return frame_metrics(np.array(scores), np.array(labels), owners)


def frame_metrics(s, y, owners):
    """The metric set of utils.evaluation.evaluate, on 1-D frame arrays (owners: Video of each
    frame)."""
    normal = np.array([o.label == 0 for o in owners])
    out = {
        "auc": frame_auc(s, y),
        "ap": average_precision(s, y),
        "pr_auc": pr_auc(s, y),
        "score_gap": score_gap(s, y),
        "far": false_alarm_rate(s, y),
        "rmse": rmse(s, y),
        "far_normal_videos": (
            false_alarm_rate(s[normal], np.zeros(normal.sum())) if normal.any() else None
        ),
    }
    category = np.array([o.category for o in owners])
    for c in sorted(set(category[~normal]) - {"", "Normal"}):
        pick = normal | (category == c)
        out[c] = (
            frame_auc(s[pick], y[pick]),
            pr_auc(s[pick], y[pick]),
            score_gap(s[pick], y[pick]),
        )
    return out


@torch.no_grad()
def reference_pseudo_labels(model, store, train):
    """generate_PL (§1.7): 1000-clip chunks per video, then smooth twice (+ min-max for abnormal
    videos)."""
    model.eval()
    scores = {}
    for name, _ in train:
        feats = torch.from_numpy(store.get(name))
        scores[name] = torch.cat([model(c) for c in feats.split(1000)]).squeeze().numpy()
    out = {}
    for name, label in train:
        y = np.atleast_1d(scores[name])
        for _ in range(2):
            y = np.convolve(np.r_[[y[0]] * 2, y, [y[-1]] * 2], np.ones(5) / 5, mode="valid")
        if label and len(y) >= 2:
            y = (y - y.min()) / (y.max() - y.min())
        out[name] = y
    return out
