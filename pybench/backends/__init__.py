"""The frameworks pybench can drive, each described by its own subpackage without importing it."""

from __future__ import annotations

from pybench.backends import flux, jax, pytorch
from pybench.backends.base import Framework
from pybench.errors import UserError

# Table order: PyTorch first, as the seed lists it; ratios are taken against the first.
FRAMEWORKS: dict[str, Framework] = {fw.name: fw for fw in (pytorch.FRAMEWORK, jax.FRAMEWORK, flux.FRAMEWORK)}


def get_framework(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise UserError(f"unknown framework {name!r}; valid: {', '.join(FRAMEWORKS)}, all") from None


def resolve_frameworks(names: list[str] | None) -> list[Framework]:
    if not names or "all" in names:
        return list(FRAMEWORKS.values())
    return [get_framework(n) for n in dict.fromkeys(names)]
