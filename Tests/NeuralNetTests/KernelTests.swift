import Testing
@testable import NeuralNet

/// The GEMM kernels keep the per-element order of operations mt_kernels.h promises, bit for bit.
@Suite struct KernelTests {
    /// C = α·op(A)·op(B) + β·C in the documented order, in plain Swift (which never contracts a*b+c).
    static func reference(fused: Bool, ta: Bool, tb: Bool, m: Int, n: Int, k: Int, alpha: Float, a: [Float], lda: Int,
                          b: [Float], ldb: Int, beta: Float, c: [Float], ldc: Int) -> [Float] {
        var out = c
        for i in 0..<m {
            for j in 0..<n {
                var acc: Float = 0
                for q in 0..<k {
                    let x = ta ? a[q * lda + i] : a[i * lda + q]
                    let y = tb ? b[j * ldb + q] : b[q * ldb + j]
                    acc = fused ? acc.addingProduct(x, y) : acc + x * y
                }
                var r = acc * alpha
                if beta != 0 { r = r + c[i * ldc + j] * beta }
                out[i * ldc + j] = r
            }
        }
        return out
    }

    struct Shape: CustomStringConvertible {
        var m, n, k: Int
        var ta, tb: Bool
        var alpha, beta: Float
        var description: String { "\(m)×\(n)×\(k) ta=\(ta) tb=\(tb) α=\(alpha) β=\(beta)" }
    }

    static let shapes: [Shape] = {
        var shapes: [Shape] = []
        var rng = SeededRNG(seed: 99)
        // The network's shapes, vector-width edges (1, 2, 7, 8, 15, 16, 17, 31, 33) and odd ones.
        let sizes = [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 70]
        for _ in 0..<60 {
            shapes.append(Shape(m: sizes[rng.nextInt(below: sizes.count)], n: sizes[rng.nextInt(below: sizes.count)],
                                k: sizes[rng.nextInt(below: sizes.count)], ta: rng.nextInt(below: 2) == 1,
                                tb: rng.nextInt(below: 2) == 1, alpha: [1, 0.5, -2][rng.nextInt(below: 3)],
                                beta: [0, 1, 0.25][rng.nextInt(below: 3)]))
        }
        shapes.append(Shape(m: 64, n: 2, k: 64, ta: false, tb: false, alpha: 1, beta: 1))
        shapes.append(Shape(m: 64, n: 2, k: 64, ta: true, tb: false, alpha: 1, beta: 0))
        shapes.append(Shape(m: 1, n: 64, k: 4, ta: false, tb: false, alpha: 1, beta: 1))
        shapes.append(Shape(m: 100, n: 130, k: 90, ta: true, tb: true, alpha: 1, beta: 1))
        return shapes
    }()

    @Test func everyKernelKeepsItsArithmeticOrderBitForBit() throws {
        var rng = SeededRNG(seed: 7)
        var checked = 0
        for s in Self.shapes {
            // Stored matrices with padding in their strides, so strides are exercised too.
            let lda = (s.ta ? s.m : s.k) + 3, ldb = (s.tb ? s.k : s.n) + 1, ldc = s.n + 2
            let a = (0..<((s.ta ? s.k : s.m) * lda)).map { _ in Float(rng.nextGaussian()) }
            let b = (0..<((s.tb ? s.n : s.k) * ldb)).map { _ in Float(rng.nextGaussian()) }
            let c = (0..<(s.m * ldc)).map { _ in Float(rng.nextGaussian()) }
            for backend in GEMMBackend.allCases where backend.isSupported && backend.arithmetic != .openBLAS {
                var out = c
                gemm(transposeA: s.ta, transposeB: s.tb, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: a, lda: lda,
                     b: b, ldb: ldb, beta: s.beta, c: &out, ldc: ldc, backend: backend)
                let expected = Self.reference(fused: backend.arithmetic == .fma, ta: s.ta, tb: s.tb, m: s.m, n: s.n,
                                              k: s.k, alpha: s.alpha, a: a, lda: lda, b: b, ldb: ldb, beta: s.beta,
                                              c: c, ldc: ldc)
                let mismatches = zip(out, expected).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(mismatches == 0, "\(backend.rawValue) \(s): \(mismatches) elements differ from the reference order")
                checked += 1
            }
        }
        #expect(checked >= Self.shapes.count * 2, "at least sse2 and one more kernel run on any x86-64 CPU")
    }

