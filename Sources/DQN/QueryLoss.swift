import Environments
import NeuralNet

/// The query-set TD loss of parameters φ and its gradient: what first-order MAML sends back.
public struct QueryGradient: Sendable {
    public var gradient: ParameterVector
    public var loss: Double
    public var transitions: Int
}

/// Collects `steps` fresh transitions on `task` acting ε-greedily with φ (ε = config.endEpsilon), then
/// returns the gradient of the mean TD loss over all of them at φ.
///
/// The TD target uses φ itself, held fixed (semi-gradient), as DQN's target network would after a
/// hard copy. The whole query set is one batch, so the gradient has no minibatch noise.
public func queryGradient(
    parameters phi: ParameterVector, task: TaskSpec, steps: Int, seed: UInt64, config: DQNConfig,
    backend: GEMMBackend = .default
) throws -> QueryGradient {
    guard steps > 0 else { throw DQNError.invalidBudget(steps) }
    let mlp = try makeNetwork(for: task, config: config, backend: backend)
    guard phi.count == mlp.parameterCount else {
        throw DQNError.parameterCount(expected: mlp.parameterCount, got: phi.count)
    }
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
    let ws = MLPWorkspace(mlp: mlp, capacity: steps)
    let nextQ = mlp.predict(phi, inputs: next, workspace: ws)
    var targets = [Float](repeating: 0, count: steps)
    for t in 0..<steps {
        var best = -Float.infinity
        for a in 0..<mlp.outputSize { best = max(best, nextQ[t * mlp.outputSize + a]) }
        targets[t] = rewards[t] + config.gamma * (1 - terminals[t]) * best
    }
    var gradient = ParameterVector(zeros: mlp.parameterCount)
    let loss = mlp.lossAndGradient(phi, inputs: observations, actions: actions, targets: targets,
                                   loss: config.loss, workspace: ws, gradient: &gradient)
    return QueryGradient(gradient: gradient, loss: Double(loss), transitions: steps)
}
