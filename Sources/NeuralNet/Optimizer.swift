import CKernels

/// Which optimiser the inner loop (or the meta-update) uses.
public enum OptimizerKind: String, Sendable, Codable, CaseIterable { case sgd, adam }

/// SGD or Adam over a flat parameter vector, with flat state, PyTorch's update rules.
///
/// Adam: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; θ ← θ − lr·m̂/(√v̂ + ε) with bias-corrected m̂, v̂
/// (torch.optim.Adam without weight decay). SGD: θ ← θ − lr·g.
public struct Optimizer: Sendable, Equatable {
    public let kind: OptimizerKind
    public var learningRate: Float
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    /// First and second moments (Adam only; empty for SGD), and the number of steps taken.
    public private(set) var m: [Float]
    public private(set) var v: [Float]
    public private(set) var step: Int

    public init(kind: OptimizerKind, parameterCount: Int, learningRate: Float,
                beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.kind = kind
        self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        m = kind == .adam ? [Float](repeating: 0, count: parameterCount) : []
        v = kind == .adam ? [Float](repeating: 0, count: parameterCount) : []
        step = 0
    }

    /// Restores saved state (a checkpoint's meta-optimiser); sizes must match.
    public mutating func restore(m: [Float], v: [Float], step: Int) {
        precondition(m.count == self.m.count && v.count == self.v.count && step >= 0, "optimizer state does not fit")
        self.m = m; self.v = v; self.step = step
    }

    /// Applies one update θ ← θ − lr·direction(g).
    public mutating func apply(gradient g: UnsafePointer<Float>, to theta: UnsafeMutablePointer<Float>, count: Int) {
        step += 1
        let lr = learningRate
        switch kind {
        case .sgd:
            for i in 0..<count { theta[i] -= lr * g[i] }
        case .adam:
            let b1 = beta1, b2 = beta2, eps = epsilon
            // torch: step_size = lr / bc1; denom = sqrt(v) / sqrt(bc2) + eps (we multiply by the reciprocal)
            let bc1 = 1 - Float(Double(b1).power(step))
            let bc2Sqrt = (1 - Float(Double(b2).power(step))).squareRoot()
            let stepSize = lr / bc1
            m.withUnsafeMutableBufferPointer { mp in
                v.withUnsafeMutableBufferPointer { vp in
                    adamStep(theta: theta, gradient: g, m: mp.baseAddress!, v: vp.baseAddress!, count: count,
                             beta1: b1, beta2: b2, epsilon: eps, stepSize: stepSize, bc2Sqrt: bc2Sqrt)
                }
            }
        }
    }

    /// Array-level `apply`.
    public mutating func apply(gradient: ParameterVector, to theta: inout ParameterVector) {
        precondition(gradient.count == theta.count, "gradient and parameters differ in size")
        gradient.values.withUnsafeBufferPointer { g in
            theta.values.withUnsafeMutableBufferPointer { t in apply(gradient: g.baseAddress!, to: t.baseAddress!, count: t.count) }
        }
    }
}

extension Double {
    /// self^n for a non-negative integer n by repeated squaring (exact order, no libm pow).
    func power(_ n: Int) -> Double {
        var result = 1.0, base = self, e = n
        while e > 0 {
            if e & 1 == 1 { result *= base }
            base *= base
            e >>= 1
        }
        return result
    }
}

/// Scales `g` so its Euclidean norm is at most `maxNorm`; returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ g: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Float {
    var sumSquares: Float = 0
    for i in 0..<count { sumSquares += g[i] * g[i] }
    let total = sumSquares.squareRoot()
    if total > maxNorm {
        // torch.nn.utils.clip_grad_norm_: coefficient max_norm / (total + 1e-6)
        let coefficient = maxNorm / (total + 1e-6)
        for i in 0..<count { g[i] *= coefficient }
    }
    return total
}

/// Adam's element-wise update: CKernels' `mt_adam_step` at the CPU's widest vector width (the same bits at
/// any width: nothing in it is fused, and ×, +, ÷, √ are correctly rounded).
@inline(__always)
func adamStep(theta: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>,
              m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
              beta1 b1: Float, beta2 b2: Float, epsilon eps: Float, stepSize: Float, bc2Sqrt: Float) {
    let inverseBc2Sqrt = 1 / bc2Sqrt  // one division per element instead of two
    mt_adam_step(theta, g, m, v, count, b1, b2, eps, stepSize, inverseBc2Sqrt)
}