    @Test func betaZeroNeverReadsC() {
        let a = [Float](repeating: 1, count: 64 * 64), b = [Float](repeating: 0.5, count: 64 * 64)
        for backend in GEMMBackend.allCases where backend.isSupported {
            var c = [Float](repeating: .nan, count: 64 * 64)
            gemm(transposeA: false, transposeB: false, m: 64, n: 64, k: 64, alpha: 1, a: a, lda: 64, b: b, ldb: 64,
                 beta: 0, c: &c, ldc: 64, backend: backend)
            #expect(c.allSatisfy { $0 == 32 }, "\(backend.rawValue)")
        }
    }

    @Test func fusedAndUnfusedKernelsDiffer() {
        // The classes must be told apart, or the numerics fingerprint could not refuse a mixed cluster.
        var rng = SeededRNG(seed: 3)
        let a = (0..<(64 * 64)).map { _ in Float(rng.nextGaussian()) }, b = (0..<(64 * 64)).map { _ in Float(rng.nextGaussian()) }
        guard GEMMBackend.best.arithmetic == .fma else { return }
        var fused = [Float](repeating: 0, count: 64 * 64), unfused = fused
        gemm(transposeA: false, transposeB: false, m: 64, n: 64, k: 64, alpha: 1, a: a, lda: 64, b: b, ldb: 64,
             beta: 0, c: &fused, ldc: 64, backend: .best)
        gemm(transposeA: false, transposeB: false, m: 64, n: 64, k: 64, alpha: 1, a: a, lda: 64, b: b, ldb: 64,
             beta: 0, c: &unfused, ldc: 64, backend: .portable)
        #expect(fused != unfused)
    }

    @Test func kernelSettingIsValidated() throws {
        #expect(try Numerics.kernel(fromEnvironment: [:]) == nil)
        #expect(try Numerics.kernel(fromEnvironment: ["METATRAIN_KERNEL": "portable"])?.arithmetic == .mulAdd)
        #expect(try Numerics.kernel(fromEnvironment: ["METATRAIN_KERNEL": "sse2"]) == .sse2)
        #expect(throws: NumericsError.unknownKernel("avx9")) { try Numerics.kernel(fromEnvironment: ["METATRAIN_KERNEL": "avx9"]) }
        #expect(GEMMBackend.portable.arithmetic == .mulAdd && GEMMBackend.portable.isSupported)
        #expect(!Numerics.cpuModel.isEmpty && Numerics.cpuFeatures.contains("sse2"))
    }
}

