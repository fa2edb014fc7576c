/* metatrain's GEMM kernels and CPU feature detection; see include/mt_kernels.h for the contract. */
#include "mt_kernels.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* No multiply-add is ever fused unless a kernel asks for it (MT_FUSED): results must not depend on what
 * the compiler chose to contract. */
#pragma clang fp contract(off)

/* ---- CPU features ---------------------------------------------------------------------------------- */

static void cpuid(unsigned leaf, unsigned subleaf, unsigned r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(subleaf));
}

static uint64_t xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static unsigned detect_features(void) {
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    unsigned features = MT_CPU_SSE2; /* every x86-64 CPU */
    if (max_leaf < 1) return features;
    cpuid(1, 0, r);
    const int osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, fma = (r[2] >> 12) & 1;
    if (!osxsave || !avx) return features;
    /* The OS must save the registers too: XMM|YMM for AVX, plus opmask|ZMM_Hi256|Hi16_ZMM for AVX-512. */
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return features;
    features |= MT_CPU_AVX;
    if (fma) features |= MT_CPU_FMA;
    if (max_leaf < 7) return features;
    cpuid(7, 0, r);
    if ((r[1] >> 5) & 1) features |= MT_CPU_AVX2;
    if (((r[1] >> 16) & 1) && (xcr0 & 0xe6) == 0xe6) features |= MT_CPU_AVX512F;
    return features;
}

static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static unsigned features_value;
static void features_init(void) { features_value = detect_features(); }

unsigned mt_cpu_features(void) {
    pthread_once(&features_once, features_init);
    return features_value;
}

unsigned mt_kernel_requirements(mt_kernel kernel) {
    switch (kernel) {
    case MT_KERNEL_AVX512_FMA: return MT_CPU_AVX512F | MT_CPU_FMA;
    case MT_KERNEL_AVX2_FMA: return MT_CPU_AVX2 | MT_CPU_FMA;
    case MT_KERNEL_AVX512: return MT_CPU_AVX512F;
    case MT_KERNEL_AVX: return MT_CPU_AVX;
    case MT_KERNEL_SSE2: return MT_CPU_SSE2;
    default: return ~0u;
    }
}

void mt_cpu_brand(char *buffer, int capacity) {
    if (capacity <= 0) return;
    buffer[0] = 0;
    unsigned r[4];
    cpuid(0x80000000u, 0, r);
    if (r[0] < 0x80000004u || capacity < 49) return;
    char brand[49];
    for (unsigned leaf = 0; leaf < 3; leaf++) {
        cpuid(0x80000002u + leaf, 0, r);
        memcpy(brand + leaf * 16, r, 16);
    }
    brand[48] = 0;
    const char *start = brand;
    while (*start == ' ') start++;
    size_t length = strlen(start);
    while (length > 0 && start[length - 1] == ' ') length--;
    memcpy(buffer, start, length);
    buffer[length] = 0;
}

/* ---- Scratch for packed panels: one grow-only buffer per thread, freed when the thread ends ---------- */

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
typedef struct { float *data; size_t capacity; } scratch_buffer;

static void scratch_free(void *p) {
    scratch_buffer *s = p;
    free(s->data);
    free(s);
}
static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

/* At least `count` floats, valid until this thread's next call. Aborts only if memory is exhausted. */
static float *mt_scratch(size_t count) {
    pthread_once(&scratch_once, scratch_init);
    scratch_buffer *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) abort();
        pthread_setspecific(scratch_key, s);
    }
    if (s->capacity < count) {
        free(s->data);
        size_t capacity = count < 4096 ? 4096 : count;
        s->data = aligned_alloc(64, (capacity * sizeof(float) + 63) / 64 * 64);
        if (!s->data) abort();
        s->capacity = capacity;
    }
    return s->data;
}

/* ---- The kernels --------------------------------------------------------------------------------------- */

#define MT_SUFFIX avx512_fma
#define MT_TARGET "avx512f,avx2,fma"
#define MT_W 16
#define MT_FUSED 1
#include "mt_gemm_body.h"
#undef MT_SUFFIX
#undef MT_TARGET
#undef MT_W
#undef MT_FUSED

