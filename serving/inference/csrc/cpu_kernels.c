/* finserve's CPU kernels for decode steps: weight-only int8 matrix products and the small float32
   operations between the matrices of a Llama decode step. Python calls them through ctypes
   (serving/inference/cpu_kernels.py explains what each computes and why).

   setup.py builds this file into finserve/serving/inference/_kernels.abi3.so when the wheel (or an
   editable install) is built; a serving process never compiles anything. It is a plain shared
   library that uses no Python API (so the build needs a C compiler, not Python's headers), found
   with importlib and opened with ctypes. It is compiled without -mavx2 / -mavx512f: each function
   names the instruction set it uses with a target attribute, so one binary loads on every x86-64
   CPU and Python picks the variant the CPU runs (cpu_kernels.choose_variant, on the flags of
   /proc/cpuinfo). On other architectures only the two functions below are built. Exported symbols:

     finserve_woq_int8_avx2, finserve_woq_int8_avx512   the int8 matrix kernel, two variants
     finserve_add_rmsnorm, finserve_rope_attend, finserve_silu_mul   AVX2 + FMA
     finserve_decode_step                               every layer of a decode step, one call
     finserve_gguf_rows_int8                            GGUF blocks to int8 rows (load time), AVX2
     finserve_woq_q4_avx2, finserve_q4_pack             GGUF Q4_0/Q4_1 blocks kept as they are: the 4-bit
                                                        matrix kernel (AVX2 + FMA + F16C) and its load-time
                                                        repacking (the last section of this file)
     finserve_kernels_abi, finserve_kernels_threads     what Python checks before binding

   Built with -ffp-contract=off: no implicit fused multiply-adds, whose placement could differ between
   tile shapes and make a row's result depend on its batch size (the explicit FMAs are the same
   everywhere). The two parallel loops run on a small thread pool of this file's own (below), not OpenMP. */

#include <stdint.h>
#include <string.h>

/* Bumped whenever an exported signature changes: Python refuses a library of another ABI (a stale
   in-place build of an editable install) instead of calling it with the wrong arguments. */
int finserve_kernels_abi(void) { return 6; }

/* Whether the parallel loops can use more than one thread (the x86-64 build has the pool). */
int finserve_kernels_threads(void) {
#if defined(__x86_64__) || defined(_M_X64)
    return 1;
#else
    return 0;
#endif
}

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* ---- the thread pool ----

   Why not OpenMP: libgomp shortens its workers' spin-wait to about 100 iterations once it manages more
   threads than there are CPUs, which is the case as soon as a second thread (the engine's decode thread, a
   Ray replica's request thread) runs parallel regions beside the main thread's team; every one of the ~330
   parallel loops of a decode step then paid a futex wake-up (measured: a decode loop on a worker thread took
   twice the time per token of the same loop on the main thread). These workers spin for up to SPIN_NS after
   a job, so the next matrix of the same step finds them awake, then sleep on a condition variable.
   One job at a time: a caller that finds the pool busy (another Python thread) runs its loop alone. Every
   worker acknowledges every job (pool_left), so the job's fields are never rewritten while one reads them. */

#define POOL_MAX 64
#define SPIN_NS 300000 /* 0.3 ms: longer than the gaps between a step's kernel calls */

typedef void (*range_fn)(void *ctx, int64_t begin, int64_t end);

static pthread_mutex_t pool_run = PTHREAD_MUTEX_INITIALIZER; /* held by the caller running a job */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;  /* guards pool_sleepers and the sleep */
static pthread_cond_t pool_cv = PTHREAD_COND_INITIALIZER;
static int pool_workers;   /* started so far (guarded by pool_run) */
static int pool_sleepers;  /* workers waiting on pool_cv */
static int pool_fork_hook; /* pthread_atfork registered */
static atomic_uint pool_gen;
static atomic_int pool_left;
static unsigned pool_start_gen[POOL_MAX];
static range_fn job_fn;
static void *job_ctx;
static int64_t job_total;
static int job_parts;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Part `part` of job_parts near-equal slices of [0, job_total). */
static void run_part(int part) {
    int64_t per = job_total / job_parts, extra = job_total % job_parts;
    int64_t begin = part * per + (part < extra ? part : extra);
    int64_t end = begin + per + (part < extra ? 1 : 0);
    if (begin < end) job_fn(job_ctx, begin, end);
}

static void *pool_worker(void *arg) {
    int index = (int)(intptr_t)arg; /* 1..pool_workers; part 0 is the caller's */
    unsigned seen = pool_start_gen[index];
    for (;;) {
        unsigned gen;
        int64_t since = 0;
        unsigned spins = 0;
        while ((gen = atomic_load_explicit(&pool_gen, memory_order_acquire)) == seen) {
            _mm_pause();
            if (++spins % 64) continue;
            int64_t t = now_ns();
            if (!since) {
                since = t;
            } else if (t - since > SPIN_NS) {
                pthread_mutex_lock(&pool_mu);
                pool_sleepers++;
                while (atomic_load_explicit(&pool_gen, memory_order_acquire) == seen)
                    pthread_cond_wait(&pool_cv, &pool_mu);
                pool_sleepers--;
                pthread_mutex_unlock(&pool_mu);
                since = 0;
            }
        }
        seen = gen;
        if (index < job_parts) run_part(index);
        atomic_fetch_sub_explicit(&pool_left, 1, memory_order_release);
    }
    return 0;
}

/* A forked child has none of the parent's threads: start over (the locks are re-created unheld). */
static void pool_after_fork(void) {
    pthread_mutex_t unlocked = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh = PTHREAD_COND_INITIALIZER;
    pool_run = unlocked;
    pool_mu = unlocked;
    pool_cv = fresh;
    pool_workers = 0;
    pool_sleepers = 0;
}

/* fn(ctx, begin, end) over [0, total) in `threads` slices at once (fewer when threads cannot start). */
static void parallel(range_fn fn, void *ctx, int64_t total, int threads) {
    if (threads > POOL_MAX) threads = POOL_MAX;
    if (threads > total) threads = (int)total;
    if (threads <= 1 || pthread_mutex_trylock(&pool_run) != 0) {
        fn(ctx, 0, total);
        return;
    }
    if (!pool_fork_hook) pool_fork_hook = pthread_atfork(0, 0, pool_after_fork) == 0;
    while (pool_workers < threads - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pool_start_gen[pool_workers + 1] = atomic_load(&pool_gen);
        int failed = pthread_create(&thread, &attr, pool_worker, (void *)(intptr_t)(pool_workers + 1));
        pthread_attr_destroy(&attr);
        if (failed) break;
        pool_workers++;
    }
    if (!pool_workers) {
        pthread_mutex_unlock(&pool_run);
        fn(ctx, 0, total);
        return;
    }
    job_fn = fn;
    job_ctx = ctx;
    job_total = total;
    job_parts = threads < pool_workers + 1 ? threads : pool_workers + 1;
    atomic_store_explicit(&pool_left, pool_workers, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool_gen, 1, memory_order_release);
    pthread_mutex_lock(&pool_mu);
    if (pool_sleepers) pthread_cond_broadcast(&pool_cv);
    pthread_mutex_unlock(&pool_mu);
    run_part(0);
    /* A worker the OS descheduled (a busy machine) is waited for without burning the caller's core. */
    for (unsigned spins = 1; atomic_load_explicit(&pool_left, memory_order_acquire) > 0; spins++) {
        if (spins % 1024)
            _mm_pause();
        else
            sched_yield();
    }
    pthread_mutex_unlock(&pool_run);
}

#define AVX2 __attribute__((target("avx2,fma")))
/* AVX-512 Foundation is all the 512-bit int8 kernel needs (F implies AVX2 and FMA in GCC and clang). */
#define AVX512 __attribute__((target("avx512f,avx2,fma")))

AVX2 static inline float hsum8(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 sh = _mm_movehdup_ps(lo);
    __m128 s = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, s);
    return _mm_cvtss_f32(_mm_add_ss(s, sh));
}

