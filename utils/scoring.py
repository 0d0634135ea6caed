"""Scoring every clip of many videos with a stage-1 generator, in large batches."""

import numpy as np
import torch


@torch.inference_mode()
def score_videos(model, store, names, device, batch_rows=65536):
    """-> {name: float32 (n_clips,)} generator scores of every clip of `names` (eval mode, batched).

    Videos are grouped into batches of at most batch_rows clips; a longer video is scored alone, in
    batch_rows-clip slices, so no batch holds more than batch_rows feature rows (UCF-Crime has a
    61,031-clip training video: 1 GB of C3D features at once otherwise)."""
    model.eval()
    names = list(names)
    long = {name for name in names if store.num_clips(name) > batch_rows}
    scores = {}
    for batch_names, features, lengths in store.iter_batches(
        [n for n in names if n not in long], batch_rows
    ):
        scores.update(
            zip(
                batch_names,
                np.split(_score(model, features, device, batch_names), np.cumsum(lengths)[:-1]),
            )
        )
    for name in long:
        n = store.num_clips(name)
        scores[name] = np.concatenate(
            [
                _score(
                    model,
                    store.gather([name], [np.arange(a, min(a + batch_rows, n))])[0],
                    device,
                    [name],
                )
                for a in range(0, n, batch_rows)
            ]
        )
    return {name: scores[name] for name in names}


def _score(model, features, device, names):
    """features: float32 (N, D) numpy -> float32 (N,) numpy; non-finite scores raise."""
    batch = model(torch.from_numpy(features).to(device)).float().cpu().numpy()
    if not np.isfinite(batch).all():
        raise FloatingPointError(
            f"the generator produced NaN/inf scores for videos {names[:3]}...: "
            "the checkpoint or the features are broken"
        )
    return batch
