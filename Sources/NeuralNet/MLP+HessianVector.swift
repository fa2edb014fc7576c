/// The exact Hessian-vector product of the Q-regression loss (Pearlmutter's R-operator).
///
/// MAML's second-order meta-gradient multiplies by (I − αH) once per inner step; this computes
/// H·v in one forward pass, one R-forward pass and one R-backward pass (forward-over-reverse),
/// about the cost of two gradients, and with no finite-difference error.
extension MLP {
    /// Writes H·v into `result`, where H = ∂²Loss/∂θ² of `loss` on this batch at `parameters`.
    ///
    /// The targets are constants (the TD target is held fixed, as in semi-gradient DQN). ReLU's
    /// second derivative is zero almost everywhere, so curvature enters through the loss and through
    /// products of layers.
    /// - Returns: the loss value at `parameters`.
    @discardableResult
    public func hessianVectorProduct(
        _ parameters: UnsafePointer<Float>, direction v: UnsafePointer<Float>,
        input: UnsafePointer<Float>, actions: UnsafePointer<Int32>, targets: UnsafePointer<Float>,
        batch: Int, loss: RegressionLoss, workspace ws: MLPWorkspace,
        result: UnsafeMutablePointer<Float>
    ) -> Float {
        let last = layers.count
        forward(parameters, input: input, batch: batch, workspace: ws)
        let value = loss.evaluate(q: ws.output, actionCount: outputSize, batch: batch, actions: actions,
                                  targets: targets, gradient: ws.outputGradient, curvature: ws.outputCurvature)

        // R-forward: R{z_l} = R{a_{l-1}}·W_l + a_{l-1}·V_l + v_b;  R{a_l} = R{z_l} ⊙ relu'(z_l).
        ws.rActivations[0].update(repeating: 0, count: batch * inputSize)
        for (index, layer) in layers.enumerated() {
            let x = ws.activations[index], rx = ws.rActivations[index], ry = ws.rActivations[index + 1]
            affine(layer, v, x: x, batch: batch, into: ry)
            if index > 0 {
                gemm(transposeA: false, transposeB: false, m: batch, n: layer.outputs, k: layer.inputs,
                     alpha: 1, a: rx, lda: layer.inputs, b: parameters + layer.weightOffset, ldb: layer.outputs,
                     beta: 1, c: ry, ldc: layer.outputs, backend: backend)
            }
            if index < last - 1 { reluMask(ry, activation: ws.activations[index + 1], count: batch * layer.outputs) }
        }

        // R{dLoss/dQ} = d²Loss/dQ² ⊙ R{Q} (both losses are separable in the outputs).
        let rq = ws.rActivations[last], rDeltaOut = ws.rDeltas[last]
        for i in 0..<(batch * outputSize) { rDeltaOut[i] = ws.outputCurvature[i] * rq[i] }

        // R-backward: R{dW} = R{x}ᵀ·δ + xᵀ·R{δ};  R{δ_prev} = (R{δ}·Wᵀ + δ·Vᵀ) ⊙ relu'(z_prev).
        for index in stride(from: last - 1, through: 0, by: -1) {
            let layer = layers[index]
            let delta = ws.deltas[index + 1], rDelta = ws.rDeltas[index + 1]
            let x = ws.activations[index], rx = ws.rActivations[index]
            gemm(transposeA: true, transposeB: false, m: layer.inputs, n: layer.outputs, k: batch,
                 alpha: 1, a: x, lda: layer.inputs, b: rDelta, ldb: layer.outputs,
                 beta: 0, c: result + layer.weightOffset, ldc: layer.outputs, backend: backend)
            if index > 0 {
                gemm(transposeA: true, transposeB: false, m: layer.inputs, n: layer.outputs, k: batch,
                     alpha: 1, a: rx, lda: layer.inputs, b: delta, ldb: layer.outputs,
                     beta: 1, c: result + layer.weightOffset, ldc: layer.outputs, backend: backend)
            }
            columnSums(rDelta, rows: batch, columns: layer.outputs, into: result + layer.biasOffset)
            guard index > 0 else { break }
            let previous = ws.deltas[index], rPrevious = ws.rDeltas[index]
            gemm(transposeA: false, transposeB: true, m: batch, n: layer.inputs, k: layer.outputs,
                 alpha: 1, a: delta, lda: layer.outputs, b: parameters + layer.weightOffset, ldb: layer.outputs,
                 beta: 0, c: previous, ldc: layer.inputs, backend: backend)
            gemm(transposeA: false, transposeB: true, m: batch, n: layer.inputs, k: layer.outputs,
                 alpha: 1, a: rDelta, lda: layer.outputs, b: parameters + layer.weightOffset, ldb: layer.outputs,
                 beta: 0, c: rPrevious, ldc: layer.inputs, backend: backend)
            gemm(transposeA: false, transposeB: true, m: batch, n: layer.inputs, k: layer.outputs,
                 alpha: 1, a: delta, lda: layer.outputs, b: v + layer.weightOffset, ldb: layer.outputs,
                 beta: 1, c: rPrevious, ldc: layer.inputs, backend: backend)
            reluMask(previous, activation: x, count: batch * layer.inputs)
            reluMask(rPrevious, activation: x, count: batch * layer.inputs)
        }
        return value
    }
}