AVX2 static inline __m256 load_w8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}


/* ---- the int8 matrix kernel ----

   Rows of the weight come in groups of 8, each group stored as [K/8][8 rows][8 values]: one 64-byte
   line per k-step. Every output (m, n) has one accumulator of 8 lanes, lane j summing x[m, k] * w[n, k]
   over k = j mod 8 with explicit FMAs in increasing k, then reduced by hsum8 and scaled: both variants
   do exactly these operations for every (m, n), whatever the batch, tile or thread count, so they agree
   bit for bit with each other and a row decodes the same alone or in any batch. */

typedef void (*group_fn)(const float *x, int64_t ldx, const int8_t *wg, const float *s, const float *b,
                         float *y, int64_t ldy, int64_t M, int64_t K);

struct woq_job {
    group_fn group;
    const float *x, *s, *b;
    const int8_t *w;
    float *y;
    int64_t ldx, ldy, M, K;
};

static void woq_groups(void *ctx, int64_t begin, int64_t end) {
    const struct woq_job *j = ctx;
    for (int64_t g = begin; g < end; g++)
        j->group(j->x, j->ldx, j->w + g * 8 * j->K, j->s + g * 8, j->b ? j->b + g * 8 : 0, j->y + g * 8, j->ldy,
                 j->M, j->K);
}

/* y[M, N] (row stride ldy) = x[M, K] (row stride ldx) @ dequant(w)^T (+ b); N, K multiples of 8.
   Plain C: the parallel loop stays out of the target-specific code and calls it per weight group. */
static void woq_run(group_fn group, const float *x, int64_t ldx, const int8_t *w, const float *s,
                    const float *b, float *y, int64_t ldy, int64_t M, int64_t N, int64_t K, int threads) {
    struct woq_job job = {group, x, s, b, w, y, ldx, ldy, M, K};
    parallel(woq_groups, &job, N / 8, threads);
}

/* AVX2: MB rows of x times NB rows of one 8-row weight group, 8 lanes per accumulator. */
#define TILE(MB, NB)                                                                              \
    AVX2 static void tile_##MB##x##NB(const float *x, int64_t ldx, const int8_t *w, int64_t K,    \
                                      const float *s, const float *b, float *y, int64_t ldy) {   \
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

AVX2 static void group_avx2(const float *x, int64_t ldx, const int8_t *wg, const float *s, const float *b,
                            float *y, int64_t ldy, int64_t M, int64_t K) {
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        int mb = (int)(M - m0 < 8 ? M - m0 : 8);
        int nb = widths[mb];
        for (int r = 0; r < 8; r += nb)
            tiles[mb](x + m0 * ldx, ldx, wg + r * 8, K, s + r, b ? b + r : 0, y + m0 * ldy + r, ldy);
    }
}

