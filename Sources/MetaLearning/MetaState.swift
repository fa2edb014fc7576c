import NeuralNet

/// θ, the meta-optimiser and the number of meta-updates applied: everything a checkpoint restores.
public struct MetaState: Sendable, Equatable {
    public var theta: ParameterVector
    public var optimizer: Optimizer
    /// Meta-updates applied so far; also θ's version number on the wire.
    public var iteration: Int
    /// A pipelined run's θ one version back (`MetaSettings.baseVersion`): what the current iteration's slots adapt,
    /// θ_{t−1} (θ_0 at iteration 0). nil in a run that is not pipelined, whose slots adapt `theta`.
    public var previousTheta: ParameterVector?

    public init(theta: ParameterVector, settings: MetaSettings) {
        self.theta = theta
        optimizer = Optimizer(kind: settings.optimizer, parameterCount: theta.count, learningRate: settings.outerStep)
        iteration = 0
        previousTheta = settings.isPipelined ? theta : nil
    }

    public init(theta: ParameterVector, optimizer: Optimizer, iteration: Int, previousTheta: ParameterVector? = nil) {
        self.theta = theta; self.optimizer = optimizer; self.iteration = iteration; self.previousTheta = previousTheta
    }

    /// θ of `version`, if this state holds it: the current version, or a pipelined run's previous one.
    public func theta(version: Int) -> ParameterVector? {
        if version == iteration { return theta }
        if let previousTheta, version == max(iteration - 1, 0) { return previousTheta }
        return nil
    }

    /// Applies one meta-update from the slots' updates, which must be given in slot order.
    ///
    /// Reptile: g = −mean(φᵢ − θ) = θ − mean φᵢ. FOMAML and MAML: g = mean of the slots' meta-gradients.
    /// Distillation: one update, student − θ (the coordinator distils first), so g = θ − student.
    /// Then θ ← opt(θ, g) with
    /// the scheduled step. Summing in slot order makes θ independent of which worker finished first.
    public mutating func apply(updates: [ParameterVector], settings: MetaSettings) {
        precondition(!updates.isEmpty && updates.allSatisfy { $0.count == theta.count },
                     "meta-update needs \(theta.count)-value updates, got \(updates.map(\.count))")
        apply(mean: mean(updates), settings: settings)
    }

    /// `apply(updates:)` from the updates' mean, summed in slot order by the caller (`RunningMean`, as the
    /// coordinator does while results arrive): the same θ, bit for bit.
    public mutating func apply(mean: ParameterVector, settings: MetaSettings) {
        precondition(mean.count == theta.count, "meta-update needs a \(theta.count)-value mean, got \(mean.count)")
        var g = mean
        if settings.algorithm == .reptile || settings.algorithm == .distill { scale(&g, by: -1) }
        if settings.isPipelined { previousTheta = theta }
        optimizer.learningRate = settings.outerStep(at: iteration)
        optimizer.apply(gradient: g, to: &theta)
        iteration += 1
    }
}
