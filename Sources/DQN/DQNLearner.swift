import NeuralNet

/// The online and target Q-networks with their optimiser: what one DQN gradient update touches.
///
/// Owns every buffer the update needs (workspaces, the sampled batch, TD targets, the gradient), so
/// `update` allocates nothing.
public final class DQNLearner {
    public let mlp: MLP
    public let config: DQNConfig
    public private(set) var parameters: ParameterVector
    public private(set) var targetParameters: ParameterVector
    public private(set) var optimizer: Optimizer
    public private(set) var updates = 0
    var batch: ReplayBuffer.Batch
    private let onlineWorkspace: MLPWorkspace
    private let targetWorkspace: MLPWorkspace
    private let actWorkspace: MLPWorkspace
    private var gradient: ParameterVector
    private var tdTargets: [Float]

    public init(mlp: MLP, initial: ParameterVector, config: DQNConfig) {
        precondition(initial.count == mlp.parameterCount, "initial parameters do not fit the network")
        self.mlp = mlp
        self.config = config
        parameters = initial
        targetParameters = initial
        optimizer = Optimizer(kind: config.optimizer, parameterCount: mlp.parameterCount,
                              learningRate: config.learningRate, epsilon: config.adamEpsilon)
        batch = ReplayBuffer.Batch(size: config.batchSize, observationSize: mlp.inputSize)
        onlineWorkspace = MLPWorkspace(mlp: mlp, capacity: config.batchSize)
        targetWorkspace = MLPWorkspace(mlp: mlp, capacity: config.batchSize)
        actWorkspace = MLPWorkspace(mlp: mlp, capacity: 1)
        gradient = ParameterVector(zeros: mlp.parameterCount)
        tdTargets = [Float](repeating: 0, count: config.batchSize)
    }

    /// argmax_a Q(observation, a) under the online network (the lowest index on ties).
    public func greedyAction(_ observation: UnsafePointer<Float>) -> Int {
        let q = parameters.values.withUnsafeBufferPointer { p in
            mlp.forward(p.baseAddress!, input: observation, batch: 1, workspace: actWorkspace)
        }
        return argmax(q, count: mlp.outputSize)
    }

    /// One gradient step on a minibatch drawn from `buffer`; returns the TD loss before the step.
    ///
    /// `recorder`, when given, receives the step's parameters and data before the step (second-order MAML
    /// differentiates through every inner step with its data held fixed).
    public func update(from buffer: ReplayBuffer, using rng: inout SeededRNG,
                       recorder: ((UpdateRecord) -> Void)? = nil) -> Float {
        step(from: buffer, using: &rng, recorder: recorder) { _ in }
    }

    /// One update as `update` computes it (the same bits), with the time each phase took added to `seconds`
    /// (indexed by `UpdatePhase.rawValue`). Why: `metatrain bench --profile` says where an update's time goes, and a
    /// copy of the update's code for profiling would drift from the code it profiles.
    public func profiledUpdate(from buffer: ReplayBuffer, using rng: inout SeededRNG, seconds: inout [Double]) -> Float {
        let clock = ContinuousClock()
        var last = clock.now
        return step(from: buffer, using: &rng, recorder: nil) { phase in
            let now = clock.now
            let d = (now - last).components
            seconds[phase.rawValue] += Double(d.seconds) + Double(d.attoseconds) * 1e-18
            last = now
        }
    }

    /// The update, calling `mark` as each phase ends (inlined: `update`'s empty `mark` costs nothing).
    @inline(__always)
    private func step(from buffer: ReplayBuffer, using rng: inout SeededRNG, recorder: ((UpdateRecord) -> Void)?,
                      mark: (UpdatePhase) -> Void) -> Float {
        buffer.sample(into: &batch, using: &rng)
        mark(.sample)
        computeTargets(mark)
        recorder?(UpdateRecord(parameters: parameters, observations: batch.observations, actions: batch.actions,
                               targets: tdTargets))
        let n = batch.size, actions = mlp.outputSize
        let loss = parameters.values.withUnsafeBufferPointer { p in
            gradient.values.withUnsafeMutableBufferPointer { g in
                let q = mlp.forward(p.baseAddress!, input: batch.observations, batch: n, workspace: onlineWorkspace)
                mark(.onlineForward)
                let value = config.loss.evaluate(q: q, actionCount: actions, batch: n, actions: batch.actions,
                                                 targets: tdTargets, gradient: onlineWorkspace.outputGradient)
                mark(.loss)
                mlp.backward(p.baseAddress!, batch: n, workspace: onlineWorkspace, gradient: g.baseAddress!)
                if let maxNorm = config.maxGradientNorm {
                    clipGradientNorm(g.baseAddress!, count: g.count, maxNorm: maxNorm)
                }
                mark(.backward)
                return value
            }
        }
        optimizer.apply(gradient: gradient, to: &parameters)
        mark(.optimizer)
        updates += 1
        if updates % config.targetUpdateInterval == 0 { updateTarget() }
        mark(.targetCopy)
        return loss
    }

