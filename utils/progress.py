"""Progress bars that stay out of logs: every tqdm of the project is made here.

A bar draws only on a terminal: tqdm's `disable=None` turns it off when its stream (stderr) is not
a TTY, so a run redirected to a file (`> log.txt 2>&1`, nohup, a job scheduler) gets no flood of
carriage-return updates. `enabled=False` (a quiet tool, a non-zero DDP rank) turns it off
everywhere."""

from tqdm import tqdm


def bar(iterable=None, enabled=True, **kwargs):
    """-> tqdm(iterable, **kwargs) that draws only when `enabled` and stderr is a terminal.

    Its methods (set_postfix, update, write, close) work either way; `bar(...).disable`
    is truthy when it does not draw."""
    return tqdm(iterable, disable=None if enabled else True, **kwargs)
