"""utils.progress.bar: progress bars draw on a terminal only, so redirected logs stay clean."""

import io

from utils.progress import bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_draws_on_a_terminal_and_writes_nothing_to_a_redirected_stream():
    terminal, redirected = _Terminal(), io.StringIO()
    shown = bar(range(3), file=terminal, desc="epochs")
    hidden = bar(range(3), file=redirected, desc="epochs")
    # read before iterating: a finished bar closes, and a closed bar reads disable=True
    assert (bool(shown.disable), hidden.disable) == (False, True)
    assert list(shown) == [0, 1, 2] and list(hidden) == [0, 1, 2]
    assert "epochs: 100%" in terminal.getvalue()
    assert redirected.getvalue() == ""


def test_a_disabled_bar_stays_off_even_on_a_terminal():
    terminal = _Terminal()
    off = bar(range(2), enabled=False, file=terminal)
    assert off.disable is True and list(off) == [0, 1]
    off.set_postfix(loss="0.5")
    off.close()
    assert terminal.getvalue() == ""
