"""Process lifetime: no signal to pybench leaves a worker behind or a results file half-written.

- `install_signal_handlers` turns SIGTERM and SIGHUP into a `Terminated` exception (and keeps SIGINT
  a KeyboardInterrupt), so the cleanup that Ctrl-C runs (killing the worker's process group) runs
  for them too.
- `signals_deferred` holds those exceptions back while a file is being replaced, so a signal never
  leaves a temp file holding the only copy of a finished cell; the matrix holds them from a worker's
  exit until its round is saved, and `interruptible` lets them through while the worker still runs.
- One signal is enough: once one has been raised, later ones are ignored, so the cleanup it started
  (killing the worker, saving, the "kept" line, exit 130) is never cut short by a repeated Ctrl-C.
- `die_with_parent` (in the child, before exec) and `watch_parent` (in the worker) make a worker die
  with the orchestrator even when that one is killed with SIGKILL and can clean up nothing.
- `run_bounded` runs a child under all of the above, with a time-out that kills its whole group.
- `scratch_dir` names a temporary folder with its owner's pid, so that the next start removes what
  a SIGKILLed run (which can clean up nothing) left behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_INTERVAL_S = 1.0
DRAIN_S = 2.0  # past its time-out, how long a child may take to hand over what it has written


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; like KeyboardInterrupt, a BaseException so that only cleanup
    code (`except BaseException`, `finally`) sees it on its way to the top level."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


_deferring = 0
_pending: int | None = None


def _exception(signum: int) -> BaseException:
    """The exception for a signal, raised now: from here on the handled signals are ignored, so the
    shutdown runs to its end.  SIG_IGN rather than a flag: at exit Python resets its own handlers
    to the default action, and a late Ctrl-C would then kill the process (exit -2, not 130)."""
    for sig in HANDLED:
        if signal.getsignal(sig) is _handler:
            signal.signal(sig, signal.SIG_IGN)
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _handler(signum: int, frame: object) -> None:
    global _pending
    if _deferring:
        _pending = _pending or signum  # the first one decides what is raised afterwards
        return
    raise _exception(signum)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP raise Terminated, SIGINT KeyboardInterrupt, each held back inside
    `signals_deferred`.  A signal that was ignored when we started (nohup, a background job)
    stays ignored.  Call once, from the main thread, at start."""
    for sig in HANDLED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _handler)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Run the block to its end even if a handled signal arrives; raise for it afterwards.

    Python runs signal handlers in the main thread between bytecodes, so the handler itself defers
    (blocking the signal with pthread_sigmask would not: the kernel would hand it to another thread,
    such as the progress bar's, and the main thread would still be interrupted mid-block).  Without
    `install_signal_handlers` this changes nothing.
    """
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            raise _exception(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside `signals_deferred`, a block that a signal must still cut short (waiting for a worker):
    one that arrived before the block is raised at its start, one during it at once."""
    global _deferring, _pending
    saved, _deferring = _deferring, 0
    try:
        if _pending is not None:
            signum, _pending = _pending, None
            raise _exception(signum)
        yield
    finally:
        _deferring = saved


def _hold(exc: BaseException) -> bool:
    """Inside `signals_deferred`, turn a signal's exception back into a pending signal, raised when
    the deferred block ends; False (nothing held) for any other exception or outside such a block."""
    global _pending
    if not _deferring or not isinstance(exc, (KeyboardInterrupt, Terminated)):
        return False
    _pending = _pending or (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)
    return True


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def die_with_parent(parent: int) -> None:
    """In a child between fork and exec (Popen's preexec_fn): have the kernel SIGKILL it when the
    thread that started it exits, and exit at once should `parent` already be gone.

    The setting survives exec.  It fires when the starting *thread* exits: fine for the runner,
    whose calling thread waits for the worker to end.  Only the ctypes call runs here, with libc
    loaded beforehand, as a child of a threaded parent must do little before exec.
    """
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def watch_parent(interval: float = WATCH_INTERVAL_S) -> None:
    """Start a daemon thread that SIGKILLs this process, with its process group when it leads one
    (a worker's own children), once its parent is gone.

    For where `die_with_parent` was not or could not be applied (no parent-death signal outside
    Linux, a worker started by hand).  Where it was, the kernel's SIGKILL comes first, so a child
    that the worker itself started must watch its own parent.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        else:  # not a group leader: the group is someone else's (a shell's pipeline)
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="pybench-watch-parent", daemon=True).start()


def run_bounded(cmd: list[str], timeout: float, input: str | bytes | None = None,
                **popen_kwargs: object) -> subprocess.CompletedProcess:
    """subprocess.run for a child that may hang or start children of its own: it runs in its own
    process group, dies with us, and on a time-out (TimeoutExpired, carrying what it printed) or
    any exception of ours (Ctrl-C, Terminated) its whole group is killed before we go on.  What it
    leaves running when it exits is killed too: nothing it started outlives the call.

    Called inside `signals_deferred`, a signal that comes once the child has already exited does
    not cost its result: the rest of its output is read and returned, and the signal stays pending
    until the caller's block (saving the result) ends."""
    proc = subprocess.Popen(cmd, start_new_session=True,
                            preexec_fn=partial(die_with_parent, os.getpid()), **popen_kwargs)
    try:
        with interruptible():
            out, err = _communicate(proc, input, timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
    except BaseException as exc:
        finished = proc.poll() is not None  # on its own: the worker is in a session of its own
        kill_group(proc)  # anything it left behind
        if not (finished and _hold(exc)):
            proc.wait()
            raise
        out, err = proc.communicate()  # the end of what it wrote; input went out before it exited
    kill_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _communicate(proc: subprocess.Popen, input: str | bytes | None, timeout: float) -> tuple:
    """proc.communicate, where the time-out counts only against a child still at work.  We may have
    been stopped (SIGSTOP, a suspended machine) for longer than the time-out while the child
    finished: its answer is then waiting in the pipe, and the clock says nothing about a hang."""
    try:
        return proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:  # a child blocked on a full pipe finishes once read
        return proc.communicate(timeout=DRAIN_S)
    except subprocess.TimeoutExpired:
        if proc.poll() is None:
            raise
    kill_group(proc)  # it exited: what still holds its pipes open is a child of its own
    return proc.communicate()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a child started with start_new_session=True, and every process in its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(prefix: str, folder: Path | None = None) -> list[Path]:
    """Remove the folders `prefix`-<pid>-* in the temp folder whose pid is no longer running and
    that are ours (not a link, owned by this user); return them."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{prefix}-*"):
        found = re.fullmatch(rf"{re.escape(prefix)}-([0-9]+)-.*", path.name)
        try:
            if not found or not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        if not _alive(int(found.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder for this process's lifetime, named `prefix`-<pid>-...; stale ones of dead
    processes are removed first."""
    remove_stale(prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-{os.getpid()}-") as path:
        yield Path(path)
