"""Where the Flux backend's Julia lives, whether it is usable, and how a worker starts it.

The Julia environment is the repository's `Project.toml` (Flux, Metalhead, Zygote, Optimisers, CUDA,
cuDNN and PythonCall); `python -m pybench setup-julia` installs Julia if none is found and instantiates it
(writing the untracked `Manifest.toml`).  Nothing here starts Julia, except `setup_julia`.

Environment variables you may set:

- `PYTHON_JULIACALL_EXE` or `PYTHON_JULIAPKG_EXE`: the Julia executable to use.  Otherwise pybench
  takes `julia` on the PATH (juliaup's launcher included), then the newest Julia juliaup installed
  (`JULIAUP_DEPOT_PATH`, default `~/.julia`), then one that setup-julia installed under
  `pyjuliapkg/install` in the repository: the first whose `julia --version` is in Project.toml's
  `[compat] julia` range.  One outside it is refused with the fix: Julia 1.12 brings OpenSSL 3.5,
  which Project.toml's OpenSSL_jll bound excludes, so `Pkg.instantiate` could only fail.
- `JULIA_DEPOT_PATH`: where Julia keeps packages (default `~/.julia`), as Julia itself reads it.

Set by pybench for every Flux worker (`juliacall_env`):

- `PYTHON_JULIACALL_EXE` and `PYTHON_JULIACALL_PROJECT`: set together, they make juliacall start
  that Julia on this project directly, without juliapkg resolving (or downloading) anything.
- `PYTHON_JULIAPKG_PROJECT`, `PYTHON_JULIAPKG_OFFLINE=yes`, `JULIA_PKG_OFFLINE=true`: should
  juliapkg or Pkg be reached anyway, they use this project and download nothing mid-benchmark.
- `PYTHON_JULIACALL_THREADS=1`, `OPENBLAS_NUM_THREADS=N`: one Julia thread, and BLAS gets the N of
  `--threads` (`PyBench.configure` sets it again once Julia runs and says why: NNlib's convolutions
  would otherwise run N tasks of N BLAS threads each).
- `PYTHON_JULIACALL_HANDLE_SIGNALS=yes`: Julia handles its own signals (juliacall requires it with
  several threads), but for SIGTERM and SIGINT, which the worker takes back once Julia runs
  (`backend.default_signals`).
- `NVIDIA_TF32_OVERRIDE=0` on CUDA without `--tf32`: read when cuBLAS and cuDNN load, it keeps fp32
  at fp32 in both (CUDA.jl's default math mode lets cuDNN use TF32), as PyTorch's row is.
- `PYTHON_JULIACALL_STARTUP_FILE=no`: a personal startup.jl does not change the benchmark.
- `JULIA_CONDAPKG_BACKEND=Null`: PythonCall uses the worker's own Python, never a Conda one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pybench.backends.base import Availability
from pybench.backends.flux.julia_version import in_compat, julia_version, newest_channel, project_compat
from pybench.machine.lifetime import run_bounded

# The repository: pybench/backends/flux/ is three down.  A worker under another interpreter runs a
# staged copy of the package, away from it, so the orchestrator names it (juliacall_env).
ROOT_ENV = "PYBENCH_REPO_ROOT"
ROOT = Path(os.environ.get(ROOT_ENV) or Path(__file__).resolve().parents[3])
PROJECT = ROOT  # holds Project.toml (tracked) and Manifest.toml (written by setup-julia)
JULIA_DIR = ROOT / "julia"
JULIA_COMPAT = project_compat((PROJECT / "Project.toml").read_text(), "julia") or ""
SETUP_FIX = "python -m pybench setup-julia"
INSTALL_FIX = "pip install -e '.[flux]'"
# Packages the backend loads; each must be in the Manifest and present in a depot.
PACKAGES = ("Flux", "Metalhead", "Zygote", "Optimisers", "CUDA", "cuDNN", "PythonCall")


def _executable(path: str | None) -> str | None:
    if not path:
        return None
    found = shutil.which(path)
    return os.path.abspath(found) if found else None


def _juliapkg_install_dirs() -> list[Path]:
    """Where juliapkg installs Julia: <project>/pyjuliapkg/install, for our project and for
    juliapkg's default project (a virtual environment's julia_env)."""
    projects = [Path(os.environ["PYTHON_JULIAPKG_PROJECT"])] if os.environ.get("PYTHON_JULIAPKG_PROJECT") else []
    projects += [PROJECT, Path(sys.prefix) / "julia_env"]
    return [p / "pyjuliapkg" / "install" for p in dict.fromkeys(projects)]


def _juliaup_julias() -> list[str]:
    """The Julias juliaup installed (its juliaup.json), whichever is the default: `juliaup add 1.11`
    puts one there without making it the `julia` on the PATH."""
    folder = Path(os.environ.get("JULIAUP_DEPOT_PATH") or Path.home() / ".julia") / "juliaup"
    try:
        installed = json.loads((folder / "juliaup.json").read_text())["InstalledVersions"]
        paths = [info["Path"] for info in installed.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return [str(folder / p / "bin" / "julia") for p in paths if isinstance(p, str)]


def _candidates() -> list[str]:
    """Executables to consider, in order; a Julia the user named is the only candidate."""
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE"):
        exe = _executable(os.environ.get(var))
        if exe:
            return [exe]
    juliaup = sorted(_juliaup_julias(), key=lambda exe: julia_version(exe) or (0, 0, 0), reverse=True)
    found = [_executable(p) for p in ("julia", *juliaup, *(str(d / "bin" / "julia") for d in _juliapkg_install_dirs()))]
    return list(dict.fromkeys(exe for exe in found if exe))


def locate_julia() -> tuple[str | None, str]:
    """The Julia executable a worker would use, or None and why (one line with the fix): the first
    candidate whose version is in Project.toml's range.  Runs `julia --version`, nothing more."""
    refused = []
    for exe in _candidates():
        version = julia_version(exe)
        if version is not None and in_compat(version, JULIA_COMPAT):
            return exe, ""
        refused.append(f"{exe} is " + (f"Julia {'.'.join(map(str, version))}" if version
                                       else "no Julia that answers --version"))
    if not refused:
        return None, ("no Julia executable (PYTHON_JULIACALL_EXE, PYTHON_JULIAPKG_EXE, julia on PATH, juliaup, "
                      f"pyjuliapkg/install): {SETUP_FIX}")
    return None, (f"{'; '.join(refused)}, and the Flux environment needs Julia {JULIA_COMPAT} "
                  f"(Project.toml): juliaup add {newest_channel(JULIA_COMPAT)}, or {SETUP_FIX}")


