/// The regression loss on Q(s, a) against TD targets, as in `F.smooth_l1_loss` / `F.mse_loss`.
public enum RegressionLoss: String, Sendable, Codable, CaseIterable {
    /// Huber with δ = 1 (PyTorch's smooth L1, β = 1): ½e² for |e| < 1, |e| − ½ beyond.
    case huber
    /// Mean squared error e².
    case mse

    /// Mean loss over the batch of Q[b, action_b] against target_b.
    ///
    /// Writes dLoss/dQ into `gradient` (batch × actionCount, zero except the chosen actions) and,
    /// when `curvature` is given, the diagonal d²Loss/dQ² the Hessian-vector product needs.
    public func evaluate(
        q: UnsafePointer<Float>, actionCount: Int, batch: Int,
        actions: UnsafePointer<Int32>, targets: UnsafePointer<Float>,
        gradient: UnsafeMutablePointer<Float>, curvature: UnsafeMutablePointer<Float>? = nil
    ) -> Float {
        gradient.update(repeating: 0, count: batch * actionCount)
        curvature?.update(repeating: 0, count: batch * actionCount)
        let inverseBatch = 1 / Float(batch)
        var total: Float = 0
        for r in 0..<batch {
            let index = r * actionCount + Int(actions[r])
            let e = q[index] - targets[r]
            switch self {
            case .huber:
                let inside = abs(e) < 1
                total += inside ? 0.5 * e * e : abs(e) - 0.5
                gradient[index] = (inside ? e : (e > 0 ? 1 : -1)) * inverseBatch
                curvature?[index] = inside ? inverseBatch : 0
            case .mse:
                total += e * e
                gradient[index] = 2 * e * inverseBatch
                curvature?[index] = 2 * inverseBatch
            }
        }
        return total * inverseBatch
    }
}