#define MT_SUFFIX avx2_fma
#define MT_TARGET "avx2,fma"
#define MT_W 8
#define MT_FUSED 1
#include "mt_gemm_body.h"
#undef MT_SUFFIX
#undef MT_TARGET
#undef MT_W
#undef MT_FUSED

#define MT_SUFFIX avx512
#define MT_TARGET "avx512f"
#define MT_W 16
#define MT_FUSED 0
#include "mt_gemm_body.h"
#undef MT_SUFFIX
#undef MT_TARGET
#undef MT_W
#undef MT_FUSED

#define MT_SUFFIX avx
#define MT_TARGET "avx"
#define MT_W 8
#define MT_FUSED 0
#include "mt_gemm_body.h"
#undef MT_SUFFIX
#undef MT_TARGET
#undef MT_W
#undef MT_FUSED

#define MT_SUFFIX sse2
#define MT_TARGET "sse2"
#define MT_W 4
#define MT_FUSED 0
#include "mt_gemm_body.h"
#undef MT_SUFFIX
#undef MT_TARGET
#undef MT_W
#undef MT_FUSED

void mt_sgemm_epilogue(mt_kernel kernel, int transpose_a, int transpose_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc,
                       const mt_epilogue *e) {
    if (m <= 0 || n <= 0) return;
    switch (kernel) {
    case MT_KERNEL_AVX512_FMA: gemm_avx512_fma(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, e); break;
    case MT_KERNEL_AVX2_FMA: gemm_avx2_fma(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, e); break;
    case MT_KERNEL_AVX512: gemm_avx512(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, e); break;
    case MT_KERNEL_AVX: gemm_avx(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, e); break;
    default: gemm_sse2(transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, e); break;
    }
}

void mt_sgemm(mt_kernel kernel, int transpose_a, int transpose_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    mt_sgemm_epilogue(kernel, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0);
}

/* ---- Adam ------------------------------------------------------------------------------------------------ */

/* One Adam step, element by element with the expression order of NeuralNet.adamStep:
 *   m = b1·m + (1−b1)·g;  v = b2·v + ((1−b2)·g)·g;  θ = θ − (step_size·m) / (√v · inv_bc2_sqrt + eps)
 * Multiply, add, divide and square root are correctly rounded in IEEE arithmetic and nothing is fused, so
 * every vector width gives the same bits: the widest the CPU has is used. */
#define MT_ADAM(SUFFIX, TARGET, W)                                                                              \
    __attribute__((target(TARGET))) static void adam_##SUFFIX(                                                   \
        float *theta, const float *g, float *m, float *v, long count, float b1, float b2, float eps,            \
        float step_size, float inv_bc2_sqrt) {                                                                  \
        typedef float vec __attribute__((ext_vector_type(W)));                                                 \
        const float c1 = 1 - b1, c2 = 1 - b2;                                                                   \
        long i = 0;                                                                                             \
        for (; i + W <= count; i += W) {                                                                        \
            vec gi, mi, vi, ti;                                                                                 \
            __builtin_memcpy(&gi, g + i, sizeof gi);                                                            \
            __builtin_memcpy(&mi, m + i, sizeof mi);                                                            \
            __builtin_memcpy(&vi, v + i, sizeof vi);                                                            \
            __builtin_memcpy(&ti, theta + i, sizeof ti);                                                        \
            mi = b1 * mi + c1 * gi;                                                                             \
            vi = b2 * vi + c2 * gi * gi;                                                                        \
            ti = ti - step_size * mi / (__builtin_elementwise_sqrt(vi) * inv_bc2_sqrt + eps);                   \
            __builtin_memcpy(m + i, &mi, sizeof mi);                                                            \
            __builtin_memcpy(v + i, &vi, sizeof vi);                                                            \
            __builtin_memcpy(theta + i, &ti, sizeof ti);                                                        \
        }                                                                                                       \
        for (; i < count; i++) {                                                                                \
            const float gi = g[i];                                                                              \
            m[i] = b1 * m[i] + c1 * gi;                                                                         \
            v[i] = b2 * v[i] + c2 * gi * gi;                                                                    \
            theta[i] = theta[i] - step_size * m[i] / (__builtin_sqrtf(v[i]) * inv_bc2_sqrt + eps);              \
        }                                                                                                       \
    }

