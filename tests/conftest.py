"""Fixtures shared by test modules."""

import signal

import pytest


@pytest.fixture
def restore_signals():
    """`pybench.cli.main.main` installs pybench's handlers in the calling process: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)
