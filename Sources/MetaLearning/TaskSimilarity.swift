import DQN
import Environments
import NeuralNet

/// The task of slot `slot` in meta-iteration `iteration` of a run: a pure function of the run seed.
public func trainingTask(_ family: TaskFamily, runSeed: UInt64, iteration: Int, slot: Int) throws -> TaskSpec {
    var rng = SeededRNG(seed: trainingTaskSeed(runSeed: runSeed, iteration: iteration, slot: slot))
    return try family.sample(using: &rng)
}

/// The seed the task of slot `slot` in meta-iteration `iteration` is drawn from.
public func trainingTaskSeed(runSeed: UInt64, iteration: Int, slot: Int) -> UInt64 {
    deriveSeed(runSeed, iteration: UInt64(iteration), slot: UInt64(slot), purpose: .taskSample)
}

/// The inner-loop seed of slot `slot` in meta-iteration `iteration`: what the worker running it uses.
public func slotSeed(runSeed: UInt64, iteration: Int, slot: Int) -> UInt64 {
    deriveSeed(runSeed, iteration: UInt64(iteration), slot: UInt64(slot), purpose: .innerLoop)
}

/// Euclidean distance of two equally long vectors.
func euclideanDistance(_ a: [Double], _ b: [Double]) -> Double {
    zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
}

/// How two task embeddings are compared.
public enum EmbeddingMetric: String, Codable, Sendable, CaseIterable {
    /// ‖a − b‖: Q-values' scale says how good a state is (how long the pole stays up, how far the goal
    /// is), which tells tasks apart; the default.
    case euclidean
    /// 1 − cos(a, b): compares only the shape of the Q-values, ignoring their scale.
    case cosine
    /// ‖W(a − b)‖ with W learnt from the library by the contrastive loss (`ContrastiveMetric`);
    /// Euclidean where no metric could be learnt.
    case learned