extension KernelTests {
    /// An epilogue gives the bits of the passes it replaces: C's rows set from the input (a bias row, or a matrix with
    /// its own stride), the plain GEMM, then the ReLU and the gate as separate passes — on every kernel, shape and
    /// width edge, with -0, NaN, zero and negative values where the selects could differ.
    @Test func epilogueIsTheSeparatePassesBitForBit() throws {
        var rng = SeededRNG(seed: 41)
        var checked = 0
        let specials: [Float] = [0, -0.0, .nan, -1, 1e-30]
        func draw() -> Float {
            rng.nextInt(below: 8) == 0 ? specials[rng.nextInt(below: specials.count)] : Float(rng.nextGaussian())
        }
        for (index, s) in Self.shapes.enumerated() {
            let lda = (s.ta ? s.m : s.k) + 1, ldb = (s.tb ? s.k : s.n) + 2, ldc = s.n + 1
            let a = (0..<((s.ta ? s.k : s.m) * lda)).map { _ in draw() }
            let b = (0..<((s.tb ? s.n : s.k) * ldb)).map { _ in draw() }
            let c = (0..<(s.m * ldc)).map { _ in draw() }
            // Alternate a bias row (stride 0) and a full input matrix with its own stride.
            let biasRow = index % 2 == 0, ldin = biasRow ? 0 : s.n + 3
            let input = (0..<(biasRow ? s.n : s.m * ldin)).map { _ in draw() }
            let ldg = s.n + 4
            let gate = (0..<(s.m * ldg)).map { _ in draw() }
            let relu = index % 3 != 0, gated = index % 4 < 2
            for backend in GEMMBackend.allCases where backend.isSupported && backend.arithmetic != .openBLAS {
                var separate = c
                for i in 0..<s.m { for j in 0..<s.n { separate[i * ldc + j] = input[i * ldin + j] } }
                gemm(transposeA: s.ta, transposeB: s.tb, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: a, lda: lda,
                     b: b, ldb: ldb, beta: s.beta, c: &separate, ldc: ldc, backend: backend)
                for i in 0..<s.m {
                    for j in 0..<s.n {
                        if relu && separate[i * ldc + j] < 0 { separate[i * ldc + j] = 0 }
                        if gated && !(gate[i * ldg + j] > 0) { separate[i * ldc + j] = 0 }
                    }
                }
                var fused = c
                input.withUnsafeBufferPointer { inputs in
                    gate.withUnsafeBufferPointer { gates in
                        var e = GEMMEpilogue.bias(inputs.baseAddress!, relu: relu)
                        e.inputStride = ldin
                        if gated { e.gate = gates.baseAddress!; e.gateStride = ldg }
                        gemm(transposeA: s.ta, transposeB: s.tb, m: s.m, n: s.n, k: s.k, alpha: s.alpha, a: a, lda: lda,
                             b: b, ldb: ldb, beta: s.beta, c: &fused, ldc: ldc, backend: backend, epilogue: e)
                    }
                }
                let mismatches = zip(fused, separate).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(mismatches == 0, "\(backend.rawValue) \(s) relu=\(relu) gate=\(gated) ldin=\(ldin): \(mismatches) differ")
                checked += 1
            }
        }
        #expect(checked >= Self.shapes.count * 2)
    }