void finserve_woq_int8_avx2(const float *x, int64_t ldx, const int8_t *w, const float *s, const float *b,
                            float *y, int64_t ldy, int64_t M, int64_t N, int64_t K, int threads) {
    woq_run(group_avx2, x, ldx, w, s, b, y, ldy, M, N, K, threads);
}

/* AVX-512: one 16-lane register holds two weight rows (2p in the low 8 lanes, 2p + 1 in the high 8)
   against the same 8 values of x, repeated in both halves: half the conversions and FMAs of AVX2 for
   the same lane-by-lane arithmetic. MB rows of x times NP row pairs. */
AVX512 static inline __m512 load_w16(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

AVX512 static inline __m512 load_x2(const float *p) {
    __m512 v = _mm512_castps256_ps512(_mm256_loadu_ps(p));
    return _mm512_shuffle_f32x4(v, v, 0x44); /* 128-bit lanes 0 1 0 1: the 8 values twice */
}

AVX512 static inline __m256 high8(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

#define TILE512(MB, NP)                                                                           \
    AVX512 static void tile512_##MB##x##NP(const float *x, int64_t ldx, const int8_t *w, int64_t K, \
                                           const float *s, const float *b, float *y, int64_t ldy) { \
        __m512 acc[MB][NP];                                                                      \
        for (int m = 0; m < MB; m++)                                                              \
            for (int p = 0; p < NP; p++) acc[m][p] = _mm512_setzero_ps();                         \
        for (int64_t k = 0; k < K; k += 8, w += 64) {                                             \
            _mm_prefetch((const char *)(w + 1024), _MM_HINT_T0);                                   \
            __m512 xv[MB];                                                                        \
            for (int m = 0; m < MB; m++) xv[m] = load_x2(x + m * ldx + k);                        \
            for (int p = 0; p < NP; p++) {                                                        \
                __m512 wv = load_w16(w + p * 16);                                                 \
                for (int m = 0; m < MB; m++) acc[m][p] = _mm512_fmadd_ps(xv[m], wv, acc[m][p]);   \
            }                                                                                     \
        }                                                                                         \
        for (int m = 0; m < MB; m++)                                                              \
            for (int p = 0; p < NP; p++) {                                                        \
                float lo = hsum8(_mm512_castps512_ps256(acc[m][p])) * s[2 * p];                   \
                float hi = hsum8(high8(acc[m][p])) * s[2 * p + 1];                                \
                y[m * ldy + 2 * p] = b ? lo + b[2 * p] : lo;                                      \
                y[m * ldy + 2 * p + 1] = b ? hi + b[2 * p + 1] : hi;                              \
            }                                                                                     \
    }

TILE512(1, 4) TILE512(2, 4) TILE512(3, 4) TILE512(4, 4) TILE512(5, 2) TILE512(6, 2) TILE512(7, 2)
TILE512(8, 2)

static const tile_fn tiles512[9] = {0, tile512_1x4, tile512_2x4, tile512_3x4, tile512_4x4, tile512_5x2,
                                    tile512_6x2, tile512_7x2, tile512_8x2};
static const int pairs512[9] = {0, 4, 4, 4, 4, 2, 2, 2, 2};

AVX512 static void group_avx512(const float *x, int64_t ldx, const int8_t *wg, const float *s, const float *b,
                                float *y, int64_t ldy, int64_t M, int64_t K) {
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
        int mb = (int)(M - m0 < 8 ? M - m0 : 8);
        int rows = 2 * pairs512[mb];
        for (int r = 0; r < 8; r += rows)
            tiles512[mb](x + m0 * ldx, ldx, wg + r * 8, K, s + r, b ? b + r : 0, y + m0 * ldy + r, ldy);
    }
}

void finserve_woq_int8_avx512(const float *x, int64_t ldx, const int8_t *w, const float *s, const float *b,
                              float *y, int64_t ldy, int64_t M, int64_t N, int64_t K, int threads) {
    woq_run(group_avx512, x, ldx, w, s, b, y, ldy, M, N, K, threads);
}

/* ---- decode-step glue (float32, one position per row) ---- */

AVX2 static inline float dot(const float *a, const float *b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return hsum8(acc);
}