MT_ADAM(avx512, "avx512f", 16)
MT_ADAM(avx, "avx", 8)
MT_ADAM(sse2, "sse2", 4)

void mt_adam_step(float *theta, const float *gradient, float *m, float *v, long count, float beta1, float beta2,
                  float epsilon, float step_size, float inv_bc2_sqrt) {
    const unsigned f = mt_cpu_features();
    if (f & MT_CPU_AVX512F) adam_avx512(theta, gradient, m, v, count, beta1, beta2, epsilon, step_size, inv_bc2_sqrt);
    else if (f & MT_CPU_AVX) adam_avx(theta, gradient, m, v, count, beta1, beta2, epsilon, step_size, inv_bc2_sqrt);
    else adam_sse2(theta, gradient, m, v, count, beta1, beta2, epsilon, step_size, inv_bc2_sqrt);
}

/* mt_copy_within: 4 vectors per step, one test per step (NaN compares false, so it fails as an out-of-bound value
 * does); the step that fails is re-read one value at a time to find the first. Only copies and compares, so every
 * width gives the same answer: the widest the CPU has is used. */
#define MT_WITHIN(SUFFIX, TARGET, W)                                                                            \
    __attribute__((target(TARGET))) static long within_##SUFFIX(float *dst, const unsigned char *src, long count, \
                                                                  float bound) {                                 \
        typedef float vec __attribute__((ext_vector_type(W)));                                                 \
        typedef int mask __attribute__((ext_vector_type(W)));                                                  \
        long i = 0;                                                                                             \
        for (; i + 4 * W <= count; i += 4 * W) {                                                                \
            vec a, b, c, d;                                                                                     \
            __builtin_memcpy(&a, src + 4 * i, sizeof a);                                                        \
            __builtin_memcpy(&b, src + 4 * (i + W), sizeof b);                                                  \
            __builtin_memcpy(&c, src + 4 * (i + 2 * W), sizeof c);                                              \
            __builtin_memcpy(&d, src + 4 * (i + 3 * W), sizeof d);                                              \
            const mask ok = (a <= bound) & (a >= -bound) & (b <= bound) & (b >= -bound) & (c <= bound) &       \
                            (c >= -bound) & (d <= bound) & (d >= -bound);                                       \
            if (!__builtin_reduce_and(ok)) break;                                                               \
            if (dst) {                                                                                          \
                __builtin_memcpy(dst + i, &a, sizeof a);                                                        \
                __builtin_memcpy(dst + i + W, &b, sizeof b);                                                    \
                __builtin_memcpy(dst + i + 2 * W, &c, sizeof c);                                                \
                __builtin_memcpy(dst + i + 3 * W, &d, sizeof d);                                                \
            }                                                                                                   \
        }                                                                                                       \
        for (; i < count; i++) {                                                                                \
            float x;                                                                                            \
            __builtin_memcpy(&x, src + 4 * i, sizeof x);                                                        \
            if (!(x <= bound && x >= -bound)) return i;                                                         \
            if (dst) dst[i] = x;                                                                                \
        }                                                                                                       \
        return -1;                                                                                              \
    }

MT_WITHIN(avx512, "avx512f", 16)
MT_WITHIN(avx, "avx", 8)
MT_WITHIN(sse2, "sse2", 4)

long mt_copy_within(float *dst, const void *src, long count, float bound) {
    const unsigned f = mt_cpu_features();
    if (f & MT_CPU_AVX512F) return within_avx512(dst, src, count, bound);
    if (f & MT_CPU_AVX) return within_avx(dst, src, count, bound);
    return within_sse2(dst, src, count, bound);
}