def find_julia() -> str | None:
    """`locate_julia`'s executable."""
    return locate_julia()[0]


def depots() -> list[Path]:
    """Julia's depot path as Julia reads it (an empty entry means the default, ~/.julia)."""
    raw = os.environ.get("JULIA_DEPOT_PATH", "")
    entries = [e for e in raw.split(os.pathsep)] if raw else [""]
    default = Path.home() / ".julia"
    return list(dict.fromkeys(Path(e) if e else default for e in entries))


def pinned_pythoncall() -> str | None:
    """The exact PythonCall version Project.toml pins ('=0.9.37' -> '0.9.37')."""
    text = (PROJECT / "Project.toml").read_text()
    m = re.search(r'^PythonCall\s*=\s*"=\s*([0-9.]+)"', text, re.M)
    return m.group(1) if m else None


def manifest_packages() -> dict[str, str]:
    """Package name -> version from Manifest.toml (format 2), by a small parse: tomllib is not in
    Python 3.10."""
    text = (PROJECT / "Manifest.toml").read_text()
    out: dict[str, str] = {}
    for block in re.split(r"^\[\[deps\.", text, flags=re.M)[1:]:
        name = block.split("]]", 1)[0].strip().strip('"')
        m = re.search(r'^version\s*=\s*"([^"]+)"', block, re.M)
        out[name] = m.group(1) if m else ""
    return out


def openssl_too_new(manifest: dict[str, str], python_openssl: tuple[int, ...]) -> str | None:
    """Why the Manifest's OpenSSL_jll cannot share a process with Python's OpenSSL (newer major or
    minor, as juliapkg's "<=python" rule forbids), or None."""
    found = re.match(r"(\d+)\.(\d+)", manifest.get("OpenSSL_jll", ""))
    if found is None or tuple(map(int, found.groups())) <= tuple(python_openssl[:2]):
        return None
    return (f"Manifest.toml has OpenSSL_jll {manifest['OpenSSL_jll']}, newer than this Python's OpenSSL "
            f"{'.'.join(map(str, python_openssl[:3]))}: delete Manifest.toml and rerun {SETUP_FIX}")


