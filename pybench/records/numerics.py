"""What a framework actually computed with (`Numerics`, read from the framework in the worker) and
whether its outputs agree with PyTorch's on the same weights (`Parity`): the facts behind a ratio.
Each type owns its JSON and checks every field it reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pybench.records.shape import field_of, number_in

MAX_THREADS = 1 << 20


@dataclass(frozen=True)
class Numerics:
    """One worker's numeric settings, as the framework reports them (not as the options asked)."""

    dtype: str  # what convolutions and matrix products compute in: "float32", "bfloat16 (autocast)"
    tf32: bool  # fp32 matrix products and convolutions may round through TF32 (False on a CPU)
    matmul_precision: str  # the framework's own precision setting, in its own words
    autotuned: bool  # convolution algorithms chosen by timing them (cudnn.benchmark, XLA autotuning)
    autotune: str  # how: "cudnn.benchmark", "XLA autotune level 4", "none (CPU)"
    cuda_graphs: bool  # launches replayed from a captured graph
    compile: str  # "eager", "torch.compile (default)", "XLA jit", "Julia JIT"
    preallocate: str  # device memory policy: "caching allocator", "no preallocation", ...
    threads: int  # intra-op threads the framework uses
    layout: str  # activations' memory layout: "NCHW", "NHWC", "channels_last", "WHCN"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Numerics":
        kinds = {"tf32": bool, "autotuned": bool, "cuda_graphs": bool, "threads": int}
        values = {f.name: field_of(data, f.name, kinds.get(f.name, str), where) for f in fields(cls)}
        values["threads"] = int(number_in(values["threads"], 0, MAX_THREADS, f"{where}.threads", integer=True))
        return cls(**values)


# The settings whose difference alone changes speed, with how a reader should read it.
SPEED_SETTINGS = {
    "dtype": "compute dtype",
    "tf32": "TF32",
    "autotuned": "autotuning",
    "cuda_graphs": "CUDA graphs",
}


def speed_differences(a: Numerics, b: Numerics, cpu: bool) -> list[str]:
    """What differs between two sides in a way that changes speed: 'TF32 on one side only'."""
    out = []
    for name, title in SPEED_SETTINGS.items():
        x, y = getattr(a, name), getattr(b, name)
        if x != y:
            out.append(f"{title} on one side only" if isinstance(x, bool) else f"{title} {x} vs {y}")
    if cpu and a.threads != b.threads:  # on a GPU the host threads only launch kernels
        out.append(f"threads {a.threads} vs {b.threads}")
    return out


@dataclass(frozen=True)
class Parity:
    """The weight-transfer check of one framework against PyTorch for one model: same weights, same
    input, eval mode; `max_rel_diff` is max |other - torch| / max |torch|."""

    ok: bool
    max_rel_diff: float | None  # None: the check could not run (`reason` says why)
    tolerance: float
    reason: str = ""
    cached: bool = False  # not stored: whether this answer came from the cache

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "max_rel_diff": self.max_rel_diff, "tolerance": self.tolerance,
                "reason": self.reason}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Parity":
        diff = field_of(data, "max_rel_diff", (int, float), where, optional=True)
        return cls(ok=field_of(data, "ok", bool, where),
                   max_rel_diff=None if diff is None else float(number_in(diff, 0, 1e300, f"{where}.max_rel_diff")),
                   tolerance=float(number_in(field_of(data, "tolerance", (int, float), where), 0, 1,
                                             f"{where}.tolerance")),
                   reason=field_of(data, "reason", str, where))

    @property
    def checked(self) -> bool:
        return self.max_rel_diff is not None

    def text(self) -> str:
        """'parity: outputs agree to 3e-6', 'parity: outputs DIFFER by 0.41', or why not checked."""
        if not self.checked:
            return f"parity: not checked ({self.reason})"
        if self.ok:  # a tiny relative difference reads best as a power of ten: '3e-6'
            mantissa, exponent = f"{self.max_rel_diff:.0e}".split("e")
            return f"parity: outputs agree to {mantissa}e{int(exponent)}"
        return f"parity: outputs DIFFER by {self.max_rel_diff:.2g} (tolerance {self.tolerance:g})"

