"""C kernels for decode steps on AVX2 CPUs, built once with the C compiler and called through ctypes.

Two groups: a weight-only int8 matrix kernel (every Linear of a decode step), and the small
operations between the matrices of a Llama decode step (residual add + RMSNorm, rotary + KV-cache
write + attention, SiLU-and-multiply), each of which costs a dozen torch calls of a few
microseconds when the tensors hold a few hundred numbers.

The int8 kernel
---------------

torch's CPU wheel has no fast weight-only int8 GEMM without AVX-512 (``_weight_int8pack_mm`` is
about 10x slower than float32 here), and fbgemm's dynamic int8 quantizes the activations too
(per tensor, 7 bits on AVX2), which changes greedy output from the first token and makes a row's
result depend on the other rows of its batch. This kernel keeps activations in float32 and only
stores weights as int8 with one scale per output channel:

    y[m, n] = scale[n] * sum_k x[m, k] * q[n, k] (+ bias[n])

Every (m, n) is computed by the same sequence of float operations whatever the batch size, the
tile shape or the thread count, so a row decodes to the same tokens alone or in any batch.

The decode-step kernels
-----------------------
:mod:`lean_forward` calls them for float32 decode steps (one position per row); prefill and
other dtypes use torch. They compute what transformers computes (RMSNorm in float32, rotary as
``x * cos + rotate_half(x) * sin``, softmax attention over the cached positions a row may see),
with summation orders of their own, so logits agree to float32 rounding, not bit for bit.

Building
--------
The C source below is compiled with ``cc -O3 -mavx2 -mfma -fopenmp`` into a cache folder
(``FINSERVE_KERNEL_DIR``, else ``~/.cache/finserve/kernels``) and loaded with ctypes: no Python
headers, no torch headers, under a second to build. A library already there (prebuilt into an
image by ``finserve model kernels --out DIR``, see :func:`build_kernels`) is loaded without a
compiler. OpenMP resolves to the libgomp torch has already loaded (same soname), so the kernel
shares torch's thread pool. Where there is no AVX2/FMA, or neither a library nor a compiler,
:func:`load_kernels` returns None and callers fall back.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Rows of the weight are stored in groups of 8, each group as [K/8][8 rows][8 values]: one 64-byte
# line per k-step, read front to back, which the hardware prefetcher follows (row-major int8 rows
# of 576 bytes, read 8 at a time, ran 35 % slower from DRAM).
BLOCK = 8

SOURCE = r"""
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline float hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 sh = _mm_movehdup_ps(lo);
    __m128 s = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, s);
    return _mm_cvtss_f32(_mm_add_ss(s, sh));
}

static inline __m256 load_w8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* MB rows of x times NB rows of one 8-row weight group. One accumulator per (m, n), summed over k
   in the same order by every tile shape. */
#define TILE(MB, NB)                                                                              \
    static void tile_##MB##x##NB(const float *x, int64_t ldx, const int8_t *w, int64_t K,         \
                                 const float *s, const float *b, float *y, int64_t ldy) {        \
        __m256 acc[MB][NB];                                                                      \
        for (int m = 0; m < MB; m++)                                                              \
            for (int n = 0; n < NB; n++) acc[m][n] = _mm256_setzero_ps();                         \
        for (int64_t k = 0; k < K; k += 8, w += 64) {                                             \
            _mm_prefetch((const char *)(w + 1024), _MM_HINT_T0);                                   \
            for (int n = 0; n < NB; n++) {                                                        \
                __m256 wv = load_w8(w + n * 8);                                                   \
                for (int m = 0; m < MB; m++)                                                      \
                    acc[m][n] = _mm256_fmadd_ps(_mm256_loadu_ps(x + m * ldx + k), wv, acc[m][n]); \
            }                                                                                     \
        }                                                                                         \
        for (int m = 0; m < MB; m++)                                                              \
            for (int n = 0; n < NB; n++) {                                                        \
                float v = hsum8(acc[m][n]) * s[n];                                                \
                y[m * ldy + n] = b ? v + b[n] : v;                                                \
            }                                                                                     \
    }

TILE(1, 8) TILE(2, 4) TILE(3, 2) TILE(4, 2) TILE(5, 1) TILE(6, 1) TILE(7, 1) TILE(8, 1)

