import MetaLearning
import NeuralNet
import Testing

/// The fingerprint tells kernels apart exactly where their bits differ, and nowhere else.
@Suite struct NumericsFingerprintTests {
    @Test func kernelsOfOneArithmeticShareAFingerprintAndTheClassesDiffer() throws {
        let kernels = GEMMBackend.allCases.filter { $0.isSupported && $0.arithmetic != .openBLAS }
        var byClass: [GEMMBackend.Arithmetic: Set<String>] = [:]
        for kernel in kernels {
            byClass[kernel.arithmetic, default: []].insert(try NumericsFingerprint.compute(kernel: kernel).hash)
        }
        // Every mul-add kernel (sse2 runs everywhere) computes the same bits: what `numerics: portable` relies on.
        #expect(byClass[.mulAdd]?.count == 1, "\(byClass)")
        if let fused = byClass[.fma] {
            #expect(fused.count == 1, "\(byClass)")
            #expect(fused.isDisjoint(with: byClass[.mulAdd]!), "fused and unfused kernels must be told apart")
        }
    }

    @Test func theFingerprintIsStableAndWellFormed() throws {
        let a = try NumericsFingerprint.compute(kernel: .sse2), b = try NumericsFingerprint.compute(kernel: .sse2)
        #expect(a == b)
        #expect(a.hash.count == 16 && a.hash.allSatisfy { $0.isHexDigit && !$0.isUppercase })
        let report = try NumericsReport.measure()
        #expect(report.kernel == GEMMBackend.selected.rawValue && report.portableKernel == GEMMBackend.portable.rawValue)
        #expect(report.effective(under: .portable).fingerprint == a.hash, "portable kernels share sse2's bits")
        #expect(report.effective(under: .strict).fingerprint == report.fingerprint)
    }
}
