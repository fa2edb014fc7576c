import DQN
import Environments
import Foundation
import NeuralNet

/// The nearest-task init's ingredients: θ to probe from, the library, and how to compare embeddings.
public struct NearestTaskSetup: Sendable {
    public var theta: ParameterVector
    public var library: TaskLibrary
    public var metric: EmbeddingMetric
    /// Env steps adapted from θ before the embedding is taken (they count against the budget).
    public var probeSteps: Int

    public init(theta: ParameterVector, library: TaskLibrary, metric: EmbeddingMetric, probeSteps: Int) {
        self.theta = theta; self.library = library; self.metric = metric; self.probeSteps = probeSteps
    }
}

/// How well embedding distance found similar tasks: mean distance, in the family's normalised
/// parameter coordinates, from each held-out task to the library task each method picks.
public struct RetrievalQuality: Sendable, Equatable {
    /// Per metric: the library entry nearest in embedding space.
    public var byMetric: [EmbeddingMetric: Double]
    /// The truly nearest library task (a lower bound).
    public var oracle: Double
    /// A uniformly random library entry (the expectation; what no similarity gives).
    public var random: Double
}

/// Every init's adaptation curve on every held-out task, and what can be read off them.
public struct EvaluationReport: Sendable {
    public var plan: EvaluationPlan
    /// Init names in the order they were given (meta, random, multitask, nearest).
    public var names: [String]
    /// curves[init][task][point]: greedy return at plan.steps[point].
    public var curves: [[[Double]]]
    public var retrieval: RetrievalQuality?
    /// Wall-clock seconds of the adaptation runs.
    public var seconds: Double

    public struct Point: Sendable, Equatable {
        public var step: Int
        public var meanReturn: Double
        public var ci95: Double
    }

    /// Mean ± 95% CI over tasks at every point of init `k`.
    public func summary(_ k: Int) -> [Point] {
        plan.steps.enumerated().map { j, step in
            let (m, ci) = meanAndCI95(curves[k].map { $0[j] })
            return Point(step: step, meanReturn: m, ci95: ci)
        }
    }

    /// Per task, the first scored step at which init `k` reached the target (nil: never, or no target).
    public func stepsToTarget(_ k: Int) -> [Int?] {
        guard let target = plan.targetReturn else { return curves[k].map { _ in nil } }
        return curves[k].map { MetaLearning.stepsToTarget($0, steps: plan.steps, target: target) }
    }
}

/// Adapts every init on the plan's held-out tasks (and the nearest-task init when set up).
///
/// The work is two batches of `AdaptationJob`s: every init × task curve together with the nearest-task
/// probes, then the nearest-task continuations (which need the probes' embeddings). Each job is
/// deterministic, so the report does not depend on the runner or its threads.
public func runMetaEvaluation(
    plan: EvaluationPlan, inits: [(String, ParameterVector)], nearest: NearestTaskSetup? = nil, runner: AdaptationRunner
) throws -> EvaluationReport {
    try plan.validate()
    let start = Date()
    var jobs = try (0..<(inits.count * plan.tasks)).map { job in
        try plan.job(inits[job / plan.tasks].1, taskIndex: job % plan.tasks, settings: plan.dqn(for: inits[job / plan.tasks].0))
    }
    if let nearest { jobs += try (0..<plan.tasks).map { try nearest.probeJob(plan: plan, taskIndex: $0) } }
    let first = try runner.run(jobs)
    var names = inits.map(\.0)
    var curves = (0..<inits.count).map { k in first[(k * plan.tasks)..<((k + 1) * plan.tasks)].map(\.returns) }
    var retrieval: RetrievalQuality?
    if let nearest {
        let probes = Array(first[(inits.count * plan.tasks)...])
        let continuations = try (0..<plan.tasks).map { try nearest.continuation(plan: plan, taskIndex: $0, probe: probes[$0]) }
        let rest = try runner.run(continuations.map(\.job))
        names.append("nearest")
        curves.append((0..<plan.tasks).map { NearestTaskSetup.curve(probe: probes[$0], rest: rest[$0]) })
        retrieval = try retrievalQuality(plan: plan, library: nearest.library, embeddings: continuations.map(\.embedding))
    }
    return EvaluationReport(plan: plan, names: names, curves: curves, retrieval: retrieval,
                            seconds: Date().timeIntervalSince(start))
}

/// Like `runMetaEvaluation(plan:inits:nearest:runner:)` on `threads` local threads.
public func runMetaEvaluation(
    plan: EvaluationPlan, inits: [(String, ParameterVector)], nearest: NearestTaskSetup? = nil, threads: Int = 1
) throws -> EvaluationReport {
    try runMetaEvaluation(plan: plan, inits: inits, nearest: nearest, runner: LocalAdaptationRunner(threads: threads))
}

/// Scores each metric's pick against the task parameters; nil for families without coordinates.
func retrievalQuality(plan: EvaluationPlan, library: TaskLibrary, embeddings: [[Float]]) throws -> RetrievalQuality? {
    let entries = library.entries.map { plan.family.coordinates(of: $0.task) }
    guard !entries.isEmpty, !(entries.first?.isEmpty ?? true) else { return nil }
    var byMetric: [EmbeddingMetric: Double] = [:]
    var oracle = 0.0, random = 0.0
    for (i, embedding) in embeddings.enumerated() {
        let here = plan.family.coordinates(of: try plan.task(i))
        let all = entries.map { euclideanDistance(here, $0) }
        oracle += all.min() ?? 0
        random += all.reduce(0, +) / Double(all.count)
        for metric in EmbeddingMetric.allCases {
            byMetric[metric, default: 0] += all[library.nearest(to: embedding, metric: metric)]
        }
    }
    let n = Double(embeddings.count)
    return RetrievalQuality(byMetric: byMetric.mapValues { $0 / n }, oracle: oracle / n, random: random / n)
}