typedef void (*tile_fn)(const float *, int64_t, const int8_t *, int64_t, const float *, const float *,
                        float *, int64_t);
static const tile_fn tiles[9] = {0, tile_1x8, tile_2x4, tile_3x2, tile_4x2, tile_5x1, tile_6x1, tile_7x1,
                                 tile_8x1};
static const int widths[9] = {0, 8, 4, 2, 2, 1, 1, 1, 1};

/* y[M, N] (row stride ldy) = x[M, K] (row stride ldx) @ dequant(w)^T (+ b); N, K multiples of 8. */
void finserve_woq_int8(const float *x, int64_t ldx, const int8_t *w, const float *s, const float *b,
                       float *y, int64_t ldy, int64_t M, int64_t N, int64_t K, int threads) {
    int64_t groups = N / 8;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t g = 0; g < groups; g++) {
        const int8_t *wg = w + g * 8 * K;
        for (int64_t m0 = 0; m0 < M; m0 += 8) {
            int mb = (int)(M - m0 < 8 ? M - m0 : 8);
            int nb = widths[mb];
            for (int r = 0; r < 8; r += nb)
                tiles[mb](x + m0 * ldx, ldx, wg + r * 8, K, s + g * 8 + r, b ? b + g * 8 + r : 0,
                          y + m0 * ldy + g * 8 + r, ldy);
        }
    }
}

/* ---- decode-step glue (float32, one position per row) ---- */

static inline float dot(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return hsum8(acc);
}

/* h[r] += delta[r] (when delta is given); out[r] = h[r] * rsqrt(mean(h[r]^2) + eps) * w. */
void finserve_add_rmsnorm(float *h, const float *delta, const float *w, float eps, float *out, int64_t rows,
                          int64_t dim) {
    for (int64_t r = 0; r < rows; r++) {
        float *x = h + r * dim;
        if (delta) {
            const float *d = delta + r * dim;
            for (int64_t i = 0; i < dim; i += 8)
                _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(d + i)));
        }
        float inv = 1.0f / sqrtf(dot(x, x, dim) / (float)dim + eps);
        __m256 vi = _mm256_set1_ps(inv);
        float *o = out + r * dim;
        for (int64_t i = 0; i < dim; i += 8)
            _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vi)));
    }
}

/* out = x * cos + roll(x, d/2) * signed_sin, for one head vector of d values. */
static inline void rope(const float *x, const float *c, const float *s, float *out, int64_t d) {
    int64_t half = d / 2;
    for (int64_t i = 0; i < d; i++) out[i] = x[i] * c[i] + x[(i + half) % d] * s[i];
}

/* e^x for 8 floats: Cody-Waite range reduction and a degree-6 polynomial (Cephes expf), within
   2 ulp of expf over the range softmax and SiLU use; inputs below -87 give 0, above 88 e^88. */
static inline __m256 exp8(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.0f), lo = _mm256_set1_ps(-87.0f);
    __m256 tiny = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

/* exp of n floats in place, always 8 at a time (the tail goes through a padded copy), so every
   element gets the same arithmetic wherever it sits. */
static void exp_inplace(float *v, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, exp8(_mm256_loadu_ps(v + i)));
    if (i < n) {
        float t[8] = {0};
        for (int64_t j = i; j < n; j++) t[j - i] = v[j];
        _mm256_storeu_ps(t, exp8(_mm256_loadu_ps(t)));
        for (int64_t j = i; j < n; j++) v[j] = t[j - i];
    }
}

/* One decode step of attention for every row b and query head h:
   q [B, H*D], k and v [B, KV*D] (this step's projections); kc, vc the layer's caches
   [B, KV, cap, D]; the new key (rotated) and value are written at column `col`, then the query
   (rotated) attends over columns 0..col where valid[b, j] (valid NULL: all). out [B, H*D].
   The query heads that share a key/value head are done together, so each cached row is read once.
   The scores live on the heap: they grow with the context, and an OpenMP worker's (or a Python
   thread's) stack can be far smaller than group * (col + 1) floats. Returns 0, or -1 when that
   allocation failed (out is then incomplete). */