/* h[r] += delta[r] (when delta is given); out[r] = h[r] * rsqrt(mean(h[r]^2) + eps) * w. */
AVX2 void finserve_add_rmsnorm(float *h, const float *delta, const float *w, float eps, float *out, int64_t rows,
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
AVX2 static inline void rope(const float *x, const float *c, const float *s, float *out, int64_t d) {
    int64_t half = d / 2;
    for (int64_t i = 0; i < d; i++) out[i] = x[i] * c[i] + x[(i + half) % d] * s[i];
}

/* e^x for 8 floats: Cody-Waite range reduction and a degree-6 polynomial (Cephes expf), within
   2 ulp of expf over the range softmax and SiLU use; inputs below -87 give 0, above 88 e^88. */
AVX2 static inline __m256 exp8(__m256 x) {
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
AVX2 static void exp_inplace(float *v, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, exp8(_mm256_loadu_ps(v + i)));
    if (i < n) {
        float t[8] = {0};
        for (int64_t j = i; j < n; j++) t[j - i] = v[j];
        _mm256_storeu_ps(t, exp8(_mm256_loadu_ps(t)));
        for (int64_t j = i; j < n; j++) v[j] = t[j - i];
    }
}

struct attend_job {
    const float *q, *cos_t, *sin_t, *kc, *vc;
    const int64_t *pos;
    const uint8_t *valid;
    float *out;
    float scale;
    int64_t cap, total, H, KV, D;
    atomic_int failed;
};

/* Attention for rows b and key/value heads g, bg = b * KV + g in [begin, end). */
AVX2 static void attend_range(void *ctx, int64_t begin, int64_t end) {
    struct attend_job *j = ctx;
    const float *q = j->q, *cos_t = j->cos_t, *sin_t = j->sin_t, *kc = j->kc, *vc = j->vc;
    const int64_t *pos = j->pos;
    const uint8_t *valid = j->valid;
    float *out = j->out, scale = j->scale;
    int64_t cap = j->cap, total = j->total, H = j->H, KV = j->KV, D = j->D, group = H / KV;
    for (int64_t bg = begin; bg < end; bg++) {
        int64_t b = bg / KV, g = bg % KV;
        const float *c = cos_t + pos[b] * D, *s = sin_t + pos[b] * D;
        const float *kb = kc + (b * KV + g) * cap * D, *vb = vc + (b * KV + g) * cap * D;
        const uint8_t *ok = valid ? valid + b * total : 0;
        float *qr = malloc(sizeof(float) * (size_t)(group * (D + total)));
        if (!qr) {
            atomic_store(&j->failed, 1);
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
}

/* One decode step of attention for every row b and query head h:
   q [B, H*D], k and v [B, KV*D] (this step's projections); kc, vc the layer's caches
   [B, KV, cap, D]; the new key (rotated) and value are written at column `col`, then the query
   (rotated) attends over columns 0..col where valid[b, j] (valid NULL: all). out [B, H*D].
   The query heads that share a key/value head are done together, so each cached row is read once.
   The scores live on the heap: they grow with the context, and a pool worker's (or a Python
   thread's) stack can be far smaller than group * (col + 1) floats. Returns 0, or -1 when that
   allocation failed (out is then incomplete). */
AVX2 int finserve_rope_attend(const float *q, const float *k, const float *v, const float *cos_t,
                          const float *sin_t, const int64_t *pos, float *kc, float *vc, int64_t cap,
                          int64_t col, const uint8_t *valid, float scale, float *out, int64_t B, int64_t H,
                          int64_t KV, int64_t D, int threads) {
    for (int64_t b = 0; b < B; b++) {
        const float *c = cos_t + pos[b] * D, *s = sin_t + pos[b] * D;
        for (int64_t g = 0; g < KV; g++) {
            float *kdst = kc + ((b * KV + g) * cap + col) * D, *vdst = vc + ((b * KV + g) * cap + col) * D;
            rope(k + (b * KV + g) * D, c, s, kdst, D);
            for (int64_t i = 0; i < D; i++) vdst[i] = v[(b * KV + g) * D + i];
        }
    }
    struct attend_job job = {q, cos_t, sin_t, kc, vc, pos, valid, out, scale, cap, col + 1, H, KV, D, 0};
    parallel(attend_range, &job, B * KV, threads);
    return atomic_load(&job.failed) ? -1 : 0;
}

/* g = silu(g) * u = g / (1 + e^-g) * u, in place, 8 at a time (n a multiple of 8). */
AVX2 void finserve_silu_mul(float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(zero, x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
}

/* ---- a whole decode step in one call ----

   Every decoder layer of a float32 decode step (one position per row), the same kernels in the same order
   as Python's per-operation path (lean_forward), so the base model's logits are bit for bit the same; only
   the ~330 Python-to-C crossings of a step go (about 10 us each with their checks: a third of a 135M
   model's step at batch 1). LoRA updates are added here too, per run of rows, so a batch mixing adapters
   takes this path as well. The caller checks every size once per batch composition (cpu_kernels.py). */

/* One run of rows [lo, hi) through one adapter on one projection: y += scaling * (x A^T) B^T, with A
   [rank, K] and B^T [rank, N] row-major. */
struct fs_lora {
    const float *a, *bt;
    int64_t lo, hi, rank;
    float scaling;
};

/* One projection: int8 rows in 8-row groups (kind 0; the only kind so far), their scales, the bias
   (or NULL) and the LoRA runs that touch it. */
struct fs_proj {
    const void *w;
    const float *s, *bias;
    const struct fs_lora *lora;
    int64_t n, k, nlora, kind;
};

struct fs_layer {
    const float *in_norm, *post_norm;
    struct fs_proj q, k, v, o, gate, up, down;
    float in_eps, post_eps;
};

/* y[m] += (scaling * (x[m] . A[j])) * B^T[j] over j, for each row m of the run: the rank-sized
   intermediate in fixed order, so a row's update never depends on its batch. */
AVX2 static int lora_add(const struct fs_lora *r, const float *x, int64_t K, float *y, int64_t N) {
    float t[256];
    if (r->rank > 256) return -2;
    for (int64_t m = r->lo; m < r->hi; m++) {
        for (int64_t j = 0; j < r->rank; j++) t[j] = dot(x + m * K, r->a + j * K, K) * r->scaling;
        float *ym = y + m * N;
        for (int64_t n = 0; n < N; n += 8) {
            __m256 acc = _mm256_loadu_ps(ym + n);
            for (int64_t j = 0; j < r->rank; j++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(t[j]), _mm256_loadu_ps(r->bt + j * N + n), acc);
            _mm256_storeu_ps(ym + n, acc);
        }
    }
    return 0;
}

int finserve_woq_q4_avx2(const float *x, int64_t ldx, const uint8_t *w, const float *b, float *y, int64_t ldy,
                         int64_t M, int64_t N, int64_t K, int threads); /* the q4 section, at the end */

/* kind 0: int8 rows (w, s); kind 1: the file's 4-bit blocks (w from finserve_q4_pack, s unused). */
static int proj_run(group_fn group, const struct fs_proj *p, const float *x, float *y, int64_t B, int threads) {
    if (p->kind == 1) {
        if (finserve_woq_q4_avx2(x, p->k, p->w, p->bias, y, p->n, B, p->n, p->k, threads)) return -1;
    } else if (p->kind != 0) {
        return -2;
    } else {
        woq_run(group, x, p->k, p->w, p->s, p->bias, y, p->n, B, p->n, p->k, threads);
    }
    for (int64_t r = 0; r < p->nlora; r++)
        if (lora_add(p->lora + r, x, p->k, y, p->n)) return -2;
    return 0;
}

/* hidden [B, E] (updated in place, the residual stream) through `layers` layers; out [B, E] is the final
   RMSNorm of it (the lm_head's input). kc, vc: every layer's cache, layer_stride floats apart, each
   [B, KV, cap, D]; the step writes column `col` and attends over 0..col where valid[b, j] (NULL: all).
   Returns 0, -1 when memory ran out, -2 for a projection it cannot run (kind, rank); out is then
   incomplete and the caller raises. */
int finserve_decode_step(const struct fs_layer *layers, int64_t nlayers, int variant, float *hidden,
                         const float *final_norm, float final_eps, float *out, const float *cos_t,
                         const float *sin_t, const int64_t *pos, float *kc, float *vc, int64_t layer_stride,
                         int64_t cap, int64_t col, const uint8_t *valid, float scale, int64_t B, int64_t E,
                         int64_t H, int64_t KV, int64_t D, int64_t I, int threads) {
    group_fn group = variant == 1 ? group_avx512 : group_avx2;
    float *arena = malloc(sizeof(float) * (size_t)(B * (3 * E + 2 * H * D + 2 * KV * D + 2 * I)));
    if (!arena) return -1;
    float *x = arena, *q = x + B * E, *k = q + B * H * D, *v = k + B * KV * D, *att = v + B * KV * D;
    float *o = att + B * H * D, *g = o + B * E, *u = g + B * I, *dn = u + B * I;
    const float *delta = 0;
    int rc = 0;
    for (int64_t l = 0; l < nlayers && !rc; l++) {
        const struct fs_layer *L = layers + l;
        finserve_add_rmsnorm(hidden, delta, L->in_norm, L->in_eps, x, B, E);
        rc = proj_run(group, &L->q, x, q, B, threads);
        rc = rc ? rc : proj_run(group, &L->k, x, k, B, threads);
        rc = rc ? rc : proj_run(group, &L->v, x, v, B, threads);
        if (rc) break;
        rc = finserve_rope_attend(q, k, v, cos_t, sin_t, pos, kc + l * layer_stride, vc + l * layer_stride, cap,
                                  col, valid, scale, att, B, H, KV, D, threads);
        rc = rc ? rc : proj_run(group, &L->o, att, o, B, threads);
        if (rc) break;
        finserve_add_rmsnorm(hidden, o, L->post_norm, L->post_eps, x, B, E);
        rc = proj_run(group, &L->gate, x, g, B, threads);
        rc = rc ? rc : proj_run(group, &L->up, x, u, B, threads);
        if (rc) break;
        finserve_silu_mul(g, u, B * I);
        rc = proj_run(group, &L->down, g, dn, B, threads);
        delta = dn;
    }
    if (!rc) finserve_add_rmsnorm(hidden, delta, final_norm, final_eps, out, B, E);
    free(arena);
    return rc;
}

/* ---- GGUF blocks to int8 rows (model load) ----

   A Linear weight stored in GGUF blocks (Q4_0, Q4_1, Q8_0: 32 values per block) becomes the engine's
   int8 rows with one scale each, without a float32 copy of the matrix: each row is dequantized into a
   row-sized buffer, then quantized. The arithmetic is the one the Python path runs, operation by
   operation, so the bytes are the same: the `gguf` package's numpy dequantization (Q8_0 x * d, Q4_0
   d * (q - 8), Q4_1 (d * q) + m, each product and sum rounded to float32; -ffp-contract=off keeps the
   Q4_1 multiply and add apart), then cpu_kernels.quantize (scale = max |w| / 127 clamped below at 1e-12,
   q = round-half-even(w / scale) clamped to [-127, 127]). Division and rounding are exact IEEE operations,
   so the AVX2 code the compiler makes of these loops gives the bytes scalar code would. Output is
   row-major; Python applies the q/k row permutation and the 8-row blocked layout (int8, cheap). */

#define GGML_Q4_0 2
#define GGML_Q4_1 3
#define GGML_Q8_0 8

static inline float half_to_float(const uint8_t *p) {
    uint32_t h = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
    uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal half: a normal float */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400u)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Bytes of one 32-value block; 0 for a type this file does not read. */
static int64_t block_bytes(int qtype) {
    switch (qtype) {
    case GGML_Q4_0: return 18;
    case GGML_Q4_1: return 20;
    case GGML_Q8_0: return 34;
    default: return 0;
    }
}

struct rows_job {
    const uint8_t *src;
    int8_t *q;
    float *s;
    int64_t cols, row_bytes;
    int qtype;
    atomic_int failed;
};

AVX2 static void dequant_row(const uint8_t *src, int qtype, int64_t cols, float *restrict out) {
    for (int64_t b = 0; b < cols / 32; b++, out += 32) {
        if (qtype == GGML_Q8_0) {
            const uint8_t *p = src + b * 34;
            float d = half_to_float(p);
            const int8_t *x = (const int8_t *)(p + 2);
            for (int i = 0; i < 32; i++) out[i] = (float)x[i] * d;
        } else if (qtype == GGML_Q4_0) {
            const uint8_t *p = src + b * 18;
            float d = half_to_float(p);
            for (int i = 0; i < 16; i++) {
                out[i] = d * (float)((int)(p[2 + i] & 15) - 8);
                out[i + 16] = d * (float)((int)(p[2 + i] >> 4) - 8);
            }
        } else { /* Q4_1 */
            const uint8_t *p = src + b * 20;
            float d = half_to_float(p), m = half_to_float(p + 2);
            for (int i = 0; i < 16; i++) {
                float lo = d * (float)(p[4 + i] & 15), hi = d * (float)(p[4 + i] >> 4);
                out[i] = lo + m;
                out[i + 16] = hi + m;
            }
        }
    }
}

AVX2 static void quantize_row(const float *restrict w, int64_t cols, int8_t *restrict q, float *s) {
    float amax = 0.f;
    for (int64_t i = 0; i < cols; i++) {
        float a = fabsf(w[i]);
        amax = a > amax ? a : amax;
    }
    float scale = amax / 127.0f;
    if (scale < 1e-12f) scale = 1e-12f;
    *s = scale;
    for (int64_t i = 0; i < cols; i++) {
        float r = nearbyintf(w[i] / scale);
        r = r < -127.f ? -127.f : (r > 127.f ? 127.f : r);
        q[i] = (int8_t)r;
    }
}

static void rows_range(void *ctx, int64_t begin, int64_t end) {
    struct rows_job *j = ctx;
    float *buf = malloc(sizeof(float) * (size_t)j->cols);
    if (!buf) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int64_t r = begin; r < end; r++) {
        dequant_row(j->src + r * j->row_bytes, j->qtype, j->cols, buf);
        quantize_row(buf, j->cols, j->q + r * j->cols, j->s + r);
    }
    free(buf);
}

/* src: `rows` rows of cols / 32 blocks of `qtype`; q [rows, cols] int8 row-major, s [rows]. Returns 0,
   -1 when a buffer could not be allocated, -2 for a type or width it does not read. */
int finserve_gguf_rows_int8(const uint8_t *src, int qtype, int64_t rows, int64_t cols, int8_t *q, float *s,
                            int threads) {
    int64_t bytes = block_bytes(qtype);
    if (!bytes || cols <= 0 || cols % 32) return -2;
    struct rows_job job = {src, q, s, cols, cols / 32 * bytes, qtype, 0};
    parallel(rows_range, &job, rows, threads);
    return atomic_load(&job.failed) ? -1 : 0;
}

/* ---- 4-bit GGUF blocks kept as they are: the q4 matrix kernel ----

   A Linear stored in the file as Q4_0 or Q4_1 blocks (32 values, 4 bits each, a float16 scale d and, for
   Q4_1, a float16 offset m; Q4_0 is d * (q - 8), i.e. m = -8 d) is kept in those bits: 0.625 bytes per
   weight as read by a decode step instead of the int8 rows' 1, and no second rounding. finserve_q4_pack
   repacks the file's rows at load into groups of 8 rows; per (group, 32-value block), 160 bytes:

     8 float16 d (one per row)  |  8 float16 m  |  16 x [8 rows] bytes: row r's byte i of the GGUF block
                                                   (value i in the low nibble, value i + 16 in the high one)

   so one 8-byte load holds value i (and i + 16) of the group's 8 rows, _mm256_cvtph_ps turns 8 scales
   into floats at once, and a group's blocks are read front to back. The 8 lanes of a vector are the
   group's 8 rows (no horizontal sums). Activations stay float32. For output (m, n), per block b in
   increasing order, with xsum_b = the sum of the block's 32 values of x (computed once per call, one
   fixed order):

     lo = sum over i = 0..15 of x[32b + i] * q_i        (FMAs in increasing i)
     hi = sum over i = 0..15 of x[32b + 16 + i] * q_(i+16)
     acc = fma(d_b, lo + hi, acc);  acc = fma(m_b, xsum_b, acc)

   and y = acc (+ bias). Every tile shape below runs exactly this sequence for every (m, n), so a row's
   result does not depend on its batch, the tile or the thread count (-ffp-contract=off keeps lo + hi
   apart). AVX2 + FMA + F16C only: there is no AVX-512 variant of this kernel. */

#define Q4_BLOCK_BYTES 160
#define Q4UNROLL _Pragma("GCC unroll 16")
#define AVX2F16C __attribute__((target("avx2,fma,f16c")))

/* MB rows of x against NG consecutive 8-row groups (MB * NG <= 4 keeps the 2 * MB * NG partial sums, the
   MB * NG accumulators and the weights in the 16 registers; more rows amortise each nibble conversion). */
#define Q4TILE(MB, NG)                                                                                           \
    AVX2F16C static void q4tile_##MB##x##NG(const float *x, int64_t ldx, const float *xs, int64_t kb,            \
                                            const uint8_t *w, const float *b, float *y, int64_t ldy) {           \
        const __m256i low = _mm256_set1_epi32(15);                                                               \
        __m256 acc[MB][NG];                                                                                      \
        Q4UNROLL for (int m = 0; m < MB; m++)                                                                    \
            Q4UNROLL for (int g = 0; g < NG; g++) acc[m][g] = _mm256_setzero_ps();                               \
        for (int64_t blk = 0; blk < kb; blk++) {                                                                 \
            __m256 lo[MB][NG], hi[MB][NG];                                                                       \
            Q4UNROLL for (int m = 0; m < MB; m++)                                                                \
                Q4UNROLL for (int g = 0; g < NG; g++) lo[m][g] = hi[m][g] = _mm256_setzero_ps();                 \
            const float *xb = x + blk * 32;                                                                      \
            const uint8_t *wb = w + blk * Q4_BLOCK_BYTES;                                                        \
            if (MB == 1) /* decode, memory-bound: start the next NG groups' streams (a hint: never faults) */    \
                Q4UNROLL for (int g = 0; g < NG; g++) {                                                          \
                    const char *next = (const char *)((uintptr_t)wb + (uintptr_t)((NG + g) * kb * Q4_BLOCK_BYTES)); \
                    _mm_prefetch(next, _MM_HINT_T0);                                                             \
                    _mm_prefetch(next + 64, _MM_HINT_T0);                                                        \
                    _mm_prefetch(next + 128, _MM_HINT_T0);                                                       \
                }                                                                                                \
            Q4UNROLL for (int i = 0; i < 16; i++) {                                                              \
                Q4UNROLL for (int g = 0; g < NG; g++) {                                                          \
                    __m256i q = _mm256_cvtepu8_epi32(                                                            \
                        _mm_loadl_epi64((const __m128i *)(wb + g * kb * Q4_BLOCK_BYTES + 32 + i * 8)));          \
                    __m256 ql = _mm256_cvtepi32_ps(_mm256_and_si256(q, low));                                    \
                    __m256 qh = _mm256_cvtepi32_ps(_mm256_srli_epi32(q, 4));                                     \
                    Q4UNROLL for (int m = 0; m < MB; m++) {                                                      \
                        lo[m][g] = _mm256_fmadd_ps(_mm256_broadcast_ss(xb + m * ldx + i), ql, lo[m][g]);         \
                        hi[m][g] = _mm256_fmadd_ps(_mm256_broadcast_ss(xb + m * ldx + 16 + i), qh,               \
                                                   hi[m][g]);                                                    \
                    }                                                                                            \
                }                                                                                                \
            }                                                                                                    \
            Q4UNROLL for (int g = 0; g < NG; g++) {                                                              \
                const uint8_t *sb = wb + g * kb * Q4_BLOCK_BYTES;                                                \
                __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));                                \
                __m256 mn = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + 16)));                        \
                Q4UNROLL for (int m = 0; m < MB; m++) {                                                          \
                    acc[m][g] = _mm256_fmadd_ps(d, _mm256_add_ps(lo[m][g], hi[m][g]), acc[m][g]);                \
                    acc[m][g] = _mm256_fmadd_ps(mn, _mm256_set1_ps(xs[m * kb + blk]), acc[m][g]);                \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
        Q4UNROLL for (int m = 0; m < MB; m++)                                                                    \
            Q4UNROLL for (int g = 0; g < NG; g++) {                                                              \
                __m256 v = acc[m][g];                                                                            \
                if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + g * 8));                                         \
                _mm256_storeu_ps(y + m * ldy + g * 8, v);                                                        \
            }                                                                                                    \
    }

