"""Variants: named setups measured side by side in the same rounds, so their ratio is paired.

A variant is a framework plus settings, optionally under another Python interpreter, written the way
a person types it and printed back the same way:

    eager=pytorch
    cl=pytorch,channels_last
    fast=pytorch,bf16,compile=max-autotune,threads=1
    faults=jax,malloc=system
    new=pytorch@/opt/venv-new/bin/python

Settings a variant leaves out come from the command line (`--dtype`, `--threads`, ...); flags turn a
setting on.  Presets name the common questions (`--variants settings`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Callable

from pybench.backends import FRAMEWORKS, get_framework
from pybench.errors import UserError
from pybench.machine.malloc import check_malloc
from pybench.records.spec import DTYPES, CellSpec

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}")
FLAGS = ("tf32", "channels_last", "compile")
SYNTAX = "NAME=FRAMEWORK[,SETTING...][@PYTHON]"


@dataclass(frozen=True)
class Variant:
    name: str
    framework: str
    dtype: str | None = None  # None: the command line's --dtype
    # Flags: None takes the command line's; False (a preset's eager variant) measures without, and
    # the command line asking for it is refused rather than quietly turning an A/B into an A/A.
    tf32: bool | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    compile_mode: str = ""  # '' the compiler's default mode
    threads: int | None = None  # None: the command line's --threads
    interpreter: str = ""  # absolute path of another Python; '' the one pybench runs in
    malloc: str | None = None  # None: the command line's --malloc

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise UserError(f"variant name {self.name!r}: 1 to 32 letters, digits or _.+- (not first)")
        get_framework(self.framework)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UserError(f"variant {self.name}: unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.threads is not None and self.threads <= 0:
            raise UserError(f"variant {self.name}: threads must be positive, got {self.threads}")
        if self.compile_mode and not self.compile:
            raise UserError(f"variant {self.name}: a compile mode needs compile")
        if self.interpreter and not os.path.isabs(self.interpreter):
            raise UserError(f"variant {self.name}: the interpreter must be an absolute path")
        if self.malloc is not None:
            check_malloc(self.malloc, f"variant {self.name}")

    def __str__(self) -> str:
        parts = [self.framework] + ([self.dtype] if self.dtype else [])
        parts += [f for f in FLAGS if getattr(self, f)]
        if self.compile_mode:
            parts[parts.index("compile")] = f"compile={self.compile_mode}"
        parts += [f"threads={self.threads}"] if self.threads is not None else []
        parts += [f"malloc={self.malloc}"] if self.malloc is not None else []
        return f"{self.name}={','.join(parts)}" + (f"@{self.interpreter}" if self.interpreter else "")

    def apply(self, spec: CellSpec) -> CellSpec:
        """The cell `spec` (built from the command line for this variant's framework) as this
        variant measures it."""
        return replace(
            spec, variant_name=self.name, named_variant=True, framework=self.framework, dtype=self.dtype or spec.dtype,
            tf32=self._flag("tf32", spec.tf32), channels_last=self._flag("channels_last", spec.channels_last),
            compile=self._flag("compile", spec.compile), compile_mode=self.compile_mode,
            threads=self.threads or spec.threads, interpreter=self.interpreter, malloc=self.malloc or spec.malloc,
        )

    def _flag(self, name: str, given: bool) -> bool:
        """The flag as measured: this variant's own, else the command line's (`given`)."""
        if getattr(self, name) is False and given:
            option = name.replace("_", "-")
            raise UserError(f"variant {self.name} measures without {option}, as its preset compares it: "
                            f"drop --{option}")
        return given or bool(getattr(self, name))


def parse_variant(text: str) -> Variant:
    """`NAME=FRAMEWORK[,SETTING...][@PYTHON]`; settings: fp32|bf16|fp16 (or dtype=...), tf32,
    channels_last, compile or compile=MODE, threads=N, malloc=keep|system.  Every mistake is one UserError line."""
    name, eq, rest = text.partition("=")
    if not eq or not rest:
        raise UserError(f"--variant {text!r}: expected {SYNTAX}, e.g. cl=pytorch,channels_last")
    body, at, interpreter = rest.partition("@")
    if at and not interpreter:
        raise UserError(f"--variant {text!r}: a Python interpreter's path must follow '@'")
    framework, *settings = body.split(",")
    kwargs: dict = {}
    for setting in settings:
        key, eq, value = setting.partition("=")
        key = key.replace("-", "_")
        if not eq and key in DTYPES:
            key, value = "dtype", key
        if key in kwargs:
            raise UserError(f"--variant {text!r}: {key} is set twice")
        if key in FLAGS and not eq:
            kwargs[key] = True
        elif key == "compile" and value:
            kwargs.update(compile=True, compile_mode=value)
        elif key == "dtype" and value:
            kwargs[key] = value
        elif key == "threads" and value.isdigit():
            kwargs[key] = int(value)
        elif key == "malloc" and value:
            kwargs[key] = value
        else:
            raise UserError(f"--variant {text!r}: unknown setting {setting!r}; valid: fp32, bf16, fp16, "
                            "tf32, channels_last, compile, compile=MODE, threads=N, malloc=keep|system")
    if interpreter:
        kwargs["interpreter"] = os.path.abspath(os.path.expanduser(interpreter))
    return Variant(name, framework, **kwargs)


@dataclass(frozen=True)
class Preset:
    question: str
    variants: Callable[[str], list[Variant]]  # framework name -> the variants to compare


PRESETS: dict[str, Preset] = {
    "settings": Preset(
        "eager against channels-last, compiled and bf16 (ratios against eager fp32)",
        lambda fw: [Variant("eager", fw, dtype="fp32", channels_last=False, compile=False),
                    Variant("channels_last", fw, dtype="fp32", channels_last=True, compile=False),
                    Variant("compile", fw, dtype="fp32", channels_last=False, compile=True),
                    Variant("bf16", fw, dtype="bf16", channels_last=False, compile=False)]),
    "aa": Preset(
        "the same setup twice, the A/A control: its ratio's interval should contain 1",
        lambda fw: [Variant("a", fw), Variant("b", fw)]),
}


def preset_variants(name: str, framework: str, reason: Callable[[Variant], str | None],
                    refused: Callable[[str], None]) -> list[Variant]:
    """The preset's variants of `framework` that can run here; `reason` says why one cannot (None:
    it can) and each refusal is reported through `refused`.  Fewer than two left is a UserError."""
    preset = PRESETS[name]
    kept = []
    for variant in preset.variants(framework):
        why = reason(variant)
        if why:
            refused(f"--variants {name}: {variant.name} left out: {why}")
        else:
            kept.append(variant)
    if len(kept) < 2:
        raise UserError(f"--variants {name} ({preset.question}) leaves fewer than two variants of "
                        f"{FRAMEWORKS[framework].title} that run here")
    return kept


def check_names(variants: list[Variant]) -> None:
    """Names label rows and ratios: two variants may be the same setup (A/A), never the same name."""
    seen: set[str] = set()
    for v in variants:
        if v.name in seen:
            raise UserError(f"two variants are named {v.name!r}: names label the rows, give each its own")
        seen.add(v.name)