int finserve_rope_attend(const float *q, const float *k, const float *v, const float *cos_t,
                          const float *sin_t, const int64_t *pos, float *kc, float *vc, int64_t cap,
                          int64_t col, const uint8_t *valid, float scale, float *out, int64_t B, int64_t H,
                          int64_t KV, int64_t D, int threads) {
    int64_t group = H / KV;
    for (int64_t b = 0; b < B; b++) {
        const float *c = cos_t + pos[b] * D, *s = sin_t + pos[b] * D;
        for (int64_t g = 0; g < KV; g++) {
            float *kdst = kc + ((b * KV + g) * cap + col) * D, *vdst = vc + ((b * KV + g) * cap + col) * D;
            rope(k + (b * KV + g) * D, c, s, kdst, D);
            for (int64_t i = 0; i < D; i++) vdst[i] = v[(b * KV + g) * D + i];
        }
    }
    int64_t total = col + 1;
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t bg = 0; bg < B * KV; bg++) {
        int64_t b = bg / KV, g = bg % KV;
        const float *c = cos_t + pos[b] * D, *s = sin_t + pos[b] * D;
        const float *kb = kc + (b * KV + g) * cap * D, *vb = vc + (b * KV + g) * cap * D;
        const uint8_t *ok = valid ? valid + b * total : 0;
        float *qr = malloc(sizeof(float) * (size_t)(group * (D + total)));
        if (!qr) {
            failed = 1;
            continue;
        }
        float *sc = qr + group * D;
        for (int64_t h = 0; h < group; h++) rope(q + (b * H + g * group + h) * D, c, s, qr + h * D, D);
        for (int64_t j = 0; j < total; j++) {
            const float *kj = kb + j * D;
            for (int64_t h = 0; h < group; h++)
                sc[h * total + j] = (ok && !ok[j]) ? -INFINITY : dot(qr + h * D, kj, D) * scale;
        }
        for (int64_t h = 0; h < group; h++) {
            float *sh = sc + h * total, mx = -INFINITY, sum = 0.f;
            for (int64_t j = 0; j < total; j++) mx = sh[j] > mx ? sh[j] : mx;
            for (int64_t j = 0; j < total; j++) sh[j] -= mx;
            exp_inplace(sh, total);
            for (int64_t j = 0; j < total; j++) {
                if (ok && !ok[j]) sh[j] = 0.f;
                sum += sh[j];
            }
            __m256 inv = _mm256_set1_ps(1.0f / sum);
            float *o = out + (b * H + g * group + h) * D;
            if (D == 64) {
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
                for (int64_t j = 0; j < total; j++) {
                    if (sh[j] == 0.f) continue;
                    __m256 p = _mm256_set1_ps(sh[j]);
                    const float *vj = vb + j * 64;
                    a0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj), a0);
                    a1 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 8), a1);
                    a2 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 16), a2);
                    a3 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 24), a3);
                    a4 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 32), a4);
                    a5 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 40), a5);
                    a6 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 48), a6);
                    a7 = _mm256_fmadd_ps(p, _mm256_loadu_ps(vj + 56), a7);
                }
                _mm256_storeu_ps(o, _mm256_mul_ps(a0, inv));
                _mm256_storeu_ps(o + 8, _mm256_mul_ps(a1, inv));
                _mm256_storeu_ps(o + 16, _mm256_mul_ps(a2, inv));
                _mm256_storeu_ps(o + 24, _mm256_mul_ps(a3, inv));
                _mm256_storeu_ps(o + 32, _mm256_mul_ps(a4, inv));
                _mm256_storeu_ps(o + 40, _mm256_mul_ps(a5, inv));
                _mm256_storeu_ps(o + 48, _mm256_mul_ps(a6, inv));
                _mm256_storeu_ps(o + 56, _mm256_mul_ps(a7, inv));
            } else {
                for (int64_t i = 0; i < D; i += 8) {
                    __m256 acc = _mm256_setzero_ps();
                    for (int64_t j = 0; j < total; j++)
                        if (sh[j] != 0.f)
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(sh[j]), _mm256_loadu_ps(vb + j * D + i), acc);
                    _mm256_storeu_ps(o + i, _mm256_mul_ps(acc, inv));
                }
            }
        }
        free(qr);
    }
    return failed ? -1 : 0;
}

