"""Scoring every clip of many videos with a stage-1 generator, in large batches."""
import numpy as np
import torch


@torch.no_grad()
def score_videos(model, store, names, device, batch_rows=65536):
    """-> {name: float32 (n_clips,)} generator scores of every clip of `names` (eval mode, batched)."""
    model.eval()
    scores = {}
    for batch_names, features, lengths in store.iter_batches(names, max_rows=batch_rows):
        batch = model(torch.from_numpy(features).to(device)).float().cpu().numpy()
        if not np.isfinite(batch).all():
            raise FloatingPointError(f"the generator produced NaN/inf scores for videos {batch_names[:3]}...: "
                                     "the checkpoint or the features are broken")
        scores.update(zip(batch_names, np.split(batch, np.cumsum(lengths)[:-1])))
    return scores