/// Array-level entry points, for callers outside the hot path (tests, MAML, tools).
extension MLP {
    /// Loss of Q(s, a) against `targets` and its gradient with respect to `parameters`.
    public func lossAndGradient(
        _ parameters: ParameterVector, inputs: [Float], actions: [Int32], targets: [Float],
        loss: RegressionLoss, workspace ws: MLPWorkspace, gradient: inout ParameterVector
    ) -> Float {
        let batch = actions.count
        precondition(inputs.count == batch * inputSize && targets.count == batch, "batch arrays disagree in size")
        if gradient.count != parameterCount { gradient = ParameterVector(zeros: parameterCount) }
        return parameters.values.withUnsafeBufferPointer { p in
            gradient.values.withUnsafeMutableBufferPointer { g in
                forward(p.baseAddress!, input: inputs, batch: batch, workspace: ws)
                let value = loss.evaluate(q: ws.output, actionCount: outputSize, batch: batch, actions: actions,
                                          targets: targets, gradient: ws.outputGradient)
                backward(p.baseAddress!, batch: batch, workspace: ws, gradient: g.baseAddress!)
                return value
            }
        }
    }

    /// H·v of the same loss; see `hessianVectorProduct(_:direction:…)`.
    public func hessianVectorProduct(
        _ parameters: ParameterVector, direction: ParameterVector, inputs: [Float], actions: [Int32],
        targets: [Float], loss: RegressionLoss, workspace ws: MLPWorkspace
    ) -> ParameterVector {
        var out = ParameterVector(zeros: parameterCount)
        parameters.values.withUnsafeBufferPointer { p in
            direction.values.withUnsafeBufferPointer { v in
                out.values.withUnsafeMutableBufferPointer { r in
                    _ = hessianVectorProduct(p.baseAddress!, direction: v.baseAddress!, input: inputs, actions: actions,
                                             targets: targets, batch: actions.count, loss: loss, workspace: ws,
                                             result: r.baseAddress!)
                }
            }
        }
        return out
    }

    /// Q-values for a batch of inputs, as an array (batch × outputs).
    public func predict(_ parameters: ParameterVector, inputs: [Float], workspace ws: MLPWorkspace) -> [Float] {
        let batch = inputs.count / inputSize
        return parameters.values.withUnsafeBufferPointer { p in
            let out = forward(p.baseAddress!, input: inputs, batch: batch, workspace: ws)
            return Array(UnsafeBufferPointer(start: out, count: batch * outputSize))
        }
    }
}

/// Regression of every output onto a target vector: policy distillation's loss and MAML's teacher query.
extension MLP {
    /// Mean squared error of Q (batch × outputs) against `targets` (the same shape), averaged over every entry;
    /// writes its gradient with respect to the parameters into `gradient` (overwritten).
    ///
    /// With `centered`, each row of Q and of the targets first has its own mean over the outputs subtracted: the
    /// error is then in advantages (which action is how much better), blind to the level of the values.
    /// One definition for the places that fit a whole Q-vector to a teacher's (the distillation student and the
    /// teacher query of MAML), so their losses cannot drift apart.
    @discardableResult
    public func meanSquaredError(
        _ parameters: UnsafePointer<Float>, input: UnsafePointer<Float>, targets: UnsafePointer<Float>, batch: Int,
        centered: Bool = false, workspace ws: MLPWorkspace, gradient: UnsafeMutablePointer<Float>
    ) -> Float {
        let q = forward(parameters, input: input, batch: batch, workspace: ws)
        let count = batch * outputSize
        // dL/dQ = 2(Q − y) / (batch · outputs); centred, 2(e − mean e) / (batch · outputs) = 2e / (batch · outputs),
        // since the centred error e already sums to zero over each row.
        let scale = 2 / Float(count)
        var total: Float = 0
        if centered {
            let inverseOutputs = 1 / Float(outputSize)
            for r in 0..<batch {
                let row = r * outputSize
                var shift: Float = 0
                for a in 0..<outputSize { shift += q[row + a] - targets[row + a] }
                shift *= inverseOutputs
                for a in 0..<outputSize {
                    let e = q[row + a] - targets[row + a] - shift
                    total += e * e
                    ws.outputGradient[row + a] = scale * e
                }
            }
        } else {
            for k in 0..<count {
                let e = q[k] - targets[k]
                total += e * e
                ws.outputGradient[k] = scale * e
            }
        }
        backward(parameters, batch: batch, workspace: ws, gradient: gradient)
        return total / Float(count)
    }

    /// `meanSquaredError` on arrays: inputs batch × inputSize, targets batch × outputSize.
    public func meanSquaredError(
        _ parameters: ParameterVector, inputs: [Float], targets: [Float], centered: Bool = false, workspace ws: MLPWorkspace,
        gradient: inout ParameterVector
    ) -> Float {
        let batch = inputs.count / inputSize
        precondition(batch > 0 && inputs.count == batch * inputSize && targets.count == batch * outputSize,
                     "regression arrays disagree in size")
        if gradient.count != parameterCount { gradient = ParameterVector(zeros: parameterCount) }
        return parameters.values.withUnsafeBufferPointer { p in
            gradient.values.withUnsafeMutableBufferPointer { g in
                meanSquaredError(p.baseAddress!, input: inputs, targets: targets, batch: batch, centered: centered,
                                 workspace: ws, gradient: g.baseAddress!)
            }
        }
    }
}
