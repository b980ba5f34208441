"""How a worker's C allocator treats freed memory: a fact of the cell (`CellSpec.malloc`), applied
through the worker's environment before anything loads.

glibc gives a large freed block (above its mmap threshold, or any block of a thread's own arena that
cannot grow) back to the kernel at once, so the next call's block of the same size is faulted in and
zeroed page by page again.  XLA takes each execution's temporary buffer that way, and PyTorch its
large gradients: on the CPU those faults are a large, erratic part of an iteration, and they depend on
what the process freed before rather than on the framework (docs/protocol.md, "Host memory").

- "keep": one arena, no mmap for large blocks and no trimming, so a process keeps the
  memory it once used and later iterations reuse it, as the allocators that CPU tuning guides
  recommend (jemalloc, tcmalloc) do;
- "system" (the default): glibc's own defaults, what a script run without settings gets; "keep"
  moves the answer and leaves rarer, larger stalls (docs/protocol.md says why it is not the default).
Elsewhere than glibc the variable is ignored and both read the same; the record keeps what was set.
"""

from __future__ import annotations

import os
import platform
from typing import Mapping

from pybench.errors import UserError

MALLOC = ("keep", "system")
DEFAULT_MALLOC = "system"
OLD_RECORDS_MALLOC = "system"  # what records written before the setting existed measured
TUNABLES = "GLIBC_TUNABLES"
# Each large block from the main heap (arena_max=1: threads' arenas cannot hold blocks over their
# 64 MiB heaps and would fall back to mmap), never mmapped, and the heap's top never trimmed.
KEEP = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776"


def check_malloc(policy: str, where: str = "malloc") -> None:
    """A policy `MALLOC` names, or one UserError line naming `where`."""
    if policy not in MALLOC:
        raise UserError(f"{where}: unknown allocator setting {policy!r}; valid: {', '.join(MALLOC)}")


def malloc_env(policy: str, environ: Mapping[str, str]) -> dict[str, str]:
    """What a worker's environment sets for `policy`: "keep" puts KEEP before the user's own tunables
    (glibc reads them in order, so a tunable the user set still wins); "system" sets nothing."""
    check_malloc(policy)
    if policy == "system":
        return {}
    own = environ.get(TUNABLES, "")
    return {TUNABLES: f"{KEEP}:{own}" if own else KEEP}


def allocator_facts() -> dict[str, str | None]:
    """What this process's allocator runs with, for its record: the C library and the tunables set."""
    libc, version = platform.libc_ver()
    return {"libc": f"{libc} {version}".strip() or None, "tunables": os.environ.get(TUNABLES)}
