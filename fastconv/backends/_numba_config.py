"""Numba compilation flags for the 'numba' backend, in one place (DESIGN convention 10).

cache=True: each kernel is compiled once per dtype and kept on disk (__pycache__), so only the very
first call on a machine pays the JIT cost. fastmath allows reassociation and FMA contraction only,
so reductions vectorize; no nnan/ninf, so NaN and ±inf propagate exactly as in the reference.
Numba's cache does not notice edits to *other* files, so each kernel module keeps the helpers it
calls in the same file; the one exception is _numba_dense._dot4x4, also used by _numba_tiled: after
editing it, delete fastconv/backends/__pycache__/_numba_tiled*.nb[ic] (or the whole __pycache__).
"""
FASTMATH = {"reassoc", "contract"}

PARALLEL = dict(cache=True, parallel=True, fastmath=FASTMATH, nogil=True)   # kernels with one prange
SERIAL = dict(cache=True, fastmath=FASTMATH, nogil=True)                    # helpers they call
EXACT = dict(cache=True, parallel=True, nogil=True)                         # pooling: exact comparisons
