import Environments
import NeuralNet

/// What one inner loop produced: the adapted parameters and how training went.
public struct Adaptation: Sendable, Equatable {
    public var parameters: ParameterVector
    /// Undiscounted return of every episode that ended during training, in order.
    public var episodeReturns: [Double]
    /// Mean TD loss over all gradient updates (0 when there were none).
    public var meanLoss: Double
    public var environmentSteps: Int
    public var gradientUpdates: Int
    /// Wall-clock seconds of the loop (not part of the deterministic result).
    public var seconds: Double
}

/// Builds the Q-network for a task: observation size → hidden layers → one output per action.
public func makeNetwork(for task: TaskSpec, config: DQNConfig, backend: GEMMBackend = .default) throws -> MLP {
    let env = try makeEnvironment(for: task, config: config)
    return try MLP(sizes: [env.observationSize] + config.hiddenLayers + [env.actionCount], backend: backend)
}

/// The environment a DQN with `config` acts in on `task`: the task's own, wrapped in a `ContextEnvironment` when
/// `config.contextWindow` is set. Every inner loop, greedy evaluation, query set and distillation rollout builds its
/// environment here, so the network's input always matches.
public func makeEnvironment(for task: TaskSpec, config: DQNConfig) throws -> any Environment {
    let env = try task.makeEnvironment()
    guard let window = config.contextWindow else { return env }
    func wrap<E: Environment>(_ base: E) -> any Environment { ContextEnvironment(base, window: window) }
    return wrap(env)
}

/// Runs DQN on `task` for `budget` env steps starting from `initial`; the inner loop of every meta-algorithm.
///
/// Deterministic: the same inputs give bit-identical parameters, returns and losses. `seed` seeds
/// two independent streams, one for the environment's resets and one for ε-greedy and replay.
/// - Parameter progress: called after each finished episode with (env step, episode return).
/// - Parameter recorder: receives every gradient step's parameters and minibatch (see `UpdateRecord`).
/// - Parameter snapshots: receives (env step, current parameters) at step 0 and after every `every` steps,
///   which is how adaptation curves are measured without a second run.
public func adapt(
    initial: ParameterVector, task: TaskSpec, budget: Int, seed: UInt64, config: DQNConfig = DQNConfig(),
    backend: GEMMBackend = .default, progress: ((Int, Double) -> Void)? = nil,
    recorder: ((UpdateRecord) -> Void)? = nil, snapshots: Snapshots? = nil
) throws -> Adaptation {
    var env = try makeEnvironment(for: task, config: config)
    return try adaptIn(initial: initial, environment: &env, budget: budget, seed: seed, config: config, backend: backend,
                     progress: progress, recorder: recorder, snapshots: snapshots)
}

/// Runs DQN like `adapt`, but in an environment given directly (e.g. one that changes task every episode); with
/// `config.contextWindow` set, in that environment wrapped in a `ContextEnvironment`.
public func adapt<E: Environment>(
    initial: ParameterVector, environment: inout E, budget: Int, seed: UInt64, config: DQNConfig = DQNConfig(),
    backend: GEMMBackend = .default, progress: ((Int, Double) -> Void)? = nil,
    recorder: ((UpdateRecord) -> Void)? = nil, snapshots: Snapshots? = nil
) throws -> Adaptation {
    guard let window = config.contextWindow else {
        return try adaptIn(initial: initial, environment: &environment, budget: budget, seed: seed, config: config,
                           backend: backend, progress: progress, recorder: recorder, snapshots: snapshots)
    }
    var wrapped = ContextEnvironment(environment, window: window)
    defer { environment = wrapped.base }
    return try adaptIn(initial: initial, environment: &wrapped, budget: budget, seed: seed, config: config,
                       backend: backend, progress: progress, recorder: recorder, snapshots: snapshots)
}

/// `adapt` in exactly the environment given (its observation is the network's input).
func adaptIn<E: Environment>(
    initial: ParameterVector, environment: inout E, budget: Int, seed: UInt64, config: DQNConfig,
    backend: GEMMBackend, progress: ((Int, Double) -> Void)?, recorder: ((UpdateRecord) -> Void)?, snapshots: Snapshots?
) throws -> Adaptation {
    try config.validate()
    guard budget >= 0 else { throw DQNError.invalidBudget(budget) }
    let mlp = try MLP(sizes: [environment.observationSize] + config.hiddenLayers + [environment.actionCount], backend: backend)
    guard initial.count == mlp.parameterCount else {
        throw DQNError.parameterCount(expected: mlp.parameterCount, got: initial.count)
    }
    let adaptation = runInnerLoop(&environment, mlp: mlp, initial: initial, budget: budget, seed: seed, config: config,
                                  progress: progress, recorder: recorder, snapshots: snapshots)
    try environment.checkFault()
    return adaptation
}

/// Where and how often an inner loop hands out copies of its parameters.
public struct Snapshots {
    /// Env steps between snapshots (> 0).
    public var every: Int
    public var receive: (Int, ParameterVector) -> Void
    public init(every: Int, receive: @escaping (Int, ParameterVector) -> Void) {
        self.every = max(every, 1); self.receive = receive
    }
}

