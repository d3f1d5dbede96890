/* The q4 kernel against the int8 kernel, streaming a SmolLM2-sized set of matrices from memory (30 layers of
   576x576, 192x576, 192x576, 576x576, 1536x576, 1536x576, 576x1536, and the 49152x576 lm_head: 134 M weights,
   each matrix allocated on its own so nothing stays in cache), at 1, 8 and 271 rows of x, 1 and 2 threads; the
   best of 10 passes (2 at 271 rows). Random bytes: timing only. Beside them "llq", a prototype of the
   llama.cpp-style alternative (activations quantized per 32-value block to int8, _mm256_maddubs_epi16 on the
   nibbles, the same 160-byte blocks read in another byte order: timing only), measured to decide between the
   two designs; it is not in the library.

     gcc -O3 -g0 -ffp-contract=off -pthread -I serving/inference/csrc bench/c/q4_stream.c -o /tmp/q4_stream -lm
     /tmp/q4_stream [LMQ4 [ROW_SETS [HOT]]]

   LMQ4 1: the lm_head as q4 too (SmolLM2's is int8: its tied embedding is Q8_0); ROW_SETS: how many of 1, 8,
   271 rows; HOT 1: one layer's matrices over and over (cache-resident: the kernels' compute alone). */

#include "cpu_kernels.c"
#include <stdio.h>

/* llama.cpp-style comparison: activations quantized per 32-value block to int8 (per row), maddubs. Prototype only. */
struct llq_job { const int8_t *xq; const float *dx, *xs; const uint8_t *w; float *y; int64_t M, kb, ldy; };
AVX2F16C static void llq_tile(const struct llq_job *j, int64_t g0, int ng, int64_t m) {
    const __m256i low = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const int8_t *xq = j->xq + m * j->kb * 32;
    for (int64_t blk = 0; blk < j->kb; blk++) {
        __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
        const int8_t *xb = xq + blk * 32;
        _Pragma("GCC unroll 4") for (int t = 0; t < 4; t++) {
            int32_t a, c; memcpy(&a, xb + 4 * t, 4); memcpy(&c, xb + 16 + 4 * t, 4);
            __m256i xl = _mm256_set1_epi32(a), xh = _mm256_set1_epi32(c);
            _Pragma("GCC unroll 4") for (int g = 0; g < ng; g++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(j->w + ((g0 + g) * j->kb + blk) * 160 + 32 + 32 * t));
                __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                __m256i p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, xl), ones),
                                             _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xh), ones));
                s[g] = _mm256_add_epi32(s[g], p);
            }
        }
        __m256 dx = _mm256_set1_ps(j->dx[m * j->kb + blk]), xs = _mm256_set1_ps(j->xs[m * j->kb + blk]);
        _Pragma("GCC unroll 4") for (int g = 0; g < ng; g++) {
            const uint8_t *sb = j->w + ((g0 + g) * j->kb + blk) * 160;
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)sb));
            __m256 mn = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sb + 16)));
            acc[g] = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(s[g]), acc[g]);
            acc[g] = _mm256_fmadd_ps(mn, xs, acc[g]);
        }
    }
    for (int g = 0; g < ng; g++) _mm256_storeu_ps(j->y + m * j->ldy + (g0 + g) * 8, acc[g]);
}
static void llq_groups(void *ctx, int64_t begin, int64_t end) {
    const struct llq_job *j = ctx;
    for (int64_t g0 = begin; g0 < end; g0 += 4) {
        int ng = end - g0 < 4 ? (int)(end - g0) : 4;
        for (int64_t m = 0; m < j->M; m++) llq_tile(j, g0, ng, m);
    }
}
AVX2 static void llq(const float *x, const uint8_t *w, float *y, int64_t M, int64_t N, int64_t K, int threads) {
    int64_t kb = K / 32;
    int8_t *xq = malloc(M * K); float *dx = malloc(4 * M * kb), *xs = malloc(4 * M * kb);
    q4_block_sums(x, K, M, kb, xs);
    for (int64_t i = 0; i < M * kb; i++) {
        const float *p = x + i * 32; float amax = 0;
        for (int k = 0; k < 32; k++) amax = fabsf(p[k]) > amax ? fabsf(p[k]) : amax;
        float d = amax / 127.f, id = d ? 1.f / d : 0.f; dx[i] = d;
        for (int k = 0; k < 32; k++) xq[i * 32 + k] = (int8_t)nearbyintf(p[k] * id);
    }
    struct llq_job job = {xq, dx, xs, w, y, M, kb, N};
    parallel(llq_groups, &job, N / 8, threads);
    free(xq); free(dx); free(xs);
}

