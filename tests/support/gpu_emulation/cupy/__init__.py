"""A host stand-in for the slice of CuPy that roicore's GPU backend uses.

NOT CuPy: a test tool that lets ``tests/test_gpu.py`` run on a machine
without a GPU.  ``RawModule`` compiles the very CUDA source that
:mod:`roicore._backends.cuda` would hand to NVRTC with the host C++ compiler instead
(CUDA keywords defined away, ``-ffp-contract=off`` like the kernels'
``--fmad=false``), explicitly instantiates the requested kernels and calls
them through ctypes by their Itanium-mangled names.  A launch runs one
thread that walks the whole grid-stride loop, except ``rc_roi_csr`` (the
only kernel with ``__syncthreads``), which with ``ROICORE_EMULATE_THREADS=1``
runs each block as 256 real threads with a barrier.  Arrays are NumPy
arrays of a subclass named ``cupy.ndarray``.

What this checks: the kernels' arithmetic and indexing, their agreement
with the CPU backend, and the Python glue (argument order, dtypes, scalar
types, launch shapes).  What it cannot: NVRTC itself, device math
libraries, real parallelism and atomics, CuPy's own API and streams.

Use: ``PYTHONPATH=tests/support/gpu_emulation python -m pytest -p roicore_gpu_emulation
tests/test_gpu.py``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
import threading

import numpy as np

__version__ = "0.0+roicore-host-emulation"
int32, int64, float16, float32, float64 = np.int32, np.int64, np.float16, np.float32, np.float64
#: (kernel name expression, grid, block) of every launch.
LAUNCHES: list = []

PRELUDE = r"""
#include <barrier>
#include <cmath>
#include <cstring>
using std::ceil;
using std::floor;
using std::round;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
struct rc_dim3 { unsigned int x, y, z; };
static thread_local rc_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static rc_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
static std::barrier<>* emu_bar = nullptr;
extern "C" void emu_config(unsigned gx, unsigned bx) {
  gridDim.x = gx; blockDim.x = bx; delete emu_bar;
  emu_bar = bx > 1 ? new std::barrier<>(bx) : nullptr;
}
extern "C" void emu_thread(unsigned b, unsigned t) { blockIdx.x = b; threadIdx.x = t; }
inline void __syncthreads() { if (emu_bar) emu_bar->arrive_and_wait(); }
inline float __int_as_float(unsigned int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(unsigned long long i) {
  double f; std::memcpy(&f, &i, 8); return f; }
inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, 8); return i; }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  unsigned long long o = *p; *p = o + v; return o; }
inline float atomicAdd(float* p, float v) { float o = *p; *p = o + v; return o; }
inline double atomicAdd(double* p, double v) { double o = *p; *p = o + v; return o; }
"""

_BUILD = os.path.join(tempfile.gettempdir(), "roicore-gpu-emulation")
_LOCK = threading.Lock()


# --------------------------------------------------------------------------- arrays
class _Device:
    id = 0

    def __init__(self, i=0):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, _Device)

    def __hash__(self):
        return 0

    def synchronize(self):
        pass


_DEVICE = _Device()


class ndarray(np.ndarray):  # CuPy's name
    @property
    def device(self):
        return _DEVICE


def _w(a):
    return np.asarray(a).view(ndarray)


def asnumpy(a):
    return np.array(np.asarray(a).view(np.ndarray))


def asarray(a, dtype=None):
    return _w(np.asarray(a, dtype=dtype))


def ascontiguousarray(a, dtype=None):
    return _w(np.ascontiguousarray(a, dtype=dtype))


def empty(shape, dtype=np.float64):
    a = np.empty(shape, dtype)
    a.view(np.uint8)[...] = 0xCD  # garbage, as fresh device memory would be
    return _w(a)


def zeros(shape, dtype=np.float64):
    return _w(np.zeros(shape, dtype))


def full(shape, value, dtype=None):
    return _w(np.full(shape, value, dtype))


def ones_like(a):
    return _w(np.ones_like(np.asarray(a)))


def arange(*args, **kwargs):
    return _w(np.arange(*args, **kwargs))


def broadcast_to(a, shape):
    return _w(np.broadcast_to(np.asarray(a), shape))


def logical_or(a, b):
    return _w(np.logical_or(np.asarray(a), np.asarray(b)))


def concatenate(parts, axis=0):
    return _w(np.concatenate([np.asarray(p) for p in parts], axis=axis))


def memoize(for_each_device=False):
    del for_each_device
    return functools.cache


class _Stream:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


class _Runtime:
    @staticmethod
    def getDeviceCount():  # CuPy's name
        return 1


class cuda:  # CuPy's name
    runtime = _Runtime
    Stream = _Stream
    Device = _Device

    @staticmethod
    def get_current_stream():
        return _Stream()


# --------------------------------------------------------------------------- kernels
def _mangled_prefix(expr):
    base, args = expr[:-1].split("<", 1)
    codes = {"float": "f", "double": "d", "false": "Lb0E", "true": "Lb1E"}
    return f"_Z{len(base)}{base}I" + "".join(codes[a.strip()] for a in args.split(",")) + "Ev"


class RawModule:
    def __init__(self, code=None, *, options=(), name_expressions=None, **kwargs):
        self.names = list(name_expressions)
        options = tuple(options)
        assert all(o.startswith("-D") or o == "--fmad=false" for o in options), options
        assert not [ln for ln in code.splitlines() if ln.lstrip().startswith("#include")]
        inst = "\n".join(f"template decltype({n}) {n};" for n in self.names)
        defs = [o for o in options if o.startswith("-D")]
        full_src = PRELUDE + code + "\n" + inst + "\n"
        key = hashlib.sha1((full_src + repr(defs)).encode()).hexdigest()[:16]
        so = os.path.join(_BUILD, f"kernels_{key}.so")
        with _LOCK:
            if not os.path.exists(so):
                os.makedirs(_BUILD, exist_ok=True)
                src = so[:-3] + ".cpp"
                with open(src, "w") as f:
                    f.write(full_src)
                tmp = f"{so}.{os.getpid()}.tmp"
                subprocess.run([os.environ.get("CXX", "g++"), "-std=c++20", "-O1",
                                "-ffp-contract=off", "-fPIC", "-shared", "-pthread", *defs,
                                src, "-o", tmp], check=True)
                os.replace(tmp, so)
        self.lib = ctypes.CDLL(so)
        nm = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True,
                            check=True).stdout.split()
        self.symbols = [s for s in nm if s.startswith("_Z")]

    def get_function(self, name):
        assert name in self.names, name
        hits = [s for s in self.symbols if s.startswith(_mangled_prefix(name))]
        assert len(hits) == 1, (name, hits)
        T = np.float32 if "<float" in name else np.float64
        return _Kernel(name, getattr(self.lib, hits[0]), T, self.lib)


class _Kernel:
    def __init__(self, name, fn, T, lib):
        self.name, self.fn, self.T, self.lib = name, fn, T, lib
        fn.restype = None

    def _convert(self, args):
        conv = []
        for a in args:
            if isinstance(a, np.ndarray):
                assert isinstance(a, ndarray), (self.name, "a NumPy array was passed")
                assert a.flags.c_contiguous, self.name
                if a.dtype.kind == "f":
                    assert a.dtype == self.T, (self.name, a.dtype)
                else:
                    assert a.dtype == np.int64, (self.name, a.dtype)
                conv.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.int64):
                conv.append(ctypes.c_longlong(int(a)))
            elif isinstance(a, np.int32):
                conv.append(ctypes.c_int(int(a)))
            elif isinstance(a, (np.float32, np.float64)):
                assert type(a) is self.T, (self.name, type(a))
                conv.append(ctypes.c_float(a) if self.T is np.float32 else ctypes.c_double(a))
            else:
                raise AssertionError((self.name, type(a)))
        return conv

    def __call__(self, grid, block, args, **kwargs):
        assert isinstance(grid, tuple) and isinstance(block, tuple), (grid, block)
        assert all(isinstance(v, int) and v > 0 for v in grid + block), (grid, block)
        LAUNCHES.append((self.name, grid, block))
        conv = self._convert(args)
        with _LOCK:
            if "rc_roi_csr" in self.name and os.environ.get("ROICORE_EMULATE_THREADS") == "1":
                self._run_blocks(grid[0], block[0], conv)
            else:
                self.fn(*conv)

    def _run_blocks(self, nblocks, nthreads, conv):
        """Each block as nthreads real threads sharing __shared__ and a barrier."""
        self.lib.emu_config(nblocks, nthreads)
        try:
            for b in range(nblocks):
                def body(b=b, t=0):
                    self.lib.emu_thread(b, t)
                    self.fn(*conv)

                threads = [threading.Thread(target=body, args=(b, t)) for t in range(nthreads)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
        finally:
            self.lib.emu_config(1, 1)
            self.lib.emu_thread(0, 0)
