"""Loading the compiled CPU backend with roicore's OpenMP defaults.

An OpenMP runtime reads its settings once, when it is loaded.  By default
GNU libgomp lets every idle worker thread *spin* for a while (about 300,000
polls) after each parallel region.  On a machine where another process (or
another thread pool in the same process, e.g. PyTorch's) keeps a core busy,
roicore's next parallel region then waits for a worker that is queued behind
that load: measured on a 2-vCPU AMD EPYC, a 0.3 ms RoI Pool call took 17 ms
with one core busy (``benchmarks/loaded_latency.py``).  With a *passive*
wait policy an idle worker sleeps at once and the same call stays at
0.3 ms.

So :func:`load_extension` imports :mod:`roicore._cpu` with
``OMP_WAIT_POLICY=passive`` in the environment **unless** the user set
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (theirs wins), then restores the
environment, so that OpenMP runtimes loaded later (PyTorch's bundled
libgomp, scikit-learn's) see the user's own settings.  If the process had
already loaded the same OpenMP runtime before roicore (e.g. another
extension linked to the system ``libgomp.so.1``), its settings are fixed
and roicore cannot change them; :data:`WAIT_POLICY` says which case applies
(``python -m roicore info`` prints it).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

#: Human-readable description of the wait policy of roicore's OpenMP runtime,
#: set by :func:`load_extension`.
WAIT_POLICY = "unknown (roicore._cpu not loaded yet)"

_USER_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _libgomp_loaded() -> bool | None:
    """Is a ``libgomp.so.1`` already mapped into this process?  (None: cannot tell.)"""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any("/libgomp.so.1" in line for line in f)
    except OSError:
        return None


def load_extension() -> ModuleType:
    """Import and return :mod:`roicore._cpu` under roicore's OpenMP defaults
    (see the module docstring); raises the extension's ImportError unchanged."""
    global WAIT_POLICY
    if "roicore._cpu" in sys.modules:
        return sys.modules["roicore._cpu"]
    user = {v: os.environ[v] for v in _USER_VARS if v in os.environ}
    if user:
        WAIT_POLICY = ", ".join(f"{k}={v}" for k, v in user.items()) + " (set by the user)"
        from .. import _cpu

        return _cpu
    preloaded = _libgomp_loaded()
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        from .. import _cpu
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    if preloaded:
        WAIT_POLICY = ("OpenMP default (libgomp was loaded before roicore, so roicore's "
                       "passive default could not apply; set OMP_WAIT_POLICY=passive "
                       "before starting Python)")
    else:
        WAIT_POLICY = ("passive (roicore's default: idle threads sleep; set "
                       "OMP_WAIT_POLICY=active to let them spin)")
    return _cpu
