"""Building the hand-written BPTT's C++ extensions (the additive-filter RNN's,
:mod:`signalprop.nn.filter_bptt_native`, and LEM's, :mod:`signalprop.nn.lem_bptt_native`) and
choosing which of their time loops run.

Each extension is compiled on first use by ``torch.utils.cpp_extension.load_inline`` (the
system C++ compiler and ninja) into torch's extension cache. A build for the building CPU's
instructions (``-march=native``) is cached under a name tagged by :func:`cpu_tag`, so a cache
shared between machines never hands it to another kind of CPU; if the compiler refuses the
flags the build is retried with ``-O2``, and if that fails too the Python loops run (one
warning). ``SIGNALPROP_NATIVE_BPTT=0`` skips the extensions; ``SIGNALPROP_FUSED_BPTT=1``/``0``
forces the fused kernels on or off (:func:`choose_loops`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

ENV = "SIGNALPROP_NATIVE_BPTT"
FUSED_ENV = "SIGNALPROP_FUSED_BPTT"
#: Flags of the fused kernels' build (vector instructions of the building machine); on a
#: compiler that refuses them the extension is built with the default ``-O2`` instead.
FAST_CFLAGS = ("-O3", "-march=native")

_state: dict[str, ModuleType | None] = {}


def enabled() -> bool:
    """Whether the native loops may be used (``SIGNALPROP_NATIVE_BPTT`` is not ``0``)."""
    return os.environ.get(ENV, "1") != "0"


def _fused_fits(tensors: tuple[Tensor | None, ...]) -> bool:
    """Plain (not functorch-wrapped) CPU tensors of one floating dtype the kernels handle."""
    present = [t for t in tensors if t is not None and t.is_floating_point()]
    dtypes = {t.dtype for t in present}
    return (len(dtypes) == 1 and dtypes <= {torch.float32, torch.float64}
            and all(t.device.type == "cpu" for t in present)
            and not any(torch._C._functorch.is_functorch_wrapped_tensor(t) for t in present))


def choose_loops(native: ModuleType | None, hidden: int, max_hidden: int,
                 tensors: tuple[Tensor | None, ...]) -> str:
    """Which time loops of the extension ``native`` (one with ``fused_available()``) run:
    ``"python"`` without it, ``"fused"`` for plain CPU float32/float64 ``tensors`` when
    ``SIGNALPROP_FUSED_BPTT`` is ``1``, or is unset and ``hidden <= max_hidden``, else
    ``"aten"``."""
    if native is None:
        return "python"
    mode = os.environ.get(FUSED_ENV, "auto")
    if mode == "0" or not _fused_fits(tensors) or not native.fused_available():
        return "aten"
    return "fused" if mode == "1" or hidden <= max_hidden else "aten"


def load_native(name: str, source: str, functions: tuple[str, ...], what: str,
                cflags: tuple[str, ...] = ()) -> ModuleType | None:
    """The extension ``name`` built from C++ ``source`` (cached per process and in torch's
    extension cache); None with ``SIGNALPROP_NATIVE_BPTT=0``, while ``torch.compile`` traces,
    or where the build fails (then once a warning naming ``what``). ``cflags`` replace the
    default ``-O2``; if the build with them fails it is retried with ``-O2``. Shared by every
    hand-written BPTT with C++ time loops."""
    if not enabled() or torch.compiler.is_compiling():
        return None
    if name not in _state:
        _state[name] = _build(name, source, functions, what, cflags)
    return _state[name]


def _ninja_on_path() -> None:
    """torch runs ``ninja`` from PATH; a venv not activated has the pip one off it."""
    if shutil.which("ninja") is None:
        try:
            import ninja
        except ImportError:
            return
        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def cpu_tag() -> str:
    """A short hash of this CPU's model and instruction-set flags (Linux ``/proc/cpuinfo``;
    elsewhere ``platform.processor()``): a ``-march=native`` build in an extension cache shared
    between machines (a network home directory) is reused only on the same kind of CPU."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        key = "\n".join(dict.fromkeys(
            line for line in lines
            if line.startswith(("model name", "flags", "Features", "CPU part"))))
    except OSError:
        key = ""
    key = key or f"{platform.processor()} {platform.machine()}"
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def build_name(name: str, flags: list[str]) -> str:
    """The cache name of ``name`` built with ``flags``: tagged by :func:`cpu_tag` where the
    flags target the building CPU."""
    return f"{name}_{cpu_tag()}" if "-march=native" in flags else name


def _build(name: str, source: str, functions: tuple[str, ...], what: str,
           cflags: tuple[str, ...] = ()) -> ModuleType | None:
    attempts = [list(cflags), ["-O2"]] if cflags else [["-O2"]]
    error: Exception | None = None
    for flags in attempts:
        try:
            from torch.utils.cpp_extension import load_inline

            _ninja_on_path()

            return load_inline(name=build_name(name, flags), cpp_sources=source,
                               functions=list(functions), extra_cflags=flags, verbose=False)
        except Exception as exc:  # noqa: BLE001 - any build failure falls back to Python
            error = exc
    warnings.warn(f"{what} could not be built ({error!s:.200}); using the Python loops "
                  f"(set {ENV}=0 to skip the attempt)", RuntimeWarning, stacklevel=4)
    return None