/// The loop itself, generic so each environment's `step` is called directly.
func runInnerLoop<E: Environment>(
    _ env: inout E, mlp: MLP, initial: ParameterVector, budget: Int, seed: UInt64, config: DQNConfig,
    progress: ((Int, Double) -> Void)?, recorder: ((UpdateRecord) -> Void)?, snapshots: Snapshots?
) -> Adaptation {
    let clock = ContinuousClock(), start = clock.now
    var envRNG = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .environment))
    var agentRNG = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .innerLoop))
    let learner = DQNLearner(mlp: mlp, initial: initial, config: config)
    var buffer = ReplayBuffer(capacity: config.bufferCapacity, observationSize: mlp.inputSize)
    var observation = [Float](repeating: 0, count: mlp.inputSize)
    var nextObservation = observation
    var returns: [Double] = [], episodeReturn = 0.0, lossSum = 0.0

    // ε-z-greedy: the exploratory action being held and the steps it is held for still (none under plain ε-greedy,
    // whose draws are unchanged: one uniform per step, one more for an exploratory action).
    let zeta = config.ezMaxRepeat.map { DQNConfig.zetaCDF(cap: $0) }
    var held = 0, heldAction = 0

    env.reset(using: &envRNG)
    env.writeObservation(to: &observation)
    snapshots?.receive(0, learner.parameters)
    for step in 0..<budget {
        let action: Int
        if held > 0 {
            action = heldAction
            held -= 1
        } else if agentRNG.nextFloat() < config.epsilon(step: step, budget: budget) {
            action = agentRNG.nextInt(below: mlp.outputSize)
            if let zeta {
                let u = agentRNG.nextFloat()
                heldAction = action
                held = zeta.firstIndex { u < $0 } ?? (zeta.count - 1)   // n − 1 more steps, n ∈ 1...cap
            }
        } else {
            action = learner.greedyAction(observation)
        }
        let outcome = env.step(action)
        env.writeObservation(to: &nextObservation)
        // Bootstrap through truncation: only a terminal state cuts the TD target.
        buffer.add(observation: observation, action: action, reward: Float(outcome.reward),
                   nextObservation: nextObservation, terminal: outcome.terminated)
        episodeReturn += outcome.reward
        if outcome.terminated || outcome.truncated {
            returns.append(episodeReturn)
            progress?(step + 1, episodeReturn)
            episodeReturn = 0
            held = 0
            if env.fault != nil { break }  // the caller throws it
            env.reset(using: &envRNG)
            env.writeObservation(to: &observation)
        } else {
            swap(&observation, &nextObservation)
        }
        if step > config.learningStarts && step % config.trainFrequency == 0 {
            lossSum += Double(learner.update(from: buffer, using: &agentRNG, recorder: recorder))
        }
        if let snapshots, (step + 1) % snapshots.every == 0 { snapshots.receive(step + 1, learner.parameters) }
    }
    let elapsed = clock.now - start
    return Adaptation(
        parameters: learner.parameters, episodeReturns: returns,
        meanLoss: learner.updates > 0 ? lossSum / Double(learner.updates) : 0,
        environmentSteps: budget, gradientUpdates: learner.updates,
        seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
}

/// Greedy returns of `parameters` on `episodes` episodes of `task` (no exploration, no learning).
public func evaluateGreedy(
    _ parameters: ParameterVector, task: TaskSpec, episodes: Int, seed: UInt64, config: DQNConfig = DQNConfig()
) throws -> [Double] {
    let mlp = try makeNetwork(for: task, config: config)
    guard parameters.count == mlp.parameterCount else {
        throw DQNError.parameterCount(expected: mlp.parameterCount, got: parameters.count)
    }
    var env = try makeEnvironment(for: task, config: config)
    let learner = DQNLearner(mlp: mlp, initial: parameters, config: config)
    var rng = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .evaluation))
    var observation = [Float](repeating: 0, count: mlp.inputSize)
    var returns: [Double] = []
    for _ in 0..<episodes {
        env.reset(using: &rng)
        var total = 0.0
        while true {
            env.writeObservation(to: &observation)
            let outcome = env.step(learner.greedyAction(observation))
            total += outcome.reward
            if outcome.terminated || outcome.truncated { break }
        }
        try env.checkFault()
        returns.append(total)
    }
    return returns
}

/// Returns of a uniformly random policy on `task`: the floor a learned policy must beat.
public func evaluateRandom(task: TaskSpec, episodes: Int, seed: UInt64) throws -> [Double] {
    var env = try task.makeEnvironment()
    var rng = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .evaluation))
    var returns: [Double] = []
    for _ in 0..<episodes {
        env.reset(using: &rng)
        var total = 0.0
        while true {
            let outcome = env.step(rng.nextInt(below: env.actionCount))
            total += outcome.reward
            if outcome.terminated || outcome.truncated { break }
        }
        try env.checkFault()
        returns.append(total)
    }
    return returns
}
