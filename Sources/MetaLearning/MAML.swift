import DQN
import Environments
import NeuralNet

/// Second-order MAML's meta-gradient through an SGD inner loop.
///
/// With φ₀ = θ and φ_{j+1} = φ_j − α∇L_j(φ_j) (L_j: step j's TD loss, its minibatch and targets held
/// fixed), dφ_K/dθ = Π_j (I − α H_j) with H_j = ∇²L_j(φ_j). The meta-gradient of the query loss is
/// therefore g = (I − αH_0)(I − αH_1)…(I − αH_{K−1}) ∇L_query(φ_K), computed right to left with one exact
/// Hessian-vector product per inner step (Pearlmutter's R-operator): no Hessian is ever formed.
public func secondOrderMetaGradient(
    mlp: MLP, steps: [UpdateRecord], learningRate alpha: Float, queryGradient: ParameterVector,
    loss: RegressionLoss
) -> ParameterVector {
    let capacity = max(steps.map(\.actions.count).max() ?? 1, 1)
    let workspace = MLPWorkspace(mlp: mlp, capacity: capacity)
    var v = queryGradient
    for step in steps.reversed() {
        let hv = mlp.hessianVectorProduct(step.parameters, direction: v, inputs: step.observations,
                                          actions: step.actions, targets: step.targets, loss: loss, workspace: workspace)
        axpy(-alpha, hv, &v)
    }
    return v
}

/// Why an inner-loop configuration cannot be used with second-order MAML.
public func mamlIncompatibility(_ config: DQNConfig) -> String? {
    if config.optimizer != .sgd { return "second-order MAML differentiates through SGD inner steps: set inner_loop.optimizer: sgd" }
    if config.maxGradientNorm != nil { return "second-order MAML cannot differentiate through gradient clipping: set inner_loop.max_gradient_norm: 0" }
    return nil
}
