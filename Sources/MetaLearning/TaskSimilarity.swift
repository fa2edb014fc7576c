import DQN
import Environments
import NeuralNet

/// The task of slot `slot` in meta-iteration `iteration` of a run: a pure function of the run seed.
public func trainingTask(_ family: TaskFamily, runSeed: UInt64, iteration: Int, slot: Int) throws -> TaskSpec {
    var rng = SeededRNG(seed: deriveSeed(runSeed, iteration: UInt64(iteration), slot: UInt64(slot), purpose: .taskSample))
    return try family.sample(using: &rng)
}

/// How two task embeddings are compared.
public enum EmbeddingMetric: String, Codable, Sendable, CaseIterable {
    /// ‖a − b‖: Q-values' scale says how good a state is (how long the pole stays up, how far the goal
    /// is), which tells tasks apart; the default.
    case euclidean
    /// 1 − cos(a, b): compares only the shape of the Q-values, ignoring their scale.
    case cosine

    public func distance(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, aa = 0.0, bb = 0.0, sq = 0.0
        for i in 0..<min(a.count, b.count) {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y; aa += x * x; bb += y * y; sq += (x - y) * (x - y)
        }
        switch self {
        case .euclidean: return sq.squareRoot()
        case .cosine: return aa > 0 && bb > 0 ? 1 - dot / (aa * bb).squareRoot() : 1
        }
    }
}

/// A fixed set of states of a family on which networks are compared: a task's embedding is the
/// Q-values its adapted network gives on them.
public struct ProbeStates: Sendable {
    /// count × observationSize observations, row-major.
    public var observations: [Float]
    public var count: Int

    /// Visits tasks of the family with a uniformly random policy and keeps every `stride`-th observation.
    public init(family: TaskFamily, runSeed: UInt64, count: Int = 64, stride: Int = 7) throws {
        var rng = SeededRNG(seed: deriveSeed(runSeed, iteration: UInt64.max - 4, slot: 0, purpose: .evaluation))
        var env = try MultiTaskEnvironment(family: family, using: &rng)
        env.reset(using: &rng)
        var kept: [Float] = []
        var t = 0
        while kept.count < count * env.observationSize {
            if t % stride == 0 { kept += env.observation }
            t += 1
            let out = env.step(rng.nextInt(below: env.actionCount))
            if out.terminated || out.truncated { env.reset(using: &rng) }
        }
        observations = kept
        self.count = count
    }

    /// The embedding of a network: its Q-values on every probe state, flattened.
    public func embed(_ parameters: ParameterVector, mlp: MLP) -> [Float] {
        mlp.predict(parameters, inputs: observations, workspace: MLPWorkspace(mlp: mlp, capacity: count))
    }
}

/// Adapted parameters from meta-training, indexed by their task embeddings.
public struct TaskLibrary: Sendable {
    public struct Entry: Sendable {
        public var task: TaskSpec
        public var embedding: [Float]
        public var parameters: ParameterVector
        public init(task: TaskSpec, embedding: [Float], parameters: ParameterVector) {
            self.task = task; self.embedding = embedding; self.parameters = parameters
        }
    }
    public var entries: [Entry]
    public var probes: ProbeStates

    public init(entries: [Entry], probes: ProbeStates) { self.entries = entries; self.probes = probes }

    /// Adapts θ to each task with the run's inner loop and files (embedding, adapted parameters).
    ///
    /// The tasks are the run's own training tasks (pass `trainingTask(…)`s), adapted from the final θ
    /// with the training budget and the slot's seed: what the workers computed at the end of the run.
    public init(theta: ParameterVector, tasks: [(TaskSpec, UInt64)], settings: InnerLoopSettings, probes: ProbeStates,
                threads: Int) throws {
        entries = try parallelMap(tasks.count, threads: threads) { i in
            let (task, seed) = tasks[i]
            let phi = try adapt(initial: theta, task: task, budget: settings.budget, seed: seed, config: settings.dqn).parameters
            return Entry(task: task, embedding: probes.embed(phi, mlp: try makeNetwork(for: task, config: settings.dqn)), parameters: phi)
        }
        self.probes = probes
    }

    /// The index of the entry nearest to `embedding` (the first on ties).
    public func nearest(to embedding: [Float], metric: EmbeddingMetric) -> Int {
        var best = 0, bestDistance = Double.infinity
        for (i, e) in entries.enumerated() {
            let d = metric.distance(embedding, e.embedding)
            if d < bestDistance { best = i; bestDistance = d }
        }
        return best
    }
}

/// The nearest-task init on held-out task i: adapt θ for `probeSteps`, embed, then continue from the
/// nearest library entry for the rest of the budget. The probe steps count against the budget, so the
/// curve is comparable step for step with the other inits'.
public func nearestTaskCurve(theta: ParameterVector, library: TaskLibrary, metric: EmbeddingMetric, probeSteps: Int,
                             plan: EvaluationPlan, taskIndex i: Int) throws -> (curve: [Double], embedding: [Float]) {
    guard probeSteps >= plan.every && probeSteps < plan.budget && probeSteps % plan.every == 0 else {
        throw EvaluationError.invalid("probe steps (\(probeSteps)) must be a multiple of every (\(plan.every)) below the budget (\(plan.budget))")
    }
    let task = try plan.task(i)
    let probe = try scoredAdaptation(theta, task: task, budget: probeSteps, every: plan.every, seed: plan.adaptationSeed(i),
                                     plan: plan, taskIndex: i)
    let embedding = library.probes.embed(probe.final, mlp: try makeNetwork(for: task, config: plan.dqn))
    let entry = library.nearest(to: embedding, metric: metric)
    let rest = try scoredAdaptation(library.entries[entry].parameters, task: task, budget: plan.budget - probeSteps,
                                    every: plan.every,
                                    seed: deriveSeed(plan.adaptationSeed(i), iteration: 1, slot: 0, purpose: .innerLoop),
                                    plan: plan, taskIndex: i)
    // rest[0] scores the library entry itself, at the step the switch happens; it replaces probe's last point.
    return (Array(probe.returns.dropLast()) + rest.returns, embedding)
}
