/* One GEMM kernel, included by mt_kernels.c once per ISA with these defined:
 *   MT_SUFFIX  name suffix (avx512_fma, …)
 *   MT_TARGET  the target attribute string ("avx512f,fma", …)
 *   MT_W       floats per vector register (16, 8, 4)
 *   MT_FUSED   1: fused multiply-add, 0: separate multiply and add
 * The order of operations on each element of C is the one mt_kernels.h states, whatever MT_W is. */

#define MT_CAT2(a, b) a##_##b
#define MT_CAT(a, b) MT_CAT2(a, b)
#define MT_NAME(x) MT_CAT(x, MT_SUFFIX)
#define MT_FN __attribute__((target(MT_TARGET), always_inline)) static inline

typedef float MT_NAME(vec) __attribute__((ext_vector_type(MT_W)));
#define MT_V MT_NAME(vec)

MT_FN MT_V MT_NAME(load)(const float *p) {
    MT_V v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

MT_FN void MT_NAME(store)(float *p, MT_V v) { __builtin_memcpy(p, &v, sizeof v); }

/* acc + a·b, fused or not: the only place the kernels' arithmetic differs. */
MT_FN MT_V MT_NAME(madd)(MT_V acc, MT_V a, MT_V b) {
#if MT_FUSED
    return __builtin_elementwise_fma(a, b, acc);
#else
    return acc + a * b;
#endif
}

/* Where each element of C goes after alpha·acc: C's input, the ReLU and the gate, as mt_epilogue says, with
 * every pointer already at the block's first element. */
typedef struct {
    const float *cin;
    long ldcin;
    const float *gate;
    long ldgate;
    int relu;
} MT_NAME(epi);
#define MT_E MT_NAME(epi)

/* The same epilogue `rows` rows and `cols` columns further on. */
MT_FN MT_E MT_NAME(epi_at)(MT_E e, long rows, long cols) {
    e.cin += rows * e.ldcin + cols;
    if (e.gate) e.gate += rows * e.ldgate + cols;
    return e;
}

/* One element: r = alpha·acc (+ beta·Cin), then the ReLU (r < 0 → 0) and the gate (gate ≤ 0 or NaN → 0). */
MT_FN float MT_NAME(finish1)(float acc, const float *cin, const float *gate, int relu, float alpha, float beta) {
    float r = acc * alpha;
    if (beta != 0) r = r + *cin * beta;
    if (relu && r < 0) r = 0;
    if (gate && !(*gate > 0)) r = 0;
    return r;
}

typedef int MT_NAME(ivec) __attribute__((ext_vector_type(MT_W)));

/* C ← the epilogue of alpha·acc for `count` ≤ MT_W columns; whole vectors go through registers, a partial one
 * lane by lane with the same scalar operations. */
MT_FN void MT_NAME(finish_vector)(float *c, MT_E e, MT_V acc, float alpha, float beta) {
    typedef MT_NAME(ivec) IV;
    MT_V r = acc * alpha;
    if (beta != 0) r = r + MT_NAME(load)(e.cin) * beta;
    if (e.relu) r = (MT_V)((IV)r & ~(r < 0)); /* -0 and NaN stay, as r < 0 is false for them */
    if (e.gate) r = (MT_V)((IV)r & (MT_NAME(load)(e.gate) > 0));
    MT_NAME(store)(c, r);
}

MT_FN void MT_NAME(finish)(float *c, MT_E e, MT_V acc, int count, float alpha, float beta) {
    if (count == MT_W) {
        MT_NAME(finish_vector)(c, e, acc, alpha, beta);
    } else {
        float lanes[MT_W];
        MT_NAME(store)(lanes, acc);
        for (int j = 0; j < count; j++)
            c[j] = MT_NAME(finish1)(lanes[j], e.cin + j, e.gate ? e.gate + j : 0, e.relu, alpha, beta);
    }
}

/* ROWS rows × VECS vectors of C from a B panel (row stride bs) and A (element (i,q) at a[i·ars + q·acs]).
 * `width` ≤ VECS·MT_W columns are stored. ROWS and VECS are constants at every call, so the accumulators
 * live in registers. */
MT_FN void MT_NAME(block)(const int ROWS, const int VECS, int k, const float *a, long ars, long acs,
                          const float *bp, long bs, float *c, long ldc, MT_E e, int width, float alpha, float beta) {
    MT_V acc[8][4];
    for (int r = 0; r < ROWS; r++)
        for (int v = 0; v < VECS; v++) acc[r][v] = (MT_V)0;
    for (int q = 0; q < k; q++) {
        MT_V bv[4];
        for (int v = 0; v < VECS; v++) bv[v] = MT_NAME(load)(bp + q * bs + v * MT_W);
        for (int r = 0; r < ROWS; r++) {
            MT_V av = (MT_V)(a[r * ars + q * acs]);
            for (int v = 0; v < VECS; v++) acc[r][v] = MT_NAME(madd)(acc[r][v], av, bv[v]);
        }
    }
    if (width == VECS * MT_W) { /* whole vectors (the usual case): no per-vector count, so acc stays in registers */
        for (int r = 0; r < ROWS; r++)
            for (int v = 0; v < VECS; v++)
                MT_NAME(finish_vector)(c + r * ldc + v * MT_W, MT_NAME(epi_at)(e, r, v * MT_W), acc[r][v], alpha, beta);
        return;
    }
    for (int r = 0; r < ROWS; r++)
        for (int v = 0; v < VECS; v++) {
            int left = width - v * MT_W;
            if (left > 0)
                MT_NAME(finish)(c + r * ldc + v * MT_W, MT_NAME(epi_at)(e, r, v * MT_W), acc[r][v],
                                left < MT_W ? left : MT_W, alpha, beta);
        }
}

/* All rows of one column panel: blocks of ROWS, then the rest one row at a time. */
MT_FN void MT_NAME(panel)(const int ROWS, const int VECS, int m, int k, const float *a, long ars, long acs,
                          const float *bp, long bs, float *c, long ldc, MT_E e, int width, float alpha, float beta) {
    int i = 0;
    for (; i + ROWS <= m; i += ROWS)
        MT_NAME(block)(ROWS, VECS, k, a + i * ars, ars, acs, bp, bs, c + i * ldc, ldc, MT_NAME(epi_at)(e, i, 0), width,
                       alpha, beta);
    /* The rest in blocks of 4, 2, 1 rows: fewer rows mean fewer independent chains, so keep them wide. */
    if (ROWS > 4 && i + 4 <= m) {
        MT_NAME(block)(4, VECS, k, a + i * ars, ars, acs, bp, bs, c + i * ldc, ldc, MT_NAME(epi_at)(e, i, 0), width,
                       alpha, beta);
        i += 4;
    }
    if (ROWS > 2 && i + 2 <= m) {
        MT_NAME(block)(2, VECS, k, a + i * ars, ars, acs, bp, bs, c + i * ldc, ldc, MT_NAME(epi_at)(e, i, 0), width,
                       alpha, beta);
        i += 2;
    }
    for (; i < m; i++)
        MT_NAME(block)(1, VECS, k, a + i * ars, ars, acs, bp, bs, c + i * ldc, ldc, MT_NAME(epi_at)(e, i, 0), width,
                       alpha, beta);
}

/* Rows of NARROW_VECS·MT_W per block in the narrow path: 4 vectors × 2 columns = 8 independent chains. */
#define MT_NARROW_VECS 4

/* Copies op(A)'s rows i..i+rows (rows ≤ MT_NARROW_VECS·MT_W, the rest zero) transposed into at[q·stride + r]:
 * 4×4 tiles through registers where whole, element by element at the edges. Copying changes no arithmetic. */
MT_FN void MT_NAME(pack_rows)(int rows, int k, const float *a, long ars, long acs, float *at, int stride) {
    typedef float v4 __attribute__((ext_vector_type(4)));
    int r = 0;
#if MT_W >= 8
    /* 8×8 tiles in 256-bit registers first: half the shuffles per element of 4×4 tiles. */
    typedef float v8 __attribute__((ext_vector_type(8)));
    if (acs == 1) {
        for (; r + 8 <= rows; r += 8) {
            int q = 0;
            for (; q + 8 <= k; q += 8) {
                v8 x[8], t[8], u[8];
                for (int i = 0; i < 8; i++) __builtin_memcpy(&x[i], a + (r + i) * ars + q, 32);
                for (int i = 0; i < 8; i += 2) {
                    t[i] = __builtin_shufflevector(x[i], x[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
                    t[i + 1] = __builtin_shufflevector(x[i], x[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
                }
                for (int h = 0; h < 8; h += 4) {
                    u[h + 0] = __builtin_shufflevector(t[h], t[h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
                    u[h + 1] = __builtin_shufflevector(t[h], t[h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
                    u[h + 2] = __builtin_shufflevector(t[h + 1], t[h + 3], 0, 1, 8, 9, 4, 5, 12, 13);
                    u[h + 3] = __builtin_shufflevector(t[h + 1], t[h + 3], 2, 3, 10, 11, 6, 7, 14, 15);
                }
                for (int c = 0; c < 4; c++) { /* u[c] holds columns c and c + 4 of rows 0-3, u[c + 4] of rows 4-7 */
                    const v8 lo = __builtin_shufflevector(u[c], u[c + 4], 0, 1, 2, 3, 8, 9, 10, 11);
                    const v8 hi = __builtin_shufflevector(u[c], u[c + 4], 4, 5, 6, 7, 12, 13, 14, 15);
                    __builtin_memcpy(at + (q + c) * stride + r, &lo, 32);
                    __builtin_memcpy(at + (q + c + 4) * stride + r, &hi, 32);
                }
            }
            for (; q < k; q++)
                for (int x = 0; x < 8; x++) at[q * stride + r + x] = a[(r + x) * ars + q];
        }
    }
#endif
    if (acs == 1) {
        for (; r + 4 <= rows; r += 4) {
            int q = 0;
            for (; q + 4 <= k; q += 4) {
                v4 x0, x1, x2, x3;
                __builtin_memcpy(&x0, a + (r + 0) * ars + q, 16);
                __builtin_memcpy(&x1, a + (r + 1) * ars + q, 16);
                __builtin_memcpy(&x2, a + (r + 2) * ars + q, 16);
                __builtin_memcpy(&x3, a + (r + 3) * ars + q, 16);
                v4 t0 = __builtin_shufflevector(x0, x1, 0, 4, 1, 5), t1 = __builtin_shufflevector(x2, x3, 0, 4, 1, 5);
                v4 t2 = __builtin_shufflevector(x0, x1, 2, 6, 3, 7), t3 = __builtin_shufflevector(x2, x3, 2, 6, 3, 7);
                v4 y0 = __builtin_shufflevector(t0, t1, 0, 1, 4, 5), y1 = __builtin_shufflevector(t0, t1, 2, 3, 6, 7);
                v4 y2 = __builtin_shufflevector(t2, t3, 0, 1, 4, 5), y3 = __builtin_shufflevector(t2, t3, 2, 3, 6, 7);
                __builtin_memcpy(at + (q + 0) * stride + r, &y0, 16);
                __builtin_memcpy(at + (q + 1) * stride + r, &y1, 16);
                __builtin_memcpy(at + (q + 2) * stride + r, &y2, 16);
                __builtin_memcpy(at + (q + 3) * stride + r, &y3, 16);
            }
            for (; q < k; q++)
                for (int x = 0; x < 4; x++) at[q * stride + r + x] = a[(r + x) * ars + q];
        }
    }
    for (; r < rows; r++)
        for (int q = 0; q < k; q++) at[q * stride + r] = a[r * ars + q * acs];
    for (int q = 0; q < k; q++)
        for (int x = rows; x < stride; x++) at[q * stride + x] = 0;
}

/* The last n < MT_W columns when m ≥ MT_W: vectors run down the rows instead (op(A)'s columns, packed
 * k × rows per block), 2 columns of C at a time, so a 2-action output layer does not pay for 16 padded
 * lanes. Each element still sums over q in order. */
MT_FN void MT_NAME(narrow)(int m, int n, int k, const float *a, long ars, long acs, const float *b, long bjs,
                           long bqs, float *c, long ldc, MT_E e, float alpha, float beta) {
    enum { BLOCK = MT_NARROW_VECS * MT_W };
    float *at = mt_scratch((size_t)k * BLOCK);
    for (int i = 0; i < m; i += BLOCK) {
        const int rows = m - i < BLOCK ? m - i : BLOCK;
        const float *ap;
        long aps;
        if (ars == 1 && rows == BLOCK) { /* op(A) = Aᵀ: a block of rows is already contiguous per q */
            ap = a + i;
            aps = acs;
        } else {
            MT_NAME(pack_rows)(rows, k, a + i * ars, ars, acs, at, BLOCK);
            ap = at;
            aps = BLOCK;
        }
        const int vecs = (rows + MT_W - 1) / MT_W;
        for (int j = 0; j < n; j += 2) {
            const int cols = n - j < 2 ? n - j : 2;
            MT_V acc[MT_NARROW_VECS][2];
            for (int v = 0; v < MT_NARROW_VECS; v++) acc[v][0] = acc[v][1] = (MT_V)0;
            for (int q = 0; q < k; q++) {
                const MT_V b0 = (MT_V)(b[q * bqs + j * bjs]);
                const MT_V b1 = (MT_V)(cols > 1 ? b[q * bqs + (j + 1) * bjs] : 0.0f);
                for (int v = 0; v < MT_NARROW_VECS; v++) {
                    if (v < vecs) {
                        const MT_V av = MT_NAME(load)(ap + q * aps + v * MT_W);
                        acc[v][0] = MT_NAME(madd)(acc[v][0], av, b0);
                        acc[v][1] = MT_NAME(madd)(acc[v][1], av, b1);
                    }
                }
            }
            for (int x = 0; x < cols; x++)
                for (int v = 0; v < vecs; v++) {
                    float lanes[MT_W];
                    MT_NAME(store)(lanes, acc[v][x]);
                    for (int r = 0; r < MT_W && v * MT_W + r < rows; r++) {
                        const long row = i + v * MT_W + r, col = j + x;
                        const MT_E at = MT_NAME(epi_at)(e, row, col);
                        c[row * ldc + col] = MT_NAME(finish1)(lanes[r], at.cin, at.gate, e.relu, alpha, beta);
                    }
                }
        }
    }
}

/* The last n < MT_W columns when m < MT_W (a greedy action's output layer): element by element, each
 * element's chain in order; no packing to pay for. */
MT_FN void MT_NAME(tiny)(int m, int n, int k, const float *a, long ars, long acs, const float *b, long bjs,
                         long bqs, float *c, long ldc, MT_E e, float alpha, float beta) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j += 4) {
            float acc[4] = {0, 0, 0, 0};
            const int cols = n - j < 4 ? n - j : 4;
            for (int q = 0; q < k; q++) {
                const float x = a[i * ars + q * acs];
                for (int y = 0; y < 4; y++)
                    if (y < cols) {
#if MT_FUSED
                        acc[y] = __builtin_fmaf(x, b[q * bqs + (j + y) * bjs], acc[y]);
#else
                        acc[y] = acc[y] + x * b[q * bqs + (j + y) * bjs];
#endif
                    }
            }
            for (int y = 0; y < cols; y++) {
                const MT_E at = MT_NAME(epi_at)(e, i, j + y);
                c[(long)i * ldc + j + y] = MT_NAME(finish1)(acc[y], at.cin, at.gate, e.relu, alpha, beta);
            }
        }
}

/* The GEMM for one combination of the epilogue's ReLU and gate: RELU and GATE are constants at each call, so no
 * store pays for a choice it does not make. */
MT_FN void MT_NAME(gemm_with)(const int RELU, const int GATE, int ta, int tb, int m, int n, int k, float alpha,
                              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc,
                              const float *cin, long ldcin, const float *gate, long ldgate) {
    const long ars = ta ? 1 : lda, acs = ta ? lda : 1;
    const MT_E e = {cin, ldcin, GATE ? gate : 0, ldgate, RELU};
    /* Whole panels of 2 vectors, then one vector, then the last < MT_W columns zero-padded to one vector. */
    int j = 0;
    const int vector_columns = n - n % MT_W;
    if (vector_columns < n) {
        const long bjs = tb ? ldb : 1, bqs = tb ? 1 : ldb;
        if (m >= MT_W)
            MT_NAME(narrow)(m, n - vector_columns, k, a, ars, acs, b + vector_columns * bjs, bjs, bqs,
                            c + vector_columns, ldc, MT_NAME(epi_at)(e, 0, vector_columns), alpha, beta);
        else
            MT_NAME(tiny)(m, n - vector_columns, k, a, ars, acs, b + vector_columns * bjs, bjs, bqs,
                          c + vector_columns, ldc, MT_NAME(epi_at)(e, 0, vector_columns), alpha, beta);
        n = vector_columns;
    }
    while (j < n) {
        int left = n - j;
        /* A row or three (a greedy action): 4 vectors per row for 4 independent chains. */
        int vecs = m < 4 && left >= 4 * MT_W ? 4 : left >= 2 * MT_W ? 2 : 1;
        int width = left >= vecs * MT_W ? vecs * MT_W : left;
        const int packed_width = vecs * MT_W;
        const float *bp;
        long bs;
        /* B is read in place when it is untransposed, the panel is whole, and either A has too few rows for
         * a packed copy to pay or B's rows are short enough (< 1 KiB) not to collide in the cache; otherwise
         * the panel is copied into contiguous, zero-padded scratch. */
        if (!tb && width == packed_width && (m < 16 || ldb < 256)) {
            bp = b + j;
            bs = ldb;
        } else {
            float *scratch = mt_scratch((size_t)k * packed_width);
            if (tb) { /* op(B)'s columns are B's rows: a transpose, in 4×4 tiles */
                MT_NAME(pack_rows)(width, k, b + (long)j * ldb, ldb, 1, scratch, packed_width);
            } else {
                for (int q = 0; q < k; q++) {
                    float *row = scratch + (size_t)q * packed_width;
                    for (int x = 0; x < width; x++) row[x] = b[(long)q * ldb + j + x];
                    for (int x = width; x < packed_width; x++) row[x] = 0;
                }
            }
            bp = scratch;
            bs = packed_width;
        }
        if (vecs == 4)
            MT_NAME(panel)(1, 4, m, k, a, ars, acs, bp, bs, c + j, ldc, MT_NAME(epi_at)(e, 0, j), width, alpha, beta);
        else if (vecs == 2) /* 32 registers hold 8×2 accumulators; 16 hold 6×2 */
            MT_NAME(panel)(MT_W == 16 ? 8 : 6, 2, m, k, a, ars, acs, bp, bs, c + j, ldc, MT_NAME(epi_at)(e, 0, j), width,
                           alpha, beta);
        else
            MT_NAME(panel)(8, 1, m, k, a, ars, acs, bp, bs, c + j, ldc, MT_NAME(epi_at)(e, 0, j), width, alpha, beta);
        j += width;
    }
}

__attribute__((target(MT_TARGET))) static void MT_NAME(gemm)(int ta, int tb, int m, int n, int k, float alpha,
                                                             const float *a, int lda, const float *b, int ldb,
                                                             float beta, float *c, int ldc, const mt_epilogue *ep) {
    const float *cin = ep && ep->cin ? ep->cin : c;
    const long ldcin = ep && ep->cin ? ep->ldcin : ldc;
    const float *gate = ep ? ep->gate : 0;
    const long ldgate = ep ? ep->ldgate : 0;
    const int relu = ep && ep->relu;
#define MT_WITH(R, G) MT_NAME(gemm_with)(R, G, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, cin, ldcin, gate, ldgate)
    if (!relu && !gate) MT_WITH(0, 0);
    else if (relu && !gate) MT_WITH(1, 0);
    else if (!relu) MT_WITH(0, 1);
    else MT_WITH(1, 1);
#undef MT_WITH
}

#undef MT_NARROW_VECS
#undef MT_E
#undef MT_V
#undef MT_FN
#undef MT_NAME
#undef MT_CAT
#undef MT_CAT2