    /// The fixed metrics' distance; `.learned` needs the library's map (`TaskLibrary.distance`) and reads as Euclidean here.
    public func distance(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, aa = 0.0, bb = 0.0, sq = 0.0
        for i in 0..<min(a.count, b.count) {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y; aa += x * x; bb += y * y; sq += (x - y) * (x - y)
        }
        switch self {
        case .euclidean, .learned: return sq.squareRoot()
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

    /// Visits tasks of the family with a uniformly random policy and keeps every `stride`-th observation (with its
    /// context of `contextWindow` transitions when the network sees one: `DQNConfig.contextWindow`).
    public init(family: TaskFamily, runSeed: UInt64, count: Int = 64, stride: Int = 7, contextWindow: Int? = nil) throws {
        var rng = SeededRNG(seed: deriveSeed(runSeed, iteration: UInt64.max - 4, slot: 0, purpose: .evaluation))
        let tasks = try MultiTaskEnvironment(family: family, using: &rng)
        if let contextWindow {
            var env = ContextEnvironment(tasks, window: contextWindow)
            observations = Self.visit(&env, count: count, stride: stride, rng: &rng)
        } else {
            var env = tasks
            observations = Self.visit(&env, count: count, stride: stride, rng: &rng)
        }
        self.count = count
    }

    static func visit<E: Environment>(_ env: inout E, count: Int, stride: Int, rng: inout SeededRNG) -> [Float] {
        env.reset(using: &rng)
        var kept: [Float] = []
        var t = 0
        while kept.count < count * env.observationSize {
            if t % stride == 0 { kept += env.observation }
            t += 1
            let out = env.step(rng.nextInt(below: env.actionCount))
            if out.terminated || out.truncated { env.reset(using: &rng) }
        }
        return kept
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
    /// The metric `.learned` uses; nil until `learnMetric` ran.
    public var learned: ContrastiveMetric?

    public init(entries: [Entry], probes: ProbeStates) { self.entries = entries; self.probes = probes }

    /// Adapts θ to each task with the run's inner loop and files (embedding, adapted parameters).
    ///
    /// The tasks are the run's own training tasks (pass `trainingTask(…)`s), adapted from the final θ
    /// with the training budget and the slot's seed: what the workers computed at the end of the run.
    public init(theta: ParameterVector, tasks: [(TaskSpec, UInt64)], settings: InnerLoopSettings, probes: ProbeStates,
                runner: AdaptationRunner) throws {
        let jobs = tasks.map { task, seed in
            AdaptationJob(initial: theta, task: task, dqn: settings.dqn, budget: settings.budget, every: settings.budget,
                          episodes: 0, seed: seed, scoringSeed: 0, returnFinal: true)
        }
        let outcomes = try runner.run(jobs)
        entries = try zip(tasks, outcomes).map { item, outcome in
            guard let phi = outcome.final else { throw EvaluationError.invalid("a library job came back without its parameters") }
            return Entry(task: item.0, embedding: probes.embed(phi, mlp: try makeNetwork(for: item.0, config: settings.dqn)), parameters: phi)
        }
        self.probes = probes
    }

    /// Learns the contrastive metric from the entries' tasks; a family without coordinates (tabular
    /// MDPs) leaves it nil, and `.learned` then falls back to Euclidean.
    public mutating func learnMetric(family: TaskFamily, seed: UInt64) {
        // An entry whose adaptation diverged has a non-finite embedding: it cannot teach a metric.
        let usable = entries.filter { $0.embedding.allSatisfy(\.isFinite) }
        let coordinates = usable.map { family.coordinates(of: $0.task) }
        guard usable.count >= 3, !(coordinates.first?.isEmpty ?? true) else { return }
        learned = ContrastiveMetric.learn(embeddings: usable.map(\.embedding), coordinates: coordinates, seed: seed)
    }

    public func distance(_ a: [Float], _ b: [Float], metric: EmbeddingMetric) -> Double {
        if metric == .learned, let learned { return learned.distance(a, b) }
        return metric.distance(a, b)
    }

    /// The index of the entry nearest to `embedding` (the first on ties).
    public func nearest(to embedding: [Float], metric: EmbeddingMetric) -> Int {
        var best = 0, bestDistance = Double.infinity
        for (i, e) in entries.enumerated() {
            let d = distance(embedding, e.embedding, metric: metric)
            if d < bestDistance { best = i; bestDistance = d }
        }
        return best
    }
}

extension NearestTaskSetup {
    /// The nearest-task init on held-out task i, first half: adapt θ for `probeSteps` (scored like any
    /// curve) and keep φ to embed. The probe steps count against the budget, so the nearest-task curve
    /// is comparable step for step with the other inits'.
    public func probeJob(plan: EvaluationPlan, taskIndex i: Int) throws -> AdaptationJob {
        guard probeSteps >= plan.every && probeSteps < plan.budget && probeSteps % plan.every == 0 else {
            throw EvaluationError.invalid("probe steps (\(probeSteps)) must be a multiple of every (\(plan.every)) below the budget (\(plan.budget))")
        }
        return try plan.job(theta, taskIndex: i, budget: probeSteps, returnFinal: true, settings: plan.dqn(for: "nearest"))
    }

    /// Second half: embed the probe's φ, and continue from the nearest library entry for the rest of the budget.
    public func continuation(plan: EvaluationPlan, taskIndex i: Int, probe: AdaptationOutcome) throws -> (job: AdaptationJob, embedding: [Float]) {
        guard let phi = probe.final else { throw EvaluationError.invalid("a probe job came back without its parameters") }
        let embedding = library.probes.embed(phi, mlp: try makeNetwork(for: try plan.task(i), config: plan.dqn(for: "nearest")))
        let entry = library.nearest(to: embedding, metric: metric)
        let job = try plan.job(library.entries[entry].parameters, taskIndex: i, budget: plan.budget - probeSteps,
                               seed: deriveSeed(plan.adaptationSeed(i), iteration: 1, slot: 0, purpose: .innerLoop),
                               settings: plan.dqn(for: "nearest"))
        return (job, embedding)
    }

    /// The whole curve: the probe's points, then the continuation's, whose first point (the library entry
    /// itself, scored at the step the switch happens) replaces the probe's last.
    public static func curve(probe: AdaptationOutcome, rest: AdaptationOutcome) -> [Double] {
        Array(probe.returns.dropLast()) + rest.returns
    }
}

/// A task metric learnt from the library: a linear map W (k × D) of standardised embeddings trained with
/// the seed documents' contrastive loss L = Σ (1−y)·d² + y·max(0, m − d)², d = ‖W(a − b)‖.
///
/// A pair is similar (y = 0) when the two tasks' parameters (the family's normalised coordinates) are
/// closer than the median pair, dissimilar (y = 1) otherwise: the map learns which directions of the
/// Q-value embedding carry the task, and which only carry how far training got.
public struct ContrastiveMetric: Sendable {
    public let dimensions: Int
    /// Per embedding dimension, subtracted and then divided by before W.
    public var mean: [Float], scale: [Float]
    /// dimensions × D, row-major.
    public var weights: [Float]
    /// Mean contrastive loss over the library's pairs, before and after training.
    public var initialLoss = 0.0, finalLoss = 0.0

    public func project(_ e: [Float]) -> [Float] {
        let d = mean.count
        return (0..<dimensions).map { r in
            var s: Float = 0
            for c in 0..<min(d, e.count) { s += weights[r * d + c] * (e[c] - mean[c]) / scale[c] }
            return s
        }
    }

    public func distance(_ a: [Float], _ b: [Float]) -> Double {
        zip(project(a), project(b)).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
    }

    /// Fits W by full-batch gradient descent on every pair of `embeddings` (≥ 3, equal sizes).
    public static func learn(embeddings: [[Float]], coordinates: [[Double]], dimensions k: Int = 8, margin m: Float = 1,
                             epochs: Int = 400, learningRate: Float = 0.2, seed: UInt64) -> ContrastiveMetric {
        let n = embeddings.count, d = embeddings.first?.count ?? 0
        var mean = [Float](repeating: 0, count: d), scale = [Float](repeating: 1, count: d)
        for c in 0..<d {
            let column = embeddings.map { $0[c] }
            let mu = column.reduce(0, +) / Float(max(n, 1))
            let sd = (column.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Float(max(n, 1))).squareRoot()
            // Unit variance per dimension, then 1/√D overall: pair differences have squared norm ≈ 2
            // whatever D is, so one step size is stable for every family's embedding size.
            mean[c] = mu; scale[c] = (sd > 1e-6 ? sd : 1) * Float(d).squareRoot()
        }
        var rng = SeededRNG(seed: seed)
        var metric = ContrastiveMetric(dimensions: k, mean: mean, scale: scale,
                                       weights: (0..<(k * d)).map { _ in Float(rng.nextGaussian()) / Float(max(d, 1)).squareRoot() })
        guard n >= 3 && d > 0 else { return metric }
        let x = embeddings.map { e in (0..<d).map { (e[$0] - mean[$0]) / scale[$0] } }
        var pairs: [(Int, Int, Double)] = []
        for i in 0..<n { for j in (i + 1)..<n { pairs.append((i, j, euclideanDistance(coordinates[i], coordinates[j]))) } }
        let median = pairs.map(\.2).sorted()[pairs.count / 2]
        let dissimilar = pairs.map { $0.2 > median }
        var rate = learningRate
        var best = (loss: Double.infinity, weights: metric.weights)
        for epoch in 0...epochs {
            let z = x.map { row in (0..<k).map { r in (0..<d).reduce(Float(0)) { $0 + metric.weights[r * d + $1] * row[$1] } } }
            var g = [[Float]](repeating: [Float](repeating: 0, count: k), count: n)
            var loss = 0.0
            for (p, (i, j, _)) in pairs.enumerated() {
                let u = (0..<k).map { z[i][$0] - z[j][$0] }
                let dist = u.reduce(0) { $0 + $1 * $1 }.squareRoot()
                var coefficient: Float = 0
                if !dissimilar[p] {
                    loss += Double(dist * dist); coefficient = 2
                } else if dist < m {
                    loss += Double((m - dist) * (m - dist)); coefficient = dist > 1e-6 ? -2 * (m - dist) / dist : 0
                }
                for r in 0..<k { g[i][r] += coefficient * u[r]; g[j][r] -= coefficient * u[r] }
            }
            loss /= Double(pairs.count)
            if epoch == 0 { metric.initialLoss = loss }
            // A step that made things worse (or overflowed) is undone and the rate halved.
            if !loss.isFinite || loss > best.loss {
                metric.weights = best.weights
                rate /= 2
                if rate < learningRate / 1024 || epoch == epochs { break }
                continue
            }
            best = (loss, metric.weights)
            if epoch == epochs { break }
            let step = rate / Float(pairs.count)
            for r in 0..<k {
                for c in 0..<d {
                    var s: Float = 0
                    for i in 0..<n { s += g[i][r] * x[i][c] }
                    metric.weights[r * d + c] -= step * s
                }
            }
        }
        metric.weights = best.weights
        metric.finalLoss = best.loss
        return metric
    }
}
