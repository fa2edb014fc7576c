import DQN
import Environments
import Foundation
import NeuralNet

/// One unit of meta-evaluation work: adapt `initial` on `task` for `budget` env steps with the DQN
/// settings, and score the greedy return every `every` steps.
///
/// Every curve, probe and library entry of a meta-evaluation is one of these, so the same jobs run on
/// local threads or on a cluster's workers (`AdaptationRunner`) and give the same numbers: a job is a
/// pure function of its fields.
public struct AdaptationJob: Sendable, Equatable {
    public var initial: ParameterVector
    public var task: TaskSpec
    public var dqn: DQNConfig
    /// Env steps of adaptation.
    public var budget: Int
    /// Env steps between scored points (0, every, …, budget); must divide the budget when scoring.
    public var every: Int
    /// Greedy episodes averaged at each point; 0 scores nothing (library entries only need φ).
    public var episodes: Int
    /// Seeds the adaptation (exploration, replay sampling, resets).
    public var seed: UInt64
    /// Seeds the greedy episodes: the same start states at every point.
    public var scoringSeed: UInt64
    /// Whether the outcome carries the adapted parameters (probes and library entries need them).
    public var returnFinal: Bool

    public init(initial: ParameterVector, task: TaskSpec, dqn: DQNConfig, budget: Int, every: Int, episodes: Int,
                seed: UInt64, scoringSeed: UInt64, returnFinal: Bool) {
        self.initial = initial; self.task = task; self.dqn = dqn; self.budget = budget; self.every = every
        self.episodes = episodes; self.seed = seed; self.scoringSeed = scoringSeed; self.returnFinal = returnFinal
    }

    /// Checks what a worker would otherwise fail on: settings, the task, and that θ fits the task's network.
    public func validate() throws {
        try dqn.validate()
        try task.validate()
        guard budget >= 1 else { throw EvaluationError.invalid("job budget must be ≥ 1, got \(budget)") }
        guard episodes >= 0 else { throw EvaluationError.invalid("job episodes must be ≥ 0, got \(episodes)") }
        if episodes > 0 {
            guard every >= 1 && every <= budget && budget % every == 0 else {
                throw EvaluationError.invalid("job every (\(every)) must divide its budget (\(budget))")
            }
        }
        let expected = try makeNetwork(for: task, config: dqn).parameterCount
        guard initial.count == expected else {
            throw EvaluationError.invalid("job parameters have \(initial.count) values; the task's network has \(expected)")
        }
    }

    /// Runs the adaptation and scores its snapshots; throws when it diverged (NaN or infinity in the
    /// returns or the parameters), the same on local threads as on a worker.
    /// - Parameter progress: called with the env steps taken so far after each finished adaptation episode
    ///   (a worker's liveness report; it changes nothing computed).
    public func run(progress: ((Int) -> Void)? = nil) throws -> AdaptationOutcome {
        let outcome = try unchecked(progress)
        guard outcome.returns.allSatisfy(\.isFinite), outcome.final?.isFinite ?? true else {
            throw EvaluationError.invalid("the adaptation diverged on \(task.kindName): NaN or infinity in its returns or parameters")
        }
        return outcome
    }

    private func unchecked(_ progress: ((Int) -> Void)?) throws -> AdaptationOutcome {
        let episodeDone: ((Int, Double) -> Void)? = progress.map { report in { step, _ in report(step) } }
        if episodes == 0 {
            let final = try adapt(initial: initial, task: task, budget: budget, seed: seed, config: dqn,
                                  progress: episodeDone).parameters
            return AdaptationOutcome(returns: [], final: returnFinal ? final : nil)
        }
        var snapshots: [ParameterVector] = []
        let adaptation = try adapt(initial: initial, task: task, budget: budget, seed: seed, config: dqn,
                                   progress: episodeDone, snapshots: Snapshots(every: every) { _, p in snapshots.append(p) })
        let returns = try snapshots.map { p in
            let r = try evaluateGreedy(p, task: task, episodes: episodes, seed: scoringSeed, config: dqn)
            return r.reduce(0, +) / Double(r.count)
        }
        return AdaptationOutcome(returns: returns, final: returnFinal ? adaptation.parameters : nil)
    }

    /// The points a scored job's curve has: budget / every + 1.
    public var points: Int { episodes == 0 ? 0 : budget / every + 1 }

    /// Why `outcome` cannot be this job's (wrong number of points, missing or misfitting parameters), or nil.
    public func mismatch(_ outcome: AdaptationOutcome) -> String? {
        if outcome.returns.count != points { return "\(outcome.returns.count) scored points; the job has \(points)" }
        if returnFinal && outcome.final?.count != initial.count { return "no adapted parameters, or ones that do not fit the job's network" }
        return nil
    }
}

/// What an `AdaptationJob` produced.
public struct AdaptationOutcome: Sendable, Equatable {
    /// Mean greedy return at steps 0, every, …, budget (empty when not scored).
    public var returns: [Double]
    /// The adapted parameters, when the job asked for them.
    public var final: ParameterVector?

    public init(returns: [Double], final: ParameterVector?) { self.returns = returns; self.final = final }
}

/// Runs a batch of adaptation jobs and hands back their outcomes in job order.
///
/// The local runner uses threads of this process; the cluster's (`ClusterAdaptationRunner`) sends the
/// jobs through the coordinator to its workers. Jobs are deterministic, so both give the same outcomes.
public protocol AdaptationRunner {
    func run(_ jobs: [AdaptationJob]) throws -> [AdaptationOutcome]
}

/// Runs jobs on up to `threads` threads of this process, on the caller's kernel (`GEMMBackend.current`).
public struct LocalAdaptationRunner: AdaptationRunner {
    public var threads: Int
    /// Where progress lines of a batch go ("eval batch 1: 12 of 80 jobs done …", every 10 s); nil: nowhere.
    public var progress: (@Sendable (String) -> Void)?
    var batches = Counter()

    public init(threads: Int, progress: (@Sendable (String) -> Void)? = nil) { self.threads = threads; self.progress = progress }

    public func run(_ jobs: [AdaptationJob]) throws -> [AdaptationOutcome] {
        // Threads do not inherit the caller's task-local kernel: hand it over.
        let kernel = GEMMBackend.current
        let reporter = progress.map { JobProgress(total: jobs.count, label: "eval batch \(batches.next())", sink: $0) }
        return try parallelMap(jobs.count, threads: threads) { i in
            let outcome = try GEMMBackend.$current.withValue(kernel) { try jobs[i].run() }
            reporter?.completed()
            return outcome
        }
    }

    /// Numbers the batches a runner has run (a runner is a value shared by reference here, so this is a class).
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func next() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
    }
}