Q4TILE(1, 4) Q4TILE(1, 1) Q4TILE(2, 2) Q4TILE(2, 1) Q4TILE(3, 1) Q4TILE(4, 1)

typedef void (*q4tile_fn)(const float *, int64_t, const float *, int64_t, const uint8_t *, const float *,
                          float *, int64_t);
/* By rows of x (1..4): the widest tile (in groups) and its width; the one-group tile for the remainder. */
static const q4tile_fn q4wide[5] = {0, q4tile_1x4, q4tile_2x2, q4tile_3x1, q4tile_4x1};
static const int q4width[5] = {0, 4, 2, 1, 1};
static const q4tile_fn q4narrow[5] = {0, q4tile_1x1, q4tile_2x1, q4tile_3x1, q4tile_4x1};

struct q4_job {
    const float *x, *xs, *b;
    const uint8_t *w;
    float *y;
    int64_t ldx, ldy, M, kb;
};

/* Groups [begin, end), 4 at a time (their weights stay in cache while every row of x passes). */
static void q4_groups(void *ctx, int64_t begin, int64_t end) {
    const struct q4_job *j = ctx;
    int64_t gbytes = j->kb * Q4_BLOCK_BYTES;
    for (int64_t g0 = begin; g0 < end; g0 += 4) {
        int64_t gend = g0 + 4 < end ? g0 + 4 : end;
        for (int64_t m0 = 0; m0 < j->M; m0 += 4) {
            int mb = (int)(j->M - m0 < 4 ? j->M - m0 : 4);
            const float *x = j->x + m0 * j->ldx, *xs = j->xs + m0 * j->kb;
            float *y = j->y + m0 * j->ldy;
            int64_t g = g0;
            for (; g + q4width[mb] <= gend; g += q4width[mb])
                q4wide[mb](x, j->ldx, xs, j->kb, j->w + g * gbytes, j->b ? j->b + g * 8 : 0, y + g * 8, j->ldy);
            for (; g < gend; g++)
                q4narrow[mb](x, j->ldx, xs, j->kb, j->w + g * gbytes, j->b ? j->b + g * 8 : 0, y + g * 8, j->ldy);
        }
    }
}

