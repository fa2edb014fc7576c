import CKernels
import COpenBLAS
import Foundation

/// Which matrix-multiply implementation `gemm` runs.
///
/// metatrain's own kernels (CKernels) are chosen from the CPU's features, so speed does not depend on whether a
/// BLAS knows the CPU's model number, and each kernel's per-element order of operations is fixed (see
/// `mt_kernels.h`): every `.fma` kernel gives the same bits as every other `.fma` kernel on any CPU that runs
/// it, and likewise for `.mulAdd`. OpenBLAS is kept for comparison (`metatrain bench`) and as an opt-in
/// (`METATRAIN_KERNEL=openblas`); its results depend on the core type it picks.
public enum GEMMBackend: String, Sendable, CaseIterable, Codable {
    case avx512FMA = "avx512-fma"
    case avx2FMA = "avx2-fma"
    case avx512 = "avx512"
    case avx = "avx"
    case sse2 = "sse2"
    case openBLAS = "openblas"

    /// How a kernel rounds: kernels of one class give bit-identical results.
    public enum Arithmetic: String, Sendable { case fma, mulAdd = "mul-add", openBLAS = "openblas" }

    public var arithmetic: Arithmetic {
        switch self {
        case .avx512FMA, .avx2FMA: return .fma
        case .avx512, .avx, .sse2: return .mulAdd
        case .openBLAS: return .openBLAS
        }
    }

    var cKernel: mt_kernel? {
        switch self {
        case .avx512FMA: return MT_KERNEL_AVX512_FMA
        case .avx2FMA: return MT_KERNEL_AVX2_FMA
        case .avx512: return MT_KERNEL_AVX512
        case .avx: return MT_KERNEL_AVX
        case .sse2: return MT_KERNEL_SSE2
        case .openBLAS: return nil
        }
    }

    /// Whether this CPU can run the kernel.
    public var isSupported: Bool {
        guard let k = cKernel else { return true }
        let need = mt_kernel_requirements(k)
        return mt_cpu_features() & need == need
    }

    /// The fastest kernel this CPU's features allow: fused multiply-add at the widest vector width.
    public static var best: GEMMBackend { [.avx512FMA, .avx2FMA, .avx512, .avx, .sse2].first(where: \.isSupported)! }

    /// The `.mulAdd` kernel for `numerics: portable`: its results are the same bits on every x86-64 CPU, at
    /// the cost of separate multiplies and adds. The selected kernel when it is one (a user who pinned
    /// `METATRAIN_KERNEL=sse2` gets sse2), else the fastest of the class on this CPU, measured (`fastestMulAdd`).
    public static var portable: GEMMBackend {
        selected.arithmetic == .mulAdd ? selected : fastestMulAdd
    }

    /// The process's kernel: `METATRAIN_KERNEL` if set (a kernel name, `best` or `portable`), else `fastest`.
    /// Read once; an unusable setting is reported by `Numerics.validateEnvironment()` at start.
    public static let selected: GEMMBackend = (try? Numerics.kernel(fromEnvironment: ProcessInfo.processInfo.environment)) ?? fastest

    /// The fastest kernel of `best`'s arithmetic class on this CPU, measured (`calibrate`), not assumed from its width.
    ///
    /// Why: on a Zen 4 the AVX2 FMA kernel ran the 64-64 update a tenth faster than the AVX-512 one (issue 37); the
    /// widest is not always the fastest. Kernels of one class give the same bits (mt_kernels.h's contract, checked by
    /// KernelTests), so the choice changes speed only — never θ, nor the numerics fingerprint.
    public static let fastest: GEMMBackend = calibrate(among: allCases.filter { $0.arithmetic == best.arithmetic && $0.isSupported })
    /// The same for the mul-add class (`numerics: portable`).
    static let fastestMulAdd: GEMMBackend = calibrate(among: allCases.filter { $0.arithmetic == .mulAdd && $0.isSupported })