    /// y = r + γ·(1 − terminal)·Q⁻(s′, a*), a* from the target net (or the online net for double DQN).
    @inline(__always)
    private func computeTargets(_ mark: (UpdatePhase) -> Void) {
        let n = batch.size, actions = mlp.outputSize, gamma = config.gamma
        let nextQ = targetParameters.values.withUnsafeBufferPointer { p in
            mlp.forward(p.baseAddress!, input: batch.nextObservations, batch: n, workspace: targetWorkspace)
        }
        mark(.targetForward)
        if config.doubleDQN {
            let onlineNextQ = parameters.values.withUnsafeBufferPointer { p in
                mlp.forward(p.baseAddress!, input: batch.nextObservations, batch: n, workspace: onlineWorkspace)
            }
            mark(.onlineNextForward)
            for r in 0..<n {
                let best = argmax(onlineNextQ + r * actions, count: actions)
                tdTargets[r] = batch.rewards[r] + gamma * (1 - batch.terminals[r]) * nextQ[r * actions + best]
            }
        } else {
            for r in 0..<n {
                let row = nextQ + r * actions
                tdTargets[r] = batch.rewards[r] + gamma * (1 - batch.terminals[r]) * row[argmax(row, count: actions)]
            }
        }
        mark(.tdTargets)
    }

    private func updateTarget() {
        let tau = config.targetUpdateTau
        if tau == 1 {
            targetParameters = parameters
            return
        }
        parameters.values.withUnsafeBufferPointer { p in
            targetParameters.values.withUnsafeMutableBufferPointer { t in
                for i in 0..<t.count { t[i] = tau * p[i] + (1 - tau) * t[i] }
            }
        }
    }
}

/// The phases of one DQN update, in the order they run (`DQNLearner.profiledUpdate`).
public enum UpdatePhase: Int, CaseIterable, Sendable {
    /// Drawing the minibatch from the replay buffer (indices and copies of the transitions).
    case sample
    /// Q⁻(s′): the target network's forward pass.
    case targetForward
    /// Q(s′) under the online network (double DQN picks a* with it).
    case onlineNextForward
    /// y = r + γ·(1 − terminal)·Q⁻(s′, a*).
    case tdTargets
    /// Q(s): the online network's forward pass that the gradient goes through.
    case onlineForward
    /// The Huber (or squared) loss and its gradient at the output.
    case loss
    /// Backpropagation to the parameters, and the gradient-norm clip.
    case backward
    /// The optimiser's step (Adam or SGD).
    case optimizer
    /// The target copy (every target_update_interval updates) and the update count.
    case targetCopy

    public var name: String {
        switch self {
        case .sample: return "sample"
        case .targetForward: return "target_forward"
        case .onlineNextForward: return "online_next_forward"
        case .tdTargets: return "td_targets"
        case .onlineForward: return "online_forward"
        case .loss: return "loss"
        case .backward: return "backward"
        case .optimizer: return "optimizer"
        case .targetCopy: return "target_copy"
        }
    }
}

/// One inner gradient step's inputs: the parameters it started from and its minibatch with fixed TD targets.
public struct UpdateRecord: Sendable {
    public var parameters: ParameterVector
    public var observations: [Float]
    public var actions: [Int32]
    public var targets: [Float]

    public init(parameters: ParameterVector, observations: [Float], actions: [Int32], targets: [Float]) {
        self.parameters = parameters; self.observations = observations; self.actions = actions; self.targets = targets
    }
}

/// Index of the largest of `count` values (the first on ties, as numpy/torch argmax).
@inline(__always)
func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int {
    var best = 0
    for i in 1..<max(count, 1) where values[i] > values[best] { best = i }
    return best
}
