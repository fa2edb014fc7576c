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
            affine(layer, parameters, x: x, batch: batch, into: y)
            if index < layers.count - 1 { relu(y, count: batch * layer.outputs) }
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
            // δ_prev = (δ·Wᵀ) ⊙ relu'(z_prev); relu'(z) = [a > 0] since a = max(z, 0).
            let previous = ws.deltas[index]
            gemm(transposeA: false, transposeB: true, m: batch, n: layer.inputs, k: layer.outputs,
                 alpha: 1, a: delta, lda: layer.outputs, b: parameters + layer.weightOffset, ldb: layer.outputs,
                 beta: 0, c: previous, ldc: layer.inputs, backend: backend)
            reluMask(previous, activation: x, count: batch * layer.inputs)
        }
    }

    /// y = x·W + b for one layer.
    @inline(__always)
    func affine(_ layer: Layer, _ p: UnsafePointer<Float>, x: UnsafePointer<Float>, batch: Int,
                into y: UnsafeMutablePointer<Float>) {
        let bias = p + layer.biasOffset
        for r in 0..<batch { (y + r * layer.outputs).update(from: bias, count: layer.outputs) }
        gemm(transposeA: false, transposeB: false, m: batch, n: layer.outputs, k: layer.inputs,
             alpha: 1, a: x, lda: layer.inputs, b: p + layer.weightOffset, ldb: layer.outputs,
             beta: 1, c: y, ldc: layer.outputs, backend: backend)
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

@inline(__always)
func columnSums(_ m: UnsafePointer<Float>, rows: Int, columns: Int, into out: UnsafeMutablePointer<Float>) {
    out.update(from: m, count: columns)
    for r in 1..<max(rows, 1) { vectorAdd(m + r * columns, into: out, count: columns) }
}

/// y ← y + x, in SIMD chunks.
@inline(__always)
func vectorAdd(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    typealias V = SIMD8<Float>
    let xraw = UnsafeRawPointer(x), yraw = UnsafeMutableRawPointer(y)
    var i = 0
    while i + V.scalarCount <= count {
        let sum = yraw.loadUnaligned(fromByteOffset: i * 4, as: V.self) + xraw.loadUnaligned(fromByteOffset: i * 4, as: V.self)
        yraw.storeBytes(of: sum, toByteOffset: i * 4, as: V.self)
        i += V.scalarCount
    }
    while i < count { y[i] += x[i]; i += 1 }
}