    /// What each calibration measured: the kernel and its best time, in seconds, for the timed shapes.
    public static var calibration: [(kernel: GEMMBackend, seconds: Double)] {
        calibrationLock.lock(); defer { calibrationLock.unlock() }
        return calibrationTimes
    }
    nonisolated(unsafe) private static var calibrationTimes: [(kernel: GEMMBackend, seconds: Double)] = []
    private static let calibrationLock = NSLock()

    /// The candidate that runs the update's most common GEMMs soonest: a 64-64 layer forward (64 × 64 × 64), its
    /// weight gradient (transposed A) and a 2-action head (64 × 2 × 64), each best of 5 rounds of 40 — a few
    /// milliseconds per candidate, once per process. A single candidate is returned unmeasured.
    static func calibrate(among candidates: [GEMMBackend]) -> GEMMBackend {
        guard candidates.count > 1 else { return candidates.first ?? .sse2 }
        let n = 64
        var rng = SeededRNG(seed: 37)
        let a = (0..<(n * n)).map { _ in Float(rng.nextGaussian()) }, b = (0..<(n * n)).map { _ in Float(rng.nextGaussian()) }
        var c = [Float](repeating: 0, count: n * n)
        var times: [(GEMMBackend, Double)] = []
        for kernel in candidates {
            var best = Double.infinity
            for _ in 0..<5 {
                let start = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<40 {
                    gemm(transposeA: false, transposeB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: b, ldb: n, beta: 0, c: &c, ldc: n, backend: kernel)
                    gemm(transposeA: true, transposeB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: b, ldb: n, beta: 0, c: &c, ldc: n, backend: kernel)
                    gemm(transposeA: false, transposeB: false, m: n, n: 2, k: n, alpha: 1, a: a, lda: n, b: b, ldb: 2, beta: 1, c: &c, ldc: 2, backend: kernel)
                }
                best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            times.append((kernel, best))
        }
        calibrationLock.lock(); calibrationTimes += times; calibrationLock.unlock()
        return times.min { $0.1 < $1.1 }!.0
    }

    /// The kernel new networks use in the current scope: `selected` unless a caller bound another with
    /// `GEMMBackend.$current.withValue(_:)` (a worker in a `numerics: portable` run binds `.portable`).
    @TaskLocal public static var current: GEMMBackend = selected

    /// What `MLP` uses when no backend is given.
    public static var `default`: GEMMBackend { current }
}

/// One BLAS thread per process: workers parallelise over slots, never inside a GEMM.
private let openBLASSingleThreaded: Void = { openblas_set_num_threads(1) }()

/// What `gemm` does to each element after α·op(A)·op(B), fused into its store (`mt_epilogue` in mt_kernels.h).
///
/// A layer's bias and ReLU in the forward pass, and the ReLU's derivative in the backward pass, would otherwise each be a
/// pass of its own over C; fused they cost a few instructions per stored vector. The result is the same bits as the
/// separate passes: C's old value is read from `input` instead of C, and the ReLU and the gate are selects.
public struct GEMMEpilogue {
    /// Where β·C's "old C" is read from: row i at `input + i·inputStride` (stride 0: one row for every i).
    var input: UnsafePointer<Float>?
    var inputStride: Int
    /// r ← r < 0 ? 0 : r (the forward ReLU).
    var relu: Bool
    /// r ← gate(i,j) > 0 ? r : 0 with gate row i at `gate + i·gateStride` (the ReLU's derivative, from the activation).
    var gate: UnsafePointer<Float>?
    var gateStride: Int

    /// C's old value is `bias` in every row (call with β = 1), then the ReLU when `relu`.
    public static func bias(_ bias: UnsafePointer<Float>, relu: Bool) -> GEMMEpilogue {
        GEMMEpilogue(input: bias, inputStride: 0, relu: relu, gate: nil, gateStride: 0)
    }

