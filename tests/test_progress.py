"""The progress-bar policy: shown by default, hidden by progress=False or $TQDM_DISABLE."""

from helpers.base.progress import enabled, progress_bar


def test_bar_is_disabled_by_argument_or_environment(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert enabled() and not enabled(False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not enabled(True)
    assert list(progress_bar(range(3), desc="x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # nothing printed while disabled
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert enabled(True)