    /// The MLP's forward pass, bias and ReLU fused, gives the bits of the layer sums in the documented order, written
    /// out in plain Swift for a network with width edges (17, 9) on every kernel.
    @Test func forwardWithFusedBiasAndReLUMatchesThePlainLayerSum() throws {
        var rng = SeededRNG(seed: 8)
        for backend in GEMMBackend.allCases where backend.isSupported && backend.arithmetic != .openBLAS {
            let mlp = try MLP(sizes: [4, 17, 9, 2], backend: backend)
            let theta = mlp.initialParameters(using: &rng)
            let batch = 5
            let x = (0..<(batch * 4)).map { _ in Float(rng.nextGaussian()) }
            let ws = MLPWorkspace(mlp: mlp, capacity: batch)
            let q = theta.values.withUnsafeBufferPointer { p in
                x.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: mlp.forward(p.baseAddress!, input: $0.baseAddress!, batch: batch, workspace: ws), count: batch * 2)) }
            }
            // The order mt_kernels.h states: acc over q in order (fused or not), then acc·1 + bias·1, then the ReLU.
            var h = x, width = 4
            for (index, layer) in mlp.layers.enumerated() {
                var y = [Float](repeating: 0, count: batch * layer.outputs)
                for r in 0..<batch {
                    for j in 0..<layer.outputs {
                        var acc: Float = 0
                        for i in 0..<width {
                            let w = theta.values[layer.weightOffset + i * layer.outputs + j]
                            acc = backend.arithmetic == .fma ? acc.addingProduct(h[r * width + i], w) : acc + h[r * width + i] * w
                        }
                        var value = acc * 1 + theta.values[layer.biasOffset + j] * 1
                        if index < mlp.layers.count - 1 && value < 0 { value = 0 }
                        y[r * layer.outputs + j] = value
                    }
                }
                h = y; width = layer.outputs
            }
            #expect(zip(q, h).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(backend.rawValue)")
        }
    }

    /// The bias gradient's column sums keep the row order (row 0, then each row added) at every width edge.
    @Test func columnSumsAddTheRowsInOrder() {
        var rng = SeededRNG(seed: 5)
        for rows in [1, 2, 3, 64] {
            for columns in [1, 7, 8, 9, 31, 32, 33, 40, 64, 70] {
                let m = (0..<(rows * columns)).map { _ in Float(rng.nextGaussian()) * 1e3 }
                var out = [Float](repeating: .nan, count: columns)
                m.withUnsafeBufferPointer { p in out.withUnsafeMutableBufferPointer { columnSums(p.baseAddress!, rows: rows, columns: columns, into: $0.baseAddress!) } }
                for j in 0..<columns {
                    var s = m[j]
                    for r in 1..<rows { s = s + m[r * columns + j] }
                    #expect(out[j].bitPattern == s.bitPattern, "rows \(rows) columns \(columns) column \(j)")
                }
            }
        }
    }

    /// Adam at the CPU's widest width gives the bits of the plain scalar expression.
    @Test func adamStepIsTheScalarExpressionBitForBit() {
        var rng = SeededRNG(seed: 12)
        let count = 1_003
        let g = (0..<count).map { _ in Float(rng.nextGaussian()) }
        var theta = (0..<count).map { _ in Float(rng.nextGaussian()) }
        var m = (0..<count).map { _ in Float(rng.nextGaussian()) * 0.1 }
        var v = (0..<count).map { _ in abs(Float(rng.nextGaussian())) * 0.01 }
        var (rt, rm, rv) = (theta, m, v)
        let (b1, b2, eps, stepSize, inverse): (Float, Float, Float, Float, Float) = (0.9, 0.999, 1e-8, 2.5e-4, 1.7)
        for i in 0..<count {
            rm[i] = b1 * rm[i] + (1 - b1) * g[i]
            rv[i] = b2 * rv[i] + (1 - b2) * g[i] * g[i]
            rt[i] = rt[i] - stepSize * rm[i] / (rv[i].squareRoot() * inverse + eps)
        }
        adamStep(theta: &theta, gradient: g, m: &m, v: &v, count: count, beta1: b1, beta2: b2, epsilon: eps,
                 stepSize: stepSize, bc2Sqrt: 1 / inverse)
        #expect(zip(theta, rt).allSatisfy { $0.bitPattern == $1.bitPattern })
        #expect(zip(m, rm).allSatisfy { $0.bitPattern == $1.bitPattern })
        #expect(zip(v, rv).allSatisfy { $0.bitPattern == $1.bitPattern })
    }
}

/// The default kernel is chosen by measurement among the kernels of the widest class's arithmetic (issue 37): a
/// supported kernel of that class, so the bits are the same whichever wins.
@Suite struct KernelCalibrationTests {
    @Test func theFastestIsASupportedKernelOfTheBestClass() {
        #expect(GEMMBackend.fastest.isSupported && GEMMBackend.fastest.arithmetic == GEMMBackend.best.arithmetic)
        #expect(GEMMBackend.fastestMulAdd.isSupported && GEMMBackend.fastestMulAdd.arithmetic == .mulAdd)
        let candidates = GEMMBackend.allCases.filter { $0.arithmetic == .mulAdd && $0.isSupported }
        #expect(candidates.contains(GEMMBackend.calibrate(among: candidates)))
        #expect(GEMMBackend.calibrate(among: [.sse2]) == .sse2, "one candidate is returned unmeasured")
    }
}