/* g = silu(g) * u = g / (1 + e^-g) * u, in place, 8 at a time (n a multiple of 8). */
void finserve_silu_mul(float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(zero, x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
}
"""

# -ffp-contract=off: no implicit fused multiply-adds, whose placement differs between tile shapes and
# would make a row's result depend on its batch size (the explicit FMAs are the same everywhere).
_BASE_FLAGS = ("-O3", "-mavx2", "-mfma", "-ffp-contract=off", "-shared", "-fPIC", "-lm")


class CPUKernels:
    """The compiled kernels, callable on torch tensors (float32, contiguous, on the CPU).

    The C code reads and writes through raw pointers with the sizes it is given, so every method
    checks sizes, dtypes and contiguity first: a wrong tensor raises ValueError instead of reading
    or writing past its end. The checks are attribute reads only (about 25 us per layer of a
    SmolLM2 decode step, under a millisecond of its ~30 ms); ``qweight`` and ``scales`` are
    trusted to be what :func:`pack` returned.
    """

    def __init__(self, lib: ctypes.CDLL, threaded: bool) -> None:
        ptr, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
        self._woq = _bind(lib.finserve_woq_int8, ptr, i64, ptr, ptr, ptr, ptr, i64, i64, i64, i64, i32)
        self._add_rmsnorm = _bind(lib.finserve_add_rmsnorm, ptr, ptr, ptr, f32, ptr, i64, i64)
        self._rope_attend = _bind(lib.finserve_rope_attend, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, ptr,
                                  f32, ptr, i64, i64, i64, i64, i32)
        self._rope_attend.restype = ctypes.c_int
        self._silu_mul = _bind(lib.finserve_silu_mul, ptr, ptr, i64)
        self.threaded = threaded

    def threads(self) -> int:
        return torch.get_num_threads() if self.threaded else 1

    def linear(self, x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
               bias: torch.Tensor | None) -> torch.Tensor:
        """``x @ W.T + bias`` for ``x`` of any leading shape, W given by :func:`pack`.

        Computed in float32; the result has ``x``'s dtype, as ``F.linear`` would give.
        """
        n, k = qweight.shape
        if x.shape[-1:] != (k,):
            raise ValueError(f"int8 linear: input of {tuple(x.shape)} does not end in in_features={k}")
        dtype = x.dtype
        if dtype != torch.float32 or not x.is_contiguous():
            x = x.float().contiguous()
        if bias is not None:
            if bias.numel() != n:
                raise ValueError(f"int8 linear: bias of {tuple(bias.shape)} for {n} outputs")
            if bias.dtype != torch.float32 or not bias.is_contiguous():
                bias = bias.float().contiguous()  # a float16/bfloat16 bias would be read as float32
        rows = x.numel() // k if k else 0
        out = torch.empty((*x.shape[:-1], n), dtype=torch.float32)
        if rows:
            self._woq(x.data_ptr(), k, qweight.data_ptr(), scales.data_ptr(),
                      None if bias is None else bias.data_ptr(), out.data_ptr(), n, rows, n, k, self.threads())
        return out if dtype == torch.float32 or not dtype.is_floating_point else out.to(dtype)

    def add_rmsnorm(self, hidden: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor,
                    eps: float) -> torch.Tensor:
        """``hidden += delta`` in place (when given), then RMSNorm of ``hidden`` times ``weight``."""
        dim = hidden.shape[-1]
        size = hidden.numel()
        if dim % BLOCK:
            raise ValueError(f"add_rmsnorm: width {dim} is not a multiple of {BLOCK}")
        _need(hidden, torch.float32, size, "hidden")
        _need(weight, torch.float32, dim, "weight")
        if delta is not None:
            _need(delta, torch.float32, size, "delta")
        out = torch.empty_like(hidden)
        self._add_rmsnorm(hidden.data_ptr(), None if delta is None else delta.data_ptr(), weight.data_ptr(), eps,
                          out.data_ptr(), hidden.numel() // dim, dim)
        return out

    def rope_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
                    signed_sin: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    column: int, valid: torch.Tensor | None, scale: float, heads: int) -> torch.Tensor:
        """Rotary on q and k, k and v written to cache column ``column``, attention over columns 0..column.

        ``keys``/``values`` are one layer's cache [batch, kv_heads, capacity, head_dim]; ``valid``
        [batch, column + 1] uint8 (None: every column). Returns [batch, 1, heads * head_dim].
        """
        batch, kv_heads, capacity, head_dim = keys.shape
        if not 0 <= column < capacity:
            raise ValueError(f"rope_attend: column {column} is outside the cache's {capacity} columns")
        if head_dim % BLOCK or heads % kv_heads:
            raise ValueError(f"rope_attend: head_dim {head_dim} / {heads} heads over {kv_heads} key-value heads")
        if cos.shape[-1] != head_dim:
            raise ValueError(f"rope_attend: rotary rows of {cos.shape[-1]} values for head_dim {head_dim}")
        cache = keys.numel()
        _need(keys, torch.float32, cache, "keys")
        _need(values, torch.float32, cache, "values")
        _need(q, torch.float32, batch * heads * head_dim, "q")
        _need(k, torch.float32, batch * kv_heads * head_dim, "k")
        _need(v, torch.float32, batch * kv_heads * head_dim, "v")
        _need(cos, torch.float32, cos.numel(), "cos")
        _need(signed_sin, torch.float32, cos.numel(), "signed_sin")
        _need(positions, torch.int64, batch, "positions")
        if valid is not None:
            _need(valid, torch.uint8, batch * (column + 1), "valid")
        # The rotary rows are read at positions[b] unchecked: callers check the range once per step
        # (a reduction per layer would cost more than the rest of these checks together).
        out = torch.empty((batch, 1, heads * head_dim), dtype=torch.float32)
        status = self._rope_attend(q.data_ptr(), k.data_ptr(), v.data_ptr(), cos.data_ptr(), signed_sin.data_ptr(),
                                   positions.data_ptr(), keys.data_ptr(), values.data_ptr(), capacity, column,
                                   None if valid is None else valid.data_ptr(), scale, out.data_ptr(), batch, heads,
                                   kv_heads, head_dim, self.threads())
        if status:
            raise MemoryError(f"rope_attend: no memory for the scores of {column + 1} columns")
        return out

    def silu_mul(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """``silu(gate) * up``, written into ``gate``."""
        size = gate.numel()
        if size % BLOCK:
            raise ValueError(f"silu_mul: {size} values is not a multiple of {BLOCK}")
        _need(gate, torch.float32, size, "gate")
        _need(up, torch.float32, size, "up")
        self._silu_mul(gate.data_ptr(), up.data_ptr(), gate.numel())
        return gate


def _bind(fn: Any, *argtypes: Any) -> Any:
    fn.restype = None
    fn.argtypes = list(argtypes)
    return fn


def _need(t: torch.Tensor, dtype: torch.dtype, numel: int, name: str) -> None:
    """Raise unless ``t`` is a contiguous CPU tensor of ``dtype`` holding ``numel`` values."""
    if t.dtype != dtype or t.numel() != numel or not t.is_contiguous() or not t.is_cpu:
        raise ValueError(f"{name}: need a contiguous CPU {dtype} tensor of {numel} values, got {t.dtype} "
                         f"{tuple(t.shape)}{'' if t.is_contiguous() else ' non-contiguous'} on {t.device}")


def packable(out_features: int, in_features: int) -> bool:
    return out_features > 0 and in_features > 0 and out_features % BLOCK == 0 and in_features % BLOCK == 0


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: ``weight ~= q * scale[:, None]`` with q in [-127, 127]."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scales.contiguous()


def pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``weight`` [N, K] and lay it out for the kernel: (blocked int8, float32 scales [N])."""
    n, k = weight.shape
    if not packable(n, k):
        raise ValueError(f"int8 packing needs both dimensions divisible by {BLOCK}, got {n}x{k}")
    q, scales = quantize(weight)
    blocked = q.view(n // BLOCK, BLOCK, k // BLOCK, BLOCK).permute(0, 2, 1, 3).contiguous()
    return blocked.view(n, k), scales


def unpack(blocked: torch.Tensor) -> torch.Tensor:
    """The row-major int8 matrix of a blocked one (tests and debugging)."""
    n, k = blocked.shape
    return blocked.view(n // BLOCK, k // BLOCK, BLOCK, BLOCK).permute(0, 2, 1, 3).reshape(n, k)


def cpu_supported() -> bool:
    """x86-64 with AVX2 and FMA (read from /proc/cpuinfo; other systems are not supported)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = next(
            (line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("flags")), [],
        )
    except OSError:
        return False
    return "avx2" in flags and "fma" in flags


def kernel_dir() -> Path:
    configured = os.environ.get("FINSERVE_KERNEL_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "finserve" / "kernels"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _variants() -> list[tuple[tuple[str, ...], bool]]:
    """(compiler flags, uses OpenMP), preferred first."""
    return [((*_BASE_FLAGS, "-fopenmp"), True), (_BASE_FLAGS, False)]


def library_name(flags: tuple[str, ...]) -> str:
    """The file name of a build: a hash of the source and the flags, so an edit never loads a stale one."""
    return f"finserve_kernels-{hashlib.sha256((SOURCE + ' '.join(flags)).encode()).hexdigest()[:16]}.so"


def _find_built(folder: Path) -> list[tuple[Path, bool]]:
    """Libraries of this source already in ``folder`` (prebuilt into an image, or an earlier build)."""
    return [(folder / library_name(flags), openmp) for flags, openmp in _variants()
            if (folder / library_name(flags)).is_file()]


def _build(compiler: str, folder: Path) -> tuple[Path, bool]:
    """Compile (or find) the shared library; returns its path and whether it uses OpenMP."""
    built = _find_built(folder)
    if built:
        return built[0]
    errors = []
    for flags, openmp in _variants():
        target = folder / library_name(flags)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(fd)
        src = Path(tmp).with_suffix(".c")
        src.write_text(SOURCE)
        try:
            proc = subprocess.run([compiler, *flags, "-o", tmp, str(src)], capture_output=True, text=True,
                                  timeout=120, check=False)
            if proc.returncode == 0:
                # mkstemp made the file 0600 and the linker only adds x bits (0711): a library
                # built by one user (root, in an image build) must stay readable by the others.
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)  # atomic: another process never sees half a library
                return target, openmp
            errors.append(proc.stderr.strip()[-400:])
        finally:
            src.unlink(missing_ok=True)
            Path(tmp).unlink(missing_ok=True)
    raise RuntimeError("; ".join(errors))


def build_kernels(folder: Path, compiler: str | None = None) -> Path:
    """Compile the kernels into ``folder`` ahead of time (an image build); returns the library.

    Compiling needs no AVX2 on the building machine, only an x86-64 compiler; the flags name
    AVX2 and FMA, not ``-march=native``, so the library runs on any CPU that
    :func:`cpu_supported` accepts (and :func:`load_kernels` checks that before loading it).
    """
    compiler = compiler or _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC or install gcc)")
    path, _ = _build(compiler, Path(folder))
    return path


def _private_temp_dir() -> Path:
    """A build folder under the temp dir that only this user can write.

    The fixed name lets the processes of one user share a build; a folder there that another
    user owns or could write into is not trusted (a library planted in it would be loaded), so a
    fresh private one is made instead.
    """
    path = Path(tempfile.gettempdir()) / f"finserve-kernels-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="finserve-kernels-"))


def _gomp_copies() -> int:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return 1
    return len({line.split()[-1] for line in maps.splitlines() if "libgomp" in line})


@functools.cache
def load_kernels() -> CPUKernels | None:
    """The kernels, built on first use; None (with a warning) where they cannot run here.

    A library already in :func:`kernel_dir` (prebuilt into the image) is loaded without a
    compiler and without writing anything; otherwise one is compiled there, or, when that folder
    cannot be written, into a private folder under the temp dir.
    """
    if not cpu_supported():
        log.warning("CPU kernels need an x86-64 CPU with AVX2 and FMA")
        return None
    folder = kernel_dir()
    for path, openmp in _find_built(folder):
        try:
            return _open(path, openmp)
        except OSError as exc:  # e.g. the OpenMP build without libgomp here: try the next one
            log.warning("CPU kernels: could not load %s: %s", path, exc)
    compiler = _compiler()
    if compiler is None:
        log.warning("CPU kernels: no prebuilt library in %s and no C compiler (set CC or install gcc)", folder)
        return None
    try:
        try:
            path, openmp = _build(compiler, folder)
        except OSError:  # an unwritable cache folder: build into a private temp folder instead
            path, openmp = _build(compiler, _private_temp_dir())
        return _open(path, openmp)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        log.warning("CPU kernels could not be built with %s: %s", compiler, exc)
        return None


def _open(path: Path, openmp: bool) -> CPUKernels:
    lib = ctypes.CDLL(str(path))
    threaded = openmp and _gomp_copies() <= 1
    if openmp and not threaded:
        log.warning("CPU kernels: a second OpenMP runtime was loaded; they run on one thread")
    return CPUKernels(lib, threaded)
