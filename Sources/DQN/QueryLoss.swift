import Environments
import NeuralNet

/// A query loss of parameters φ and its gradient at φ: what first-order MAML sends back, and what second-order MAML
/// carries back through the inner steps.
public struct QueryGradient: Sendable {
    public var gradient: ParameterVector
    public var loss: Double
    public var transitions: Int
}

/// Transitions collected on a task acting ε-greedily with φ: the query set of both query losses.
struct QuerySet {
    var observations: [Float]
    var actions: [Int32]
    var rewards: [Float]
    var nextObservations: [Float]
    var terminals: [Float]
}

/// Collects `steps` fresh transitions on `task` acting ε-greedily with φ (ε = config.endEpsilon); episodes restart.
func collectQuerySet(_ phi: ParameterVector, mlp: MLP, task: TaskSpec, steps: Int, seed: UInt64, config: DQNConfig) throws -> QuerySet {
    var env = try makeEnvironment(for: task, config: config)
    var envRNG = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .querySet))
    var agentRNG = SeededRNG(seed: deriveSeed(seed, iteration: 1, slot: 0, purpose: .querySet))
    let n = mlp.inputSize
    var actionConfig = config
    actionConfig.batchSize = 1
    actionConfig.bufferCapacity = max(actionConfig.bufferCapacity, 1)
    let actor = DQNLearner(mlp: mlp, initial: phi, config: actionConfig)
    var observations = [Float](repeating: 0, count: steps * n), next = observations
    var actions = [Int32](repeating: 0, count: steps), rewards = [Float](repeating: 0, count: steps)
    var terminals = rewards
    var current = [Float](repeating: 0, count: n)
    env.reset(using: &envRNG)
    env.writeObservation(to: &current)
    observations.withUnsafeMutableBufferPointer { obs in
        next.withUnsafeMutableBufferPointer { nxt in
            for t in 0..<steps {
                let o = obs.baseAddress! + t * n, s = nxt.baseAddress! + t * n
                o.update(from: current, count: n)
                let a = agentRNG.nextFloat() < config.endEpsilon
                    ? agentRNG.nextInt(below: mlp.outputSize) : actor.greedyAction(o)
                let out = env.step(a)
                env.writeObservation(to: s)
                actions[t] = Int32(a); rewards[t] = Float(out.reward); terminals[t] = out.terminated ? 1 : 0
                if out.terminated || out.truncated {
                    env.reset(using: &envRNG)
                    env.writeObservation(to: &current)
                } else {
                    current.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: s, count: n) }
                }
            }
        }
    }
    try env.checkFault()
    return QuerySet(observations: observations, actions: actions, rewards: rewards, nextObservations: next,
                    terminals: terminals)
}

/// The network for `task` and a check that φ fits it.
func queryNetwork(_ phi: ParameterVector, task: TaskSpec, steps: Int, config: DQNConfig, backend: GEMMBackend) throws -> MLP {
    guard steps > 0 else { throw DQNError.invalidBudget(steps) }
    let mlp = try makeNetwork(for: task, config: config, backend: backend)
    guard phi.count == mlp.parameterCount else {
        throw DQNError.parameterCount(expected: mlp.parameterCount, got: phi.count)
    }
    return mlp
}

/// The TD query: collects `steps` fresh transitions on `task` acting ε-greedily with φ (ε = config.endEpsilon),
/// then returns the gradient of the mean TD loss over all of them at φ.
///
/// The TD target uses φ itself, held fixed (semi-gradient), as DQN's target network would after a
/// hard copy. The whole query set is one batch, so the gradient has no minibatch noise. Any self-consistent Q
/// minimises it, good policy or not, which is why `teacherQueryGradient` exists.
public func queryGradient(
    parameters phi: ParameterVector, task: TaskSpec, steps: Int, seed: UInt64, config: DQNConfig,
    backend: GEMMBackend = .default
) throws -> QueryGradient {
    let mlp = try queryNetwork(phi, task: task, steps: steps, config: config, backend: backend)
    let set = try collectQuerySet(phi, mlp: mlp, task: task, steps: steps, seed: seed, config: config)
    let ws = MLPWorkspace(mlp: mlp, capacity: steps)
    let nextQ = mlp.predict(phi, inputs: set.nextObservations, workspace: ws)
    var targets = [Float](repeating: 0, count: steps)
    for t in 0..<steps {
        var best = -Float.infinity
        for a in 0..<mlp.outputSize { best = max(best, nextQ[t * mlp.outputSize + a]) }
        targets[t] = set.rewards[t] + config.gamma * (1 - set.terminals[t]) * best
    }
    var gradient = ParameterVector(zeros: mlp.parameterCount)
    let loss = mlp.lossAndGradient(phi, inputs: set.observations, actions: set.actions, targets: targets,
                                   loss: config.loss, workspace: ws, gradient: &gradient)
    return QueryGradient(gradient: gradient, loss: Double(loss), transitions: steps)
}

/// The teacher query: regression of the adapted network's Q-values onto a teacher's, on the states the adapted
/// network itself visits.
///
/// Collects `steps` transitions acting ε-greedily with the adapted φ (ε = config.endEpsilon), then returns the
/// gradient at φ of the mean squared error between Q_φ(s, ·) and Q_teacher(s, ·) over every state and action. The
/// teacher is φ trained on longer on the same task (`inner_loop.teacher_steps`), so its Q-values mean "what a policy
/// that solved this task predicts", and the loss is small only when adaptation got there. States come from φ's own
/// rollout, so the loss weighs where the adapted policy goes, including where it goes wrong (as in DAgger); the
/// states and the teacher's targets are held fixed, as TD targets are. With `advantages`, both Q-vectors have their
/// mean over actions taken off first: only which action is how much better is matched.
public func teacherQueryGradient(
    parameters phi: ParameterVector, teacher: ParameterVector, task: TaskSpec, steps: Int, advantages: Bool = false,
    seed: UInt64, config: DQNConfig, backend: GEMMBackend = .default
) throws -> QueryGradient {
    let mlp = try queryNetwork(phi, task: task, steps: steps, config: config, backend: backend)
    try mlp.validate(teacher)
    let set = try collectQuerySet(phi, mlp: mlp, task: task, steps: steps, seed: seed, config: config)
    let ws = MLPWorkspace(mlp: mlp, capacity: steps)
    let targets = mlp.predict(teacher, inputs: set.observations, workspace: ws)
    var gradient = ParameterVector(zeros: mlp.parameterCount)
    let loss = mlp.meanSquaredError(phi, inputs: set.observations, targets: targets, centered: advantages, workspace: ws,
                                    gradient: &gradient)
    return QueryGradient(gradient: gradient, loss: Double(loss), transitions: steps)
}
