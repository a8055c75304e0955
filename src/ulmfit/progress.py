"""Progress bars: tqdm, redrawn at most every second on a terminal and every 30 seconds in a log.

A bar writes its whole line again at each redraw. On a terminal that is what one wants; where
standard error is a file or a pipe (CI logs, `nohup`, `2> log`) the redraws pile up on one line
(a bar redrawn each second is 100 KB an hour), so there a bar is redrawn twice a minute: the log
still shows where a long run is and how fast it goes. ``mininterval`` given by a caller wins.
A bar that erases itself when done (``leave=False``) cannot erase anything in a log, where it left
a carriage return and a line of spaces; there it ends its line instead, and the log keeps its total.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from .io import TerminalText

TERMINAL_INTERVAL_S = 1.0
LOG_INTERVAL_S = 30.0


def _interactive(file) -> bool:
    if "ipykernel" in sys.modules:  # a notebook: tqdm.auto draws a widget, not lines of text
        return True
    try:
        return bool((file or sys.stderr).isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def progress_bar(*args, **kwargs) -> tqdm:
    """tqdm(*args, **kwargs) with a redraw interval that suits where the bar is written."""
    # on a terminal the command line escapes control characters on stderr (io.TerminalText); a bar
    # draws with carriage returns, so it writes to the terminal itself
    kwargs.setdefault("file", sys.stderr.wrapped if isinstance(sys.stderr, TerminalText) else sys.stderr)
    interactive = _interactive(kwargs.get("file"))
    kwargs.setdefault("mininterval", TERMINAL_INTERVAL_S if interactive else LOG_INTERVAL_S)
    # tqdm's monitor thread forces a redraw after maxinterval (10 s) without one: not sooner than asked
    kwargs.setdefault("maxinterval", max(10.0, kwargs["mininterval"]))
    if not interactive:
        kwargs["leave"] = True
    return tqdm(*args, **kwargs)