def flux_availability() -> Availability:
    """Cheap check from the orchestrator: no Julia started, nothing downloaded."""
    if importlib.util.find_spec("juliacall") is None:
        return Availability(False, f"juliacall is not installed: {INSTALL_FIX}")
    pinned = pinned_pythoncall()
    installed = importlib.metadata.version("juliacall")
    if pinned and installed != pinned:
        return Availability(
            False, f"juliacall {installed} does not match PythonCall {pinned} in Project.toml: {INSTALL_FIX}"
        )
    exe, why_not = locate_julia()
    if exe is None:
        return Availability(False, why_not)
    if not (PROJECT / "Manifest.toml").is_file():
        return Availability(False, f"Julia packages not instantiated (no Manifest.toml): {SETUP_FIX}")
    manifest = manifest_packages()
    missing = [p for p in PACKAGES if p not in manifest]
    if missing:
        return Availability(False, f"Manifest.toml lacks {', '.join(missing)}: {SETUP_FIX}")
    if pinned and manifest["PythonCall"] != pinned:
        return Availability(
            False, f"Manifest.toml has PythonCall {manifest['PythonCall']}, not {pinned}: {SETUP_FIX}"
        )
    import ssl

    too_new = openssl_too_new(manifest, ssl.OPENSSL_VERSION_INFO)
    if too_new:
        return Availability(False, too_new)
    absent = [p for p in PACKAGES if not any((d / "packages" / p).is_dir() for d in depots())]
    if absent:
        return Availability(False, f"Julia packages missing from the depot ({', '.join(absent)}): {SETUP_FIX}")
    return Availability(True)


def juliacall_env(threads: int, cuda: bool = False, tf32: bool = False) -> dict[str, str]:
    """Environment variables a Flux worker needs, set before juliacall is imported."""
    env = {
        "PYTHON_JULIAPKG_PROJECT": str(PROJECT),
        "PYTHON_JULIAPKG_OFFLINE": "yes",
        "JULIA_PKG_OFFLINE": "true",
        "PYTHON_JULIACALL_THREADS": "1",
        "PYTHON_JULIACALL_HANDLE_SIGNALS": "yes",
        "PYTHON_JULIACALL_STARTUP_FILE": "no",
        "OPENBLAS_NUM_THREADS": str(threads),
        "JULIA_CONDAPKG_BACKEND": "Null",
        ROOT_ENV: str(ROOT),
    }
    if cuda and not tf32:
        env["NVIDIA_TF32_OVERRIDE"] = "0"
    exe = find_julia()
    if exe:  # juliacall accepts these two only together
        env.update(PYTHON_JULIACALL_EXE=exe, PYTHON_JULIACALL_PROJECT=str(PROJECT))
    return env


# setup-julia's steps, each bounded: a network that never answers is a clear line, not a hang.
NETWORK_STALL_S = 60  # a Python download that receives nothing for this long has failed
INSTALL_TIMEOUT_S = 20 * 60  # juliapkg: query the versions, download and unpack Julia
INSTANTIATE_TIMEOUT_S = 45 * 60  # Pkg: the registry and every package
PRECOMPILE_TIMEOUT_S = 90 * 60  # Flux and CUDA.jl (which may fetch CUDA's runtime libraries)
NETWORK_FIX = f"check the network or proxy (HTTPS_PROXY, JULIA_PKG_SERVER), then rerun {SETUP_FIX}"

# Julia through juliapkg (juliacall's installer), in a child so that it can be bounded: juliaup if
# present, else a download into the prefix.  Its progress goes to stderr; stdout carries the answer.
INSTALL_SCRIPT = """
import json, socket, sys
socket.setdefaulttimeout(float(sys.argv[3]))  # urllib waits forever by default
answer, sys.stdout = sys.stdout, sys.stderr
try:
    from juliapkg.compat import Compat
    from juliapkg.find_julia import find_julia
    exe, _ = find_julia(compat=Compat.parse(sys.argv[1]), prefix=sys.argv[2], install=True)
    print(json.dumps({"exe": exe}), file=answer)
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), file=answer)
"""

