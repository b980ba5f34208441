"""Fixtures shared by test modules."""

import signal
import sys

import pytest

from pybench.machine import devices

from fakes import FakeNVML


@pytest.fixture
def restore_signals():
    """`pybench.cli.main.main` installs pybench's handlers in the calling process: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture
def nvml(monkeypatch):
    """Install a fake pynvml over `devices`; CUDA variables unset, torch a CUDA build."""

    def install(devices: list[dict], fail: tuple[str, ...] = ()) -> FakeNVML:
        fake = FakeNVML(devices, fail)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setattr(devices, "torch_cuda_version", lambda: "12.8")
    return install