/* Sum of each 32-value block of each row of x, always (v0 + v1) + (v2 + v3) then hsum8. */
AVX2 static void q4_block_sums(const float *x, int64_t ldx, int64_t M, int64_t kb, float *xs) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t blk = 0; blk < kb; blk++) {
            const float *p = x + m * ldx + blk * 32;
            __m256 a = _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8));
            __m256 c = _mm256_add_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24));
            xs[m * kb + blk] = hsum8(_mm256_add_ps(a, c));
        }
}

/* y[M, N] (row stride ldy) = x[M, K] (row stride ldx) @ W^T (+ b), W packed by finserve_q4_pack; N a multiple
   of 8, K of 32. Returns 0, or -1 when the block sums' buffer could not be allocated (y untouched). */
int finserve_woq_q4_avx2(const float *x, int64_t ldx, const uint8_t *w, const float *b, float *y, int64_t ldy,
                         int64_t M, int64_t N, int64_t K, int threads) {
    int64_t kb = K / 32;
    float *xs = malloc(sizeof(float) * (size_t)(M * kb > 0 ? M * kb : 1));
    if (!xs) return -1;
    q4_block_sums(x, ldx, M, kb, xs);
    struct q4_job job = {x, xs, b, w, y, ldx, ldy, M, kb};
    parallel(q4_groups, &job, N / 8, threads);
    free(xs);
    return 0;
}