    /// Each element kept only where the activation `gate` (row stride `stride`) is positive.
    public static func gate(_ gate: UnsafePointer<Float>, stride: Int) -> GEMMEpilogue {
        GEMMEpilogue(input: nil, inputStride: 0, relu: false, gate: gate, gateStride: stride)
    }
}

/// C ← α·op(A)·op(B) + β·C for row-major matrices; op(X) is X or Xᵀ.
///
/// op(A) is m×k, op(B) is k×n. `lda`, `ldb`, `ldc` are the row strides of the stored
/// matrices. Every matrix product in NeuralNet goes through here, so the kernel choice lives in
/// one place. An `epilogue` runs fused in our kernels; with OpenBLAS it runs as passes before and after.
@inline(__always)
public func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
    backend: GEMMBackend = .default, epilogue: GEMMEpilogue? = nil
) {
    if let kernel = backend.cKernel {
        if let e = epilogue {
            var fused = mt_epilogue(cin: e.input, ldcin: e.inputStride, relu: e.relu ? 1 : 0, gate: e.gate,
                                    ldgate: e.gateStride)
            mt_sgemm_epilogue(kernel, transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha,
                              a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc), &fused)
        } else {
            mt_sgemm(kernel, transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha,
                     a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        }
    } else {
        _ = openBLASSingleThreaded
        if let input = epilogue?.input, beta != 0 {
            for r in 0..<m { (c + r * ldc).update(from: input + r * epilogue!.inputStride, count: n) }
        }
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        if let e = epilogue {
            for r in 0..<m {
                if e.relu { relu(c + r * ldc, count: n) }
                if let gate = e.gate { reluMask(c + r * ldc, activation: gate + r * e.gateStride, count: n) }
            }
        }
    }
}

/// The CPU and the kernel choice, for logs, benchmarks and the numerics fingerprint.
public enum Numerics {
    /// The CPU's brand string (cpuid), e.g. "AMD EPYC 9R14", or "unknown x86-64".
    public static let cpuModel: String = {
        var buffer = [CChar](repeating: 0, count: 64)
        mt_cpu_brand(&buffer, Int32(buffer.count))
        let name = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "unknown x86-64" : name
    }()

    /// The vector features kernel choice looks at, as names ("sse2 avx avx2 fma avx512f").
    public static var cpuFeatures: String {
        let bits = mt_cpu_features()
        let named: [(UInt32, String)] = [(MT_CPU_SSE2, "sse2"), (MT_CPU_AVX, "avx"), (MT_CPU_AVX2, "avx2"),
                                         (MT_CPU_FMA, "fma"), (MT_CPU_AVX512F, "avx512f")]
        return named.filter { bits & $0.0 != 0 }.map(\.1).joined(separator: " ")
    }

    /// The kernel `METATRAIN_KERNEL` asks for (nil when unset), or an error that says what is allowed.
    public static func kernel(fromEnvironment environment: [String: String]) throws -> GEMMBackend? {
        guard let raw = environment["METATRAIN_KERNEL"], !raw.isEmpty else { return nil }
        let kernel: GEMMBackend
        switch raw {
        case "best": kernel = .best
        case "portable": kernel = GEMMBackend.fastestMulAdd
        default:
            guard let k = GEMMBackend(rawValue: raw) else {
                throw NumericsError.unknownKernel(raw)
            }
            kernel = k
        }
        guard kernel.isSupported else { throw NumericsError.unsupportedKernel(kernel, features: cpuFeatures) }
        return kernel
    }

    /// Throws when `METATRAIN_KERNEL` names no kernel or one this CPU cannot run; commands call it first,
    /// so a bad setting is an error rather than a silent fallback.
    public static func validateEnvironment() throws {
        _ = try kernel(fromEnvironment: ProcessInfo.processInfo.environment)
    }
}

public enum NumericsError: Error, CustomStringConvertible, Equatable {
    case unknownKernel(String)
    case unsupportedKernel(GEMMBackend, features: String)

    public var description: String {
        switch self {
        case .unknownKernel(let k):
            return "METATRAIN_KERNEL=\(k) names no kernel; use best, portable, or one of \(GEMMBackend.allCases.map(\.rawValue).joined(separator: ", "))"
        case .unsupportedKernel(let k, let f):
            return "METATRAIN_KERNEL=\(k.rawValue) cannot run on this CPU (features: \(f)); use best or portable"
        }
    }
}
