"""benchmarks/stage2_epoch.py counts iterations and optimizer steps exactly."""
import json
import math

import torch

from benchmarks import stage2_epoch


def test_stage2_epoch_counts_iterations_and_the_optimizer_steps_taken(tmp_path, capsys):
    """ACCUMULATE 3 (the recipe): a warm-up of 2 is rounded up to one whole window (1 step), then 4
    timed iterations close one window (the step at iteration 6) and leave 1 iteration pending."""
    stage2_epoch.main(["--device", "cpu", "--tiny", "--videos", "2", "--test-videos", "1",
                       "--batch", "1", "--workers", "0", "--warmup", "2", "--iters", "4",
                       "--amp", "off", "--json", "--dir", str(tmp_path), "STAGE2.CLIP_NUM", "1"])
    out = capsys.readouterr().out
    row, = json.loads(out.strip().splitlines()[-1])["rows"]
    assert (row["warmup_iterations"], row["iterations"], row["accumulate"]) == (3, 4, 3)
    assert (row["windows_closed"], row["pending_iterations"], row["optimizer_steps"]) == (1, 1, 1)
    assert "4 iterations = 1 ACCUMULATE 3 windows (1 optimizer steps taken) + 1 iterations" in out
    assert row["clips_per_iteration"] == 2 and row["frames_per_s"] == 16 * row["clips_per_s"] > 0
    assert row["ms_per_iter_median"] > 0 and 0 <= row["data_wait_share"] < 1
    assert math.isfinite(row["loss_first"]) and math.isfinite(row["loss_last"])
    assert row["scaler_scale"] is None  # AMP off: no GradScaler
    # the test row's checkpoint: Adam stepped twice in all (warm-up 1 + timed 1) in 7 iterations
    state = torch.load(row["checkpoint"], map_location="cpu", weights_only=True)
    assert state["global_step"] == 7
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {2}
    assert row["test_clips"] > 0
