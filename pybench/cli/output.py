"""Standard output and error as a CI meets them: closed, a pipe whose reader left, a full disk, an
encoding that cannot hold a table's characters.

- A stream closed before we start (`>&-`) gets /dev/null in its place, so no file opened later
  takes its descriptor and receives what was meant for the terminal; the command runs as usual.
- A reader that goes away (`| head`, EPIPE) is what Unix tools ignore: the rest of the output is
  dropped and the command ends with its own exit code.
- A write that fails otherwise (`> /dev/full`, an encoding such as PYTHONIOENCODING=ascii) is a
  UserError: one line on stderr, exit 2, after whatever the command had already saved.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

from pybench.errors import UserError
from pybench.text import terminal_text


class _GuardedStdout(io.TextIOBase):
    """sys.stdout with its faults turned into the behaviour above."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def _guard(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except UnicodeEncodeError as exc:  # nothing went out: the stream itself is fine
            raise UserError(f"standard output ({exc.encoding}) cannot encode {exc.object[exc.start:exc.end]!r}: "
                            "set PYTHONIOENCODING=utf-8") from None
        except OSError as exc:
            self._discard()
            if exc.errno == errno.EPIPE:
                return len(args[0]) if args else None
            raise UserError(f"cannot write to standard output: {exc.strerror or exc}") from None

    def _discard(self) -> None:
        """Send the rest, and what the buffer still holds, to /dev/null: the flush at exit cannot
        fail again."""
        try:
            _to_null(self._stream.fileno())
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


def _to_null(fd: int) -> None:
    """Point `fd` at /dev/null."""
    null = os.open(os.devnull, os.O_WRONLY)  # a closed `fd` is the lowest free one: it may be this
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def plug_closed() -> None:
    """Give a closed stdout or stderr /dev/null in its place; call before anything asks the streams."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            _to_null(fd)
            setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115 - lives as long as we do


@contextmanager
def guarded() -> Iterator[None]:
    """Run a command with stdout guarded, and flushed before it ends, so that a fault even in the
    last line is still one line and exit 2; the stream is given back afterwards."""
    plug_closed()
    stream = sys.stdout
    sys.stdout = _GuardedStdout(stream)
    try:
        yield
        sys.stdout.flush()
    finally:
        sys.stdout = stream


def error_line(exc: BaseException) -> str:
    """A UserError as printed: one line, with no escape sequence from the file or program it quotes."""
    return f"pybench: error: {terminal_text(exc)}"
