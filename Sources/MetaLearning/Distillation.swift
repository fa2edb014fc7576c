import DQN
import Environments
import NeuralNet

/// How `meta.algorithm: distill` fits θ to the task experts of an iteration (cluster.yaml `meta.distill`).
public struct DistillationSettings: Codable, Sendable, Equatable {
    /// States each expert contributes: its own ε-greedy rollout on its own task.
    public var states = 1000
    /// Exploration of those rollouts, so the states cover more than the expert's greedy path.
    public var epsilon: Float = 0.2
    /// Adam steps of the student per meta-iteration, on minibatches drawn from all experts' states.
    public var steps = 500
    public var batchSize = 256
    public var learningRate: Float = 1e-3
    /// What of the experts' Q-values the student matches: nil or `values` (every action's Q), or `advantages` (each
    /// Q-vector less its mean over actions; the values' level, which can run away when experts bootstrap from an
    /// off-scale θ, is then not fitted). Optional so configurations without it keep their hash.
    public var match: TeacherMatch?

    public init() {}

    public func validate() throws {
        guard states >= 1, steps >= 1, batchSize >= 1, epsilon >= 0 && epsilon <= 1, learningRate > 0 && learningRate.isFinite else {
            throw MetaLearningError.incompatible("distill settings out of range: states \(states), steps \(steps), batch \(batchSize), ε \(epsilon), learning rate \(learningRate)")
        }
    }
}

/// Policy distillation (Rusu et al. 2016, "Policy Distillation", the MSE-on-Q variant): a student network, starting
/// from θ, is fitted to the Q-values several task experts give on states of their own tasks, so θ becomes one
/// student of many teachers rather than the average of their parameters (Reptile).
///
/// Why the coordinator does it, from φ alone: the experts' parameters arrive as Reptile's updates (φᵢ − θ), and the
/// teacher data is a pure function of φᵢ, the task and `seed`, so nothing else has to travel and the result is the
/// same bits for any number of workers. Deterministic in (θ, experts in slot order, settings, seed, kernel).
/// - Returns: the student's parameters.
public func distill(
    student theta: ParameterVector, experts: [(parameters: ParameterVector, task: TaskSpec)], config: DQNConfig,
    settings: DistillationSettings, seed: UInt64
) throws -> ParameterVector {
    try settings.validate()
    guard let first = experts.first else { return theta }
    let mlp = try makeNetwork(for: first.task, config: config)
    try mlp.validate(theta)
    let inputs = mlp.inputSize, outputs = mlp.outputSize
    var states: [Float] = [], targets: [Float] = []
    states.reserveCapacity(experts.count * settings.states * inputs)
    targets.reserveCapacity(experts.count * settings.states * outputs)
    let teacherWorkspace = MLPWorkspace(mlp: mlp, capacity: settings.states)
    for (i, expert) in experts.enumerated() {
        let net = try makeNetwork(for: expert.task, config: config)
        guard net.sizes == mlp.sizes else {
            throw MetaLearningError.incompatible("expert \(i)'s network \(net.sizes) differs from the first's \(mlp.sizes)")
        }
        try mlp.validate(expert.parameters)
        let visited = try rollout(expert.parameters, task: expert.task, mlp: mlp, config: config, steps: settings.states,
                                  epsilon: settings.epsilon,
                                  seed: deriveSeed(seed, iteration: 0, slot: UInt64(i), purpose: .distillation))
        states += visited
        targets += mlp.predict(expert.parameters, inputs: visited, workspace: teacherWorkspace)
    }
    let total = states.count / inputs
    let batch = min(settings.batchSize, total)
    var student = theta
    var optimizer = Optimizer(kind: .adam, parameterCount: theta.count, learningRate: settings.learningRate)
    var rng = SeededRNG(seed: deriveSeed(seed, iteration: 1, slot: 0, purpose: .distillation))
    let ws = MLPWorkspace(mlp: mlp, capacity: batch)
    var x = [Float](repeating: 0, count: batch * inputs), y = [Float](repeating: 0, count: batch * outputs)
    var gradient = [Float](repeating: 0, count: theta.count)
    for _ in 0..<settings.steps {
        for r in 0..<batch {
            let j = rng.nextInt(below: total)
            for c in 0..<inputs { x[r * inputs + c] = states[j * inputs + c] }
            for c in 0..<outputs { y[r * outputs + c] = targets[j * outputs + c] }
        }
        student.values.withUnsafeMutableBufferPointer { p in
            gradient.withUnsafeMutableBufferPointer { g in
                // Mean squared error over every action's Q.
                mlp.meanSquaredError(p.baseAddress!, input: x, targets: y, batch: batch, centered: settings.match == .advantages,
                                     workspace: ws, gradient: g.baseAddress!)
                optimizer.apply(gradient: g.baseAddress!, to: p.baseAddress!, count: p.count)
            }
        }
    }
    return student
}

/// The observations an ε-greedy rollout of `parameters` visits on `task`, `steps` of them (episodes restart).
func rollout(_ parameters: ParameterVector, task: TaskSpec, mlp: MLP, config: DQNConfig, steps: Int, epsilon: Float,
             seed: UInt64) throws -> [Float] {
    var env = try makeEnvironment(for: task, config: config)
    var actorConfig = config
    actorConfig.batchSize = 1
    actorConfig.bufferCapacity = max(actorConfig.bufferCapacity, 1)
    let actor = DQNLearner(mlp: mlp, initial: parameters, config: actorConfig)
    var envRNG = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .environment))
    var agentRNG = SeededRNG(seed: deriveSeed(seed, iteration: 1, slot: 0, purpose: .environment))
    var observation = [Float](repeating: 0, count: mlp.inputSize)
    var visited: [Float] = []
    visited.reserveCapacity(steps * mlp.inputSize)
    env.reset(using: &envRNG)
    for _ in 0..<steps {
        env.writeObservation(to: &observation)
        visited += observation
        let action = agentRNG.nextFloat() < epsilon ? agentRNG.nextInt(below: mlp.outputSize) : actor.greedyAction(observation)
        let outcome = env.step(action)
        if outcome.terminated || outcome.truncated { env.reset(using: &envRNG) }
    }
    try env.checkFault()
    return visited
}