INSTANTIATE_SCRIPT = """
using Pkg
Pkg.instantiate()   # with no Manifest.toml yet, this resolves Project.toml and writes one
"""

CHECK_SCRIPT = """
using Pkg
Pkg.precompile()
include(joinpath(ARGS[1], "PyBench.jl"))
import CUDA
println("pybench: Flux ", pkgversion(PyBench.Flux), ", CUDA functional: ", CUDA.functional())
"""


def _install_julia() -> str | None:
    """Install Julia; its path, or None after saying in one line why not."""
    cmd = [sys.executable, "-c", INSTALL_SCRIPT, JULIA_COMPAT, str(_juliapkg_install_dirs()[0]),
           str(NETWORK_STALL_S)]
    try:
        done = run_bounded(cmd, INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           text=True)
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        reason = f"no Julia after {_duration(INSTALL_TIMEOUT_S)}"
    except (json.JSONDecodeError, IndexError):
        reason = f"the installer exited with code {done.returncode}"
    else:
        if "exe" in answer:
            return answer["exe"]
        reason = answer["error"]
    print(f"pybench: could not install Julia ({reason}): {NETWORK_FIX}", file=sys.stderr)
    return None


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:g} s"


def _julia_step(exe: str, script: str, timeout: float, what: str, env: dict[str, str]) -> bool:
    """Run one Julia script on the project; False after saying in one line why it failed."""
    cmd = [exe, f"--project={PROJECT}", "--startup-file=no", "-e", script, str(JULIA_DIR)]
    try:
        code = run_bounded(cmd, timeout, stdin=subprocess.DEVNULL, env=env).returncode
    except subprocess.TimeoutExpired:
        print(f"pybench: {what} took over {_duration(timeout)} and was stopped: {NETWORK_FIX}",
              file=sys.stderr)
        return False
    if code != 0:
        print(f"pybench: {what} failed (Julia exit code {code}; its messages are above)",
              file=sys.stderr)
    return code == 0


def setup_julia() -> int:
    """Prepare Julia and the Flux environment on a machine with network; an existing Julia is used.

    Returns a process exit code; progress goes to stdout/stderr.
    """
    if importlib.util.find_spec("juliacall") is None:
        print(f"pybench: juliacall is not installed: {INSTALL_FIX}", file=sys.stderr)
        return 1
    exe, why_not = locate_julia()
    if exe is None:
        print(f"pybench: {why_not}; installing Julia {JULIA_COMPAT} through juliapkg", flush=True)
        exe = _install_julia()
        if exe is None:
            return 1
    print(f"pybench: using Julia at {exe}; instantiating {PROJECT / 'Project.toml'}", flush=True)
    env = {
        **os.environ,
        # PythonCall must never set up a Conda Python; it is only ever loaded from this Python.
        "JULIA_PYTHONCALL_EXE": sys.executable,
        "JULIA_CONDAPKG_BACKEND": "Null",
    }
    env.pop("JULIA_PKG_OFFLINE", None)
    # Downloads alone first, so that a dead network is found within its own bound.
    if not _julia_step(exe, INSTANTIATE_SCRIPT, INSTANTIATE_TIMEOUT_S, "downloading Julia packages",
                       {**env, "JULIA_PKG_PRECOMPILE_AUTO": "0"}):
        return 1
    if not _julia_step(exe, CHECK_SCRIPT, PRECOMPILE_TIMEOUT_S, "precompiling Flux and CUDA.jl", env):
        return 1
    status = flux_availability()
    print("pybench: Flux is ready" if status.ok else f"pybench: still unavailable: {status.reason}")
    return 0 if status.ok else 1


def describe() -> dict:
    """What pybench would use, for `env`-style output; never starts Julia."""
    return {
        "julia": find_julia(),
        "project": str(PROJECT),
        "depots": [str(d) for d in depots()],
        "pythoncall_pin": pinned_pythoncall(),
    }


if __name__ == "__main__":  # python -m pybench.backends.flux.julia_env: print the availability check
    print(json.dumps({**describe(), "available": flux_availability().__dict__}, indent=2))