struct q4_pack_job {
    const uint8_t *src;
    const int64_t *order;
    uint8_t *dst;
    int64_t kb, row_bytes;
    int qtype;
    atomic_int overflow;
};

AVX2F16C static void q4_pack_groups(void *ctx, int64_t begin, int64_t end) {
    struct q4_pack_job *j = ctx;
    int head = j->qtype == GGML_Q4_1 ? 4 : 2, src_bytes = j->qtype == GGML_Q4_1 ? 20 : 18;
    for (int64_t g = begin; g < end; g++)
        for (int r = 0; r < 8; r++) {
            int64_t row = g * 8 + r;
            const uint8_t *s = j->src + (j->order ? j->order[row] : row) * j->row_bytes;
            for (int64_t blk = 0; blk < j->kb; blk++, s += src_bytes) {
                uint8_t *o = j->dst + (g * j->kb + blk) * Q4_BLOCK_BYTES;
                memcpy(o + 2 * r, s, 2); /* d as stored */
                if (j->qtype == GGML_Q4_1) {
                    memcpy(o + 16 + 2 * r, s + 2, 2);
                } else { /* m = -8 d: a power of two times d, exact in float16 unless it overflows */
                    float m = -8.0f * half_to_float(s);
                    uint16_t h = (uint16_t)_cvtss_sh(m, _MM_FROUND_TO_NEAREST_INT);
                    if (isfinite(half_to_float(s)) && (h & 0x7c00u) == 0x7c00u) atomic_store(&j->overflow, 1);
                    memcpy(o + 16 + 2 * r, &h, 2);
                }
                for (int i = 0; i < 16; i++) o[32 + i * 8 + r] = s[head + i];
            }
        }
}

/* src: `rows` rows (a multiple of 8) of cols / 32 Q4_0 or Q4_1 blocks; order: the source row of each
   output row (NULL: the same row), which is how Llama's q/k permutation moves whole rows; dst: rows / 8 *
   cols / 32 * 160 bytes. Returns 0, -2 for a type or size it does not take, -3 when a Q4_0 block's -8 d
   overflows float16 (dst is then unusable: keep that tensor as int8 rows). */
int finserve_q4_pack(const uint8_t *src, int qtype, const int64_t *order, int64_t rows, int64_t cols,
                     uint8_t *dst, int threads) {
    if ((qtype != GGML_Q4_0 && qtype != GGML_Q4_1) || rows <= 0 || rows % 8 || cols <= 0 || cols % 32) return -2;
    struct q4_pack_job job = {src, order, dst, cols / 32, cols / 32 * block_bytes(qtype), qtype, 0};
    parallel(q4_pack_groups, &job, rows / 8, threads);
    return atomic_load(&job.overflow) ? -3 : 0;
}


#endif /* x86-64 */
