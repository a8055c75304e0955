"""Progress bars: frequent on a terminal, sparse in a log file, and never glued to what follows."""

import io

import pytest

from ulmfit import progress
from ulmfit.api import pretrain
from ulmfit.io import TrainingInterrupted
from ulmfit.train.loop import LMTrainConfig, LMTrainer


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_is_redrawn_every_second_on_a_terminal_and_every_30_seconds_in_a_log():
    assert progress.progress_bar(total=3, file=_Terminal()).mininterval == progress.TERMINAL_INTERVAL_S == 1.0
    assert progress.progress_bar(total=3, file=io.StringIO()).mininterval == progress.LOG_INTERVAL_S == 30.0
    assert progress.progress_bar(total=3, file=io.StringIO(), mininterval=0.5).mininterval == 0.5  # the caller's
    # nor sooner through tqdm's monitor thread, which forces a redraw after maxinterval (10 s by default)
    assert progress.progress_bar(total=3, file=io.StringIO()).maxinterval == 30.0
    assert progress.progress_bar(total=3, file=_Terminal()).maxinterval == 10.0


def test_a_bar_that_erases_itself_on_a_terminal_ends_its_line_in_a_log():
    for file, ends in ((_Terminal(), "\r"), (io.StringIO(), "\n")):
        bar = progress.progress_bar(total=3, file=file, leave=False)
        bar.update(3)
        bar.close()
        assert file.getvalue().endswith(ends), repr(file.getvalue()[-100:])
    assert "3/3" in file.getvalue().split("\r")[-1]  # the log keeps the total


def test_training_into_a_log_redraws_its_bar_a_few_times_not_at_every_postfix(tmp_path, corpus, capsys):
    # set_postfix used to force a redraw every 10 batches, past the interval: a log line per second
    import time

    cfg = LMTrainConfig(epochs=1, bs=4, bptt=8, lr=1e-2, lr_div=1.0, save_every_minutes=1e9)
    start = time.monotonic()
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg, progress=True, n_workers=1)
    took = time.monotonic() - start
    err = capsys.readouterr().err  # not a terminal: the bars' interval is 30 s
    line = next(l for l in err.split("\n") if "epoch 1/1" in l)  # a redraw starts with \r, on the same line
    # drawn at the start and at the end, and once per 30 s on a machine slow enough to take that long
    assert "batch" in line and line.count("\r") <= 3 + int(took // 30), (took, line[:2000])


def test_an_interrupted_bar_ends_its_line_before_the_message(tmp_path, corpus, monkeypatch, capsys):
    cfg = LMTrainConfig(epochs=2, bs=4, bptt=8, lr=1e-2, lr_div=1.0, save_every_minutes=1e9)
    real = LMTrainer.set_lrs

    def set_lrs(self, *a):
        if self.step == 5:
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(LMTrainer, "set_lrs", set_lrs)
    with pytest.raises(TrainingInterrupted) as stopped:
        pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg, progress=True, n_workers=1)
    # what the command line sees when it prints the message: the trainer's frame (and its bar) still
    # alive in the traceback, so the bar must have ended its own line
    err = capsys.readouterr().err
    assert stopped.value.__traceback__ is not None
    assert err.endswith("\n") and "epoch 1/2" in err.split("\n")[-2], err[-500:]
