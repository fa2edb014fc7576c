#ifndef METATRAIN_MT_KERNELS_H
#define METATRAIN_MT_KERNELS_H

/* metatrain's own single-precision GEMM kernels, compiled once per x86-64 ISA level and chosen at run time
 * from the CPU's features (cpuid), never from a list of CPU models.
 *
 * Every kernel computes each element of C in one fixed order:
 *     acc = 0; for q in 0..<k: acc = acc + A(i,q)·B(q,j)   (fused: acc = fma(A(i,q), B(q,j), acc))
 *     C(i,j) = alpha·acc            when beta == 0 (C is not read)
 *     C(i,j) = alpha·acc + beta·C   otherwise
 * Vector width, register blocking and packing change which elements are computed together, never the order
 * of the operations on one element. So all "fma" kernels give the same bits as each other, and all "mul-add"
 * kernels give the same bits as each other, on every x86-64 CPU that can run them. */

#ifdef __cplusplus
extern "C" {
#endif

/* The kernels, in the order metatrain prefers them. */
typedef enum {
    MT_KERNEL_AVX512_FMA = 0, /* AVX-512F + FMA, fused multiply-add (arithmetic "fma") */
    MT_KERNEL_AVX2_FMA = 1,   /* AVX2 + FMA, fused (arithmetic "fma") */
    MT_KERNEL_AVX512 = 2,     /* AVX-512F, separate multiply and add (arithmetic "mul-add") */
    MT_KERNEL_AVX = 3,        /* AVX, separate multiply and add (arithmetic "mul-add") */
    MT_KERNEL_SSE2 = 4,       /* baseline x86-64, separate multiply and add (arithmetic "mul-add") */
    MT_KERNEL_COUNT = 5
} mt_kernel;

/* CPU feature bits, as cpuid and the OS's enabled register state (XCR0) report them. */
#define MT_CPU_SSE2 0x1u
#define MT_CPU_AVX 0x2u
#define MT_CPU_AVX2 0x4u
#define MT_CPU_FMA 0x8u
#define MT_CPU_AVX512F 0x10u

/* The features of the CPU this process runs on (cached after the first call; thread-safe). */
unsigned mt_cpu_features(void);

/* The features kernel `kernel` needs; it may run where (mt_cpu_features() & need) == need. */
unsigned mt_kernel_requirements(mt_kernel kernel);

/* Writes the CPU's brand string (cpuid 0x80000002-4), NUL-terminated and trimmed, into buffer (>= 49 bytes). */
void mt_cpu_brand(char *buffer, int capacity);

/* C ← alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k, op(B) is k×n. The caller checks that `kernel`
 * can run here (mt_kernel_requirements). Safe to call from many threads at once. */
void mt_sgemm(mt_kernel kernel, int transpose_a, int transpose_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* What happens to each element of C after alpha·acc, in this order, for the passes a network layer makes anyway
 * (a forward pass's bias and ReLU, a backward pass's ReLU derivative) fused into the GEMM's store instead of run as
 * passes of their own over C:
 *     r = alpha·acc + beta·Cin(i,j)       Cin(i,j) = cin[i·ldcin + j] (ldcin 0: one row for every i, a bias);
 *                                         cin NULL: C itself, as mt_sgemm; not read when beta == 0
 *     r = (r < 0) ? 0 : r                 when relu != 0 (-0 and NaN stay)
 *     r = (gate(i,j) > 0) ? r : 0         when gate != NULL, gate(i,j) = gate[i·ldgate + j] (NaN gates give 0)
 * The first line is mt_sgemm's contract with C's old value read from Cin, so C = Cin's rows then mt_sgemm with the
 * same beta gives the same bits; the other two are selects, exact. */
typedef struct {
    const float *cin;
    long ldcin;
    int relu;
    const float *gate;
    long ldgate;
} mt_epilogue;

/* mt_sgemm with an epilogue (NULL: none, exactly mt_sgemm). C must not overlap gate, nor Cin unless Cin is C. */
void mt_sgemm_epilogue(mt_kernel kernel, int transpose_a, int transpose_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc,
                       const mt_epilogue *epilogue);

/* One Adam step over `count` parameters (see mt_kernels.c for the exact expression); the same bits at every
 * vector width, so it picks the widest this CPU has. */
void mt_adam_step(float *theta, const float *gradient, float *m, float *v, long count, float beta1, float beta2,
                  float epsilon, float step_size, float inv_bc2_sqrt);

/* Copies `count` little-endian float32 values from `src` (any alignment) to `dst`, or only reads them when `dst` is
 * NULL, and returns the index of the first that is NaN or beyond ±bound (±∞ included), or -1 when there is none.
 * On a hit, dst holds the values before it; the rest are unspecified. One pass: the coordinator checks every
 * incoming update (4 MB at θ of 1M floats) as it copies it. */
long mt_copy_within(float *dst, const void *src, long count, float bound);

#ifdef __cplusplus
}
#endif

#endif
