import COpenBLAS

/// Which matrix-multiply implementation `gemm` runs.
///
/// Both are kept so `metatrain bench` can compare them on our layer sizes; `GEMMBackend.default`
/// is the one the measurements chose (see README, "Kernel choice").
public enum GEMMBackend: String, Sendable, CaseIterable, Codable {
    /// `cblas_sgemm` from OpenBLAS, pinned to one thread; dispatches on the CPU at run time.
    case openBLAS
    /// Register-blocked Swift SIMD loops compiled for the build's target CPU.
    case swiftSIMD

    public static let `default`: GEMMBackend = .openBLAS
}

/// One BLAS thread per process: workers parallelise over slots, never inside a GEMM.
private let openBLASSingleThreaded: Void = { openblas_set_num_threads(1) }()

/// C ← α·op(A)·op(B) + β·C for row-major matrices; op(X) is X or Xᵀ.
///
/// op(A) is m×k, op(B) is k×n, C is m×n. `lda`, `ldb`, `ldc` are the row strides of the stored
/// matrices. Every matrix product in NeuralNet goes through here, so the kernel choice lives in
/// one place.
@inline(__always)
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
    backend: GEMMBackend = .default
) {
    switch backend {
    case .openBLAS:
        _ = openBLASSingleThreaded
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    case .swiftSIMD:
        SwiftGEMM.run(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                      a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
}

/// The hand-written Swift kernel: 4 rows × 16 columns of C held in SIMD registers per inner loop.
enum SwiftGEMM {
    typealias Vec = SIMD16<Float>

    static func run(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if transposeB {
            // Bᵀ is packed once into a k×n scratch: a cheap O(k·n) copy next to O(m·n·k) work,
            // and the inner loop then always streams contiguous rows of B.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: k * n) { packed in
                let p = packed.baseAddress!
                for j in 0..<n { for q in 0..<k { p[q * n + j] = b[j * ldb + q] } }
                kernel(transposeA: transposeA, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                       b: UnsafePointer(p), ldb: n, beta: beta, c: c, ldc: ldc)
            }
        } else {
            kernel(transposeA: transposeA, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }

    /// op(A)(i, q): A is m×k (row stride lda) or, transposed, stored k×m.
    @inline(__always)
    static func element(_ a: UnsafePointer<Float>, _ transposed: Bool, _ lda: Int, _ i: Int, _ q: Int) -> Float {
        transposed ? a[q * lda + i] : a[i * lda + q]
    }

    @inline(__always)
    static func store(_ acc: Vec, alpha: Float, beta: Float, to c: UnsafeMutablePointer<Float>) {
        let raw = UnsafeMutableRawPointer(c)
        if beta == 0 {
            raw.storeBytes(of: acc * alpha, as: Vec.self)
        } else {
            let old = raw.loadUnaligned(as: Vec.self)
            raw.storeBytes(of: acc * alpha + old * beta, as: Vec.self)
        }
    }

    static func kernel(
        transposeA ta: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let w = Vec.scalarCount
        let nVec = n - n % w
        var i = 0
        while i + 4 <= m {
            var j = 0
            while j < nVec {
                var c0 = Vec(), c1 = Vec(), c2 = Vec(), c3 = Vec()
                for q in 0..<k {
                    let bv = UnsafeRawPointer(b + q * ldb + j).loadUnaligned(as: Vec.self)
                    c0 += element(a, ta, lda, i, q) * bv
                    c1 += element(a, ta, lda, i + 1, q) * bv
                    c2 += element(a, ta, lda, i + 2, q) * bv
                    c3 += element(a, ta, lda, i + 3, q) * bv
                }
                store(c0, alpha: alpha, beta: beta, to: c + i * ldc + j)
                store(c1, alpha: alpha, beta: beta, to: c + (i + 1) * ldc + j)
                store(c2, alpha: alpha, beta: beta, to: c + (i + 2) * ldc + j)
                store(c3, alpha: alpha, beta: beta, to: c + (i + 3) * ldc + j)
                j += w
            }
            i += 4
        }
        // Remaining rows (m % 4) over the vector columns.
        while i < m {
            var j = 0
            while j < nVec {
                var acc = Vec()
                for q in 0..<k {
                    acc += element(a, ta, lda, i, q) * UnsafeRawPointer(b + q * ldb + j).loadUnaligned(as: Vec.self)
                }
                store(acc, alpha: alpha, beta: beta, to: c + i * ldc + j)
                j += w
            }
            i += 1
        }
        // Remaining columns (n % 16, e.g. the 2 actions of the output layer), scalar.
        if nVec < n {
            for i in 0..<m {
                for j in nVec..<n {
                    var s: Float = 0
                    for q in 0..<k { s += element(a, ta, lda, i, q) * b[q * ldb + j] }
                    c[i * ldc + j] = beta == 0 ? alpha * s : alpha * s + beta * c[i * ldc + j]
                }
            }
        }
    }
}
