/// Forward and backward passes of the MLP as GEMMs over a batch.
extension MLP {
    /// Computes Q for `batch` inputs (batch × inputSize, row-major) into `workspace.output`.
    ///
    /// Keeps every layer's activation in the workspace for a following `backward`.
    @discardableResult
    public func forward(
        _ parameters: UnsafePointer<Float>, input: UnsafePointer<Float>, batch: Int, workspace ws: MLPWorkspace
    ) -> UnsafeMutablePointer<Float> {
        precondition(batch > 0 && batch <= ws.capacity, "batch \(batch) outside workspace capacity \(ws.capacity)")
        ws.activations[0].update(from: input, count: batch * inputSize)
        for (index, layer) in layers.enumerated() {
            let x = ws.activations[index], y = ws.activations[index + 1]
            affine(layer, parameters, x: x, batch: batch, into: y, relu: index < layers.count - 1)
        }
        return ws.output
    }

    /// Writes dLoss/dθ into `gradient`, given dLoss/dQ in `workspace.outputGradient`.
    ///
    /// Requires the `forward` of the same batch on the same workspace just before. Overwrites
    /// `gradient` (it does not accumulate).
    public func backward(
        _ parameters: UnsafePointer<Float>, batch: Int, workspace ws: MLPWorkspace,
        gradient: UnsafeMutablePointer<Float>
    ) {
        for index in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[index]
            let delta = ws.deltas[index + 1], x = ws.activations[index]
            // dW = xᵀ·δ, db = Σ_rows δ
            gemm(transposeA: true, transposeB: false, m: layer.inputs, n: layer.outputs, k: batch,
                 alpha: 1, a: x, lda: layer.inputs, b: delta, ldb: layer.outputs,
                 beta: 0, c: gradient + layer.weightOffset, ldc: layer.outputs, backend: backend)
            columnSums(delta, rows: batch, columns: layer.outputs, into: gradient + layer.biasOffset)
            guard index > 0 else { break }
            // δ_prev = (δ·Wᵀ) ⊙ relu'(z_prev); relu'(z) = [a > 0] since a = max(z, 0): the gate, fused.
            gemm(transposeA: false, transposeB: true, m: batch, n: layer.inputs, k: layer.outputs,
                 alpha: 1, a: delta, lda: layer.outputs, b: parameters + layer.weightOffset, ldb: layer.outputs,
                 beta: 0, c: ws.deltas[index], ldc: layer.inputs, backend: backend,
                 epilogue: .gate(x, stride: layer.inputs))
        }
    }

    /// y = x·W + b for one layer, then max(y, 0) when `relu`: one GEMM, the bias and ReLU fused into its store.
    @inline(__always)
    func affine(_ layer: Layer, _ p: UnsafePointer<Float>, x: UnsafePointer<Float>, batch: Int,
                into y: UnsafeMutablePointer<Float>, relu: Bool = false) {
        gemm(transposeA: false, transposeB: false, m: batch, n: layer.outputs, k: layer.inputs,
             alpha: 1, a: x, lda: layer.inputs, b: p + layer.weightOffset, ldb: layer.outputs,
             beta: 1, c: y, ldc: layer.outputs, backend: backend,
             epilogue: .bias(p + layer.biasOffset, relu: relu))
    }
}

/// x ← max(x, 0), in SIMD chunks: branch-free, since activations are ~50% negative.
@inline(__always)
func relu(_ x: UnsafeMutablePointer<Float>, count: Int) {
    typealias V = SIMD8<Float>
    let raw = UnsafeMutableRawPointer(x)
    var i = 0
    while i + V.scalarCount <= count {
        let v = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
        raw.storeBytes(of: v.replacing(with: 0, where: v .< 0), toByteOffset: i * 4, as: V.self)
        i += V.scalarCount
    }
    while i < count { x[i] = max(x[i], 0); i += 1 }
}

/// g ← g ⊙ [a > 0], in SIMD chunks (relu′ from the stored activation, since a = max(z, 0)).
@inline(__always)
func reluMask(_ g: UnsafeMutablePointer<Float>, activation a: UnsafePointer<Float>, count: Int) {
    typealias V = SIMD8<Float>
    let graw = UnsafeMutableRawPointer(g), araw = UnsafeRawPointer(a)
    var i = 0
    while i + V.scalarCount <= count {
        let gv = graw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
        let av = araw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
        graw.storeBytes(of: gv.replacing(with: 0, where: .!(av .> 0)), toByteOffset: i * 4, as: V.self)
        i += V.scalarCount
    }
    while i < count { g[i] = a[i] > 0 ? g[i] : 0; i += 1 }
}

/// out[j] = Σ_r m[r][j], each column summed in row order from row 0 (the bits of out = row 0, then out += each row).
///
/// Columns go 32 at a time through four SIMD registers across all rows, so the sums are stored once, not once per row.
@inline(__always)
func columnSums(_ m: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    typealias V = SIMD8<Float>
    let raw = UnsafeRawPointer(m), outRaw = UnsafeMutableRawPointer(out)
    let rows = max(rows, 1)
    @inline(__always) func load(_ r: Int, _ j: Int) -> V { raw.loadUnaligned(fromByteOffset: (r * columns + j) * 4, as: V.self) }
    var j = 0
    while j + 4 * V.scalarCount <= columns {
        var s0 = load(0, j), s1 = load(0, j + 8), s2 = load(0, j + 16), s3 = load(0, j + 24)
        for r in 1..<rows {
            s0 += load(r, j); s1 += load(r, j + 8); s2 += load(r, j + 16); s3 += load(r, j + 24)
        }
        outRaw.storeBytes(of: s0, toByteOffset: j * 4, as: V.self)
        outRaw.storeBytes(of: s1, toByteOffset: (j + 8) * 4, as: V.self)
        outRaw.storeBytes(of: s2, toByteOffset: (j + 16) * 4, as: V.self)
        outRaw.storeBytes(of: s3, toByteOffset: (j + 24) * 4, as: V.self)
        j += 4 * V.scalarCount
    }
    while j + V.scalarCount <= columns {
        var s = load(0, j)
        for r in 1..<rows { s += load(r, j) }
        outRaw.storeBytes(of: s, toByteOffset: j * 4, as: V.self)
        j += V.scalarCount
    }
    while j < columns {
        var s = m[j]
        for r in 1..<rows { s += m[r * columns + j] }
        out[j] = s
        j += 1
    }
}
