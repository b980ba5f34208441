"""Which Julia versions the Flux environment accepts, and which version a Julia executable is.

The range is Project.toml's `[compat] julia`, read as Pkg reads version specifiers; the version is
what `julia --version` prints (Julia answers it while parsing its options, before its runtime
starts), as juliapkg's `find_julia` asks it.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess

from pybench.machine.lifetime import run_bounded

VERSION_TIMEOUT_S = 30.0  # juliaup's launcher resolves its channel before Julia answers

Version = tuple[int, int, int]


def project_compat(project_toml: str, name: str) -> str | None:
    """The `[compat]` entry for `name` in the text of a Project.toml, or None."""
    section = re.search(r"^\[compat\][ \t]*$(.*?)(?=^\[|\Z)", project_toml, re.M | re.S)
    found = section and re.search(rf'^{re.escape(name)}\s*=\s*"([^"]*)"', section.group(1), re.M)
    return found.group(1) if found else None


def _parts(text: str) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+(\.\d+){0,2}", text):
        raise ValueError(f"not a Pkg version bound: {text!r}")
    return tuple(int(p) for p in text.split("."))


def _pad(parts: tuple[int, ...]) -> Version:
    return (*parts, 0, 0)[:3]  # type: ignore[return-value]


def in_compat(version: Version, spec: str) -> bool:
    """Whether `version` satisfies a Pkg compat specifier: entries joined by commas, each a hyphen
    range ("1.10.3 - 1.11": 1.10.3 up to every 1.11.x) or a caret one ("1.10" or "^1.10": up to,
    not including, a change of the first nonzero part)."""
    for entry in (e.strip() for e in spec.split(",")):
        if " - " in entry:
            low, high = (_parts(p.strip()) for p in entry.split(" - "))
            upper = (*high[:-1], high[-1] + 1)  # the last part given bounds it: 1.11 -> below 1.12
        else:
            low = _parts(entry.removeprefix("^"))
            fixed = next((i for i, p in enumerate(low) if p), len(low) - 1)
            upper = (*low[:fixed], low[fixed] + 1)
        if _pad(low) <= version < _pad(upper):
            return True
    return False


def newest_channel(spec: str) -> str:
    """The juliaup channel of the newest Julia a specifier allows ("1.10.3 - 1.11" -> "1.11")."""
    return spec.split(",")[-1].split(" - ")[-1].strip().removeprefix("^")


def julia_version(exe: str) -> Version | None:
    """The version `exe --version` reports, or None when it is no Julia that answers it."""
    try:
        stat = os.stat(exe)
    except OSError:
        return None
    return _asked(exe, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=None)
def _asked(exe: str, mtime_ns: int, size: int) -> Version | None:
    """Once per executable as it is on disk: availability is checked for every cell."""
    try:
        done = run_bounded([exe, "--version"], VERSION_TIMEOUT_S, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.fullmatch(r"julia version (\d+)\.(\d+)\.(\d+)\S*", done.stdout.strip())
    return tuple(int(g) for g in found.groups()) if done.returncode == 0 and found else None  # type: ignore[return-value]