/* SmolLM2-sized set: per layer 576x576, 192x576, 192x576, 576x576, 1536x576, 1536x576, 576x1536; + 49152x576 */
typedef struct { int64_t n, k; int8_t *w8; float *s; uint8_t *w4; } mat;
static double now(void){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc, char **argv) {
    int nm = 0; mat ms[30*7+1];
    int64_t shapes[7][2] = {{576,576},{192,576},{192,576},{576,576},{1536,576},{1536,576},{576,1536}};
    for (int l=0;l<30;l++) for(int i=0;i<7;i++){ms[nm].n=shapes[i][0]; ms[nm].k=shapes[i][1]; nm++;}
    ms[nm].n=49152; ms[nm].k=576; nm++;
    int lmq4 = argc > 1 ? atoi(argv[1]) : 0; int hot = argc > 3 ? atoi(argv[3]) : 0; /* lm_head as q4 too */
    srand(1);
    for (int i=0;i<nm;i++){ int64_t n=ms[i].n,k=ms[i].k;
        ms[i].w8=malloc(n*k); ms[i].s=malloc(4*n); for(int64_t j=0;j<n*k;j++) ms[i].w8[j]=(rand()%255)-127; for(int64_t j=0;j<n;j++) ms[i].s[j]=0.01f;
        int64_t b=n/8*k/32*160; ms[i].w4=malloc(b); for(int64_t j=0;j<b;j++) ms[i].w4[j]=rand();
        for(int64_t g=0; g<b; g+=160) for(int r=0;r<16;r++){ ms[i].w4[g+2*r]=0x00; ms[i].w4[g+2*r+1]=0x20; } /* d,m = 0.0078 */
    }
    int Ms[] = {1, 8, 271}; int nMs = argc > 2 ? atoi(argv[2]) : 3;
    float *x = malloc(4*271*1536), *y = malloc(4*271*49152);
    for (int i=0;i<271*1536;i++) x[i]=(rand()%1000)/1000.0f-0.5f;
    for (int mi=0; mi<nMs; mi++) for (int th=1; th<=2; th++) {
        int M = Ms[mi]; int reps = M==271? 2 : 10;
        for (int kind=0; kind<3; kind++) {
            double best=1e9;
            for (int r=0;r<reps;r++){ double t0=now();
                for (int ii=0;ii<nm;ii++){ int i = hot ? ii % 7 : ii;
                    int useq4 = kind>=1 && (i<nm-1 || lmq4);
                    if (useq4 && kind == 2) llq(x, ms[i].w4, y, M, ms[i].n, ms[i].k, th); else if (useq4) finserve_woq_q4_avx2(x, ms[i].k, ms[i].w4, 0, y, ms[i].n, M, ms[i].n, ms[i].k, th);
                    else finserve_woq_int8_avx2(x, ms[i].k, ms[i].w8, ms[i].s, 0, y, ms[i].n, M, ms[i].n, ms[i].k, th);
                }
                double t=now()-t0; if(t<best)best=t; }
            printf("M=%3d threads=%d %s: %.2f ms/pass\n", M, th, kind==2?"llq ":kind?"q4  ":"int8", best*1e3); fflush(stdout);
        }
    }
}
