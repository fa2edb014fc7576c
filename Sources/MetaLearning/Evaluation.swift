import DQN
import Environments
import Foundation
import NeuralNet

/// The held-out task i of a run: drawn with a seed no training slot uses.
///
/// Training tasks come from the `.taskSample` stream at meta-iteration t; held-out tasks from the
/// `.evaluation` stream, so the two sets are disjoint however long the run.
public func heldOutTask(_ family: TaskFamily, runSeed: UInt64, index: Int) throws -> TaskSpec {
    var rng = SeededRNG(seed: heldOutTaskSeed(runSeed: runSeed, index: index))
    return try family.sample(using: &rng)
}

/// The seed held-out task `index` is drawn from.
public func heldOutTaskSeed(runSeed: UInt64, index: Int) -> UInt64 {
    deriveSeed(runSeed, iteration: UInt64.max, slot: UInt64(index), purpose: .evaluation)
}

/// Which evaluation tasks a plan draws: the held-out test tasks, or the validation tasks choices are tuned on.
///
/// The two come from different seed streams, and neither from the training stream, so tuning an
/// adaptation setting on `validation` never touches the tasks a result is scored on.
public enum TaskSplit: String, Sendable, CaseIterable, Codable {
    case test
    case validation

    /// The `iteration` coordinates of the split's (task, adaptation, scoring) seeds under `.evaluation`.
    var seedIterations: (task: UInt64, adaptation: UInt64, scoring: UInt64) {
        switch self {
        case .test: return (UInt64.max, UInt64.max - 1, UInt64.max - 2)
        case .validation: return (UInt64.max - 6, UInt64.max - 7, UInt64.max - 8)
        }
    }
}

/// Validation task i of a run: like `heldOutTask`, from a stream of its own.
public func validationTask(_ family: TaskFamily, runSeed: UInt64, index: Int) throws -> TaskSpec {
    var rng = SeededRNG(seed: deriveSeed(runSeed, iteration: TaskSplit.validation.seedIterations.task, slot: UInt64(index),
                                         purpose: .evaluation))
    return try family.sample(using: &rng)
}

/// The return that counts as "solved" for a family: gymnasium's thresholds, and −10 for 2D navigation.
///
/// −10 on GoalNavigation2D (100 steps, goals within radius 0.5) needs the goal found within a few
/// steps and held; standing at the origin scores about −33 on an average goal, a random walk about −75.
/// Tabular MDPs have no natural threshold (their scale depends on the drawn rewards), nor has an arbitrary gymnasium
/// environment: nil.
public func defaultTargetReturn(family: TaskFamily) -> Double? {
    switch family {
    case .cartPole: return 195
    case .acrobot: return -100
    case .mountainCar: return -110
    case .goalNavigation: return -10
    case .tabularMDP: return nil
    case .gymnasium: return nil  // no general threshold: evaluation.target_return sets one
    }
}

/// What a meta-evaluation measures: which tasks, how long each init adapts, and how often it is scored.
public struct EvaluationPlan: Sendable {
    public var family: TaskFamily
    public var runSeed: UInt64
    /// Held-out tasks (≥ 1).
    public var tasks: Int
    /// Env steps of adaptation per task and init.
    public var budget: Int
    /// Env steps between scored points of the curve; the curve has points 0, K, 2K, …, budget.
    public var every: Int
    /// Greedy episodes averaged at every point.
    public var episodes: Int
    /// The DQN settings every init adapts with.
    public var dqn: DQNConfig
    public var targetReturn: Double?
    /// Held-out test tasks (the default) or validation tasks.
    public var split = TaskSplit.test
    /// Adaptation settings of particular inits (by name: "meta", "random", …) where they differ from `dqn`:
    /// the adaptation protocol is part of each method, and what each init gets is stated in the report.
    public var initSettings: [String: DQNConfig] = [:]

    public init(family: TaskFamily, runSeed: UInt64, tasks: Int, budget: Int, every: Int, episodes: Int = 5,
                dqn: DQNConfig, targetReturn: Double?) {
        self.family = family; self.runSeed = runSeed; self.tasks = tasks; self.budget = budget; self.every = every
        self.episodes = episodes; self.dqn = dqn; self.targetReturn = targetReturn
    }

    /// The DQN settings init `name` adapts with.
    public func dqn(for name: String) -> DQNConfig { initSettings[name] ?? dqn }

    public func validate() throws {
        try dqn.validate()
        for (name, settings) in initSettings {
            do { try settings.validate() } catch { throw EvaluationError.invalid("\(name)'s adaptation settings: \(error)") }
        }
        guard tasks >= 1 else { throw EvaluationError.invalid("tasks must be ≥ 1, got \(tasks)") }
        guard budget >= 1 else { throw EvaluationError.invalid("budget must be ≥ 1, got \(budget)") }
        guard every >= 1 && every <= budget && budget % every == 0 else {
            throw EvaluationError.invalid("every (\(every)) must divide the budget (\(budget))")
        }
        guard episodes >= 1 else { throw EvaluationError.invalid("episodes must be ≥ 1, got \(episodes)") }
    }

    /// The steps at which the curve is scored.
    public var steps: [Int] { Array(stride(from: 0, through: budget, by: every)) }

    public func task(_ i: Int) throws -> TaskSpec {
        split == .test ? try heldOutTask(family, runSeed: runSeed, index: i) : try validationTask(family, runSeed: runSeed, index: i)
    }
    /// Seeds task i's adaptation: the same for every init, so they see the same episodes' randomness.
    public func adaptationSeed(_ i: Int) -> UInt64 {
        deriveSeed(runSeed, iteration: split.seedIterations.adaptation, slot: UInt64(i), purpose: .evaluation)
    }
    /// Seeds task i's greedy scoring: the same start states at every point, for every init.
    public func scoringSeed(_ i: Int) -> UInt64 {
        deriveSeed(runSeed, iteration: split.seedIterations.scoring, slot: UInt64(i), purpose: .evaluation)
    }
}

public enum EvaluationError: Error, CustomStringConvertible {
    case invalid(String)
    public var description: String {
        switch self {
        case .invalid(let m): return m
        }
    }
}

extension EvaluationPlan {
    /// The job that adapts `initial` on held-out task i for `budget` steps (default: the plan's) and
    /// scores it every `every` steps; `seed` defaults to the task's adaptation seed, shared by every init.
    public func job(_ initial: ParameterVector, taskIndex i: Int, budget: Int? = nil, seed: UInt64? = nil,
                    returnFinal: Bool = false, settings: DQNConfig? = nil) throws -> AdaptationJob {
        AdaptationJob(initial: initial, task: try task(i), dqn: settings ?? dqn, budget: budget ?? self.budget, every: every,
                      episodes: episodes, seed: seed ?? adaptationSeed(i), scoringSeed: scoringSeed(i), returnFinal: returnFinal)
    }
}

/// Adapts `initial` on held-out task i and scores the greedy return at every point of the plan.
public func adaptationCurve(_ initial: ParameterVector, plan: EvaluationPlan, taskIndex i: Int) throws -> [Double] {
    try plan.job(initial, taskIndex: i).run().returns
}

/// The multi-task pretrained baseline: one DQN trained from `initial` on tasks drawn from the family,
/// a new task every episode, for `steps` env steps (the MAML paper's "pretrained" row).
///
/// A long single DQN run can collapse (on CartPole its weights grow until the greedy policy falls
/// back to ~10 steps), so the run is scored at `checkpoints` evenly spaced points by its greedy return
/// on `validationTasks` training-distribution tasks (never the held-out ones) and the best-scoring
/// parameters are kept: the strongest baseline this budget buys, as early stopping would give it.
/// `snapshotsOut` receives every scored snapshot (step, parameters), for choosing one by another criterion
/// (`metatrain eval`'s multitask-fastest: by adaptation speed on validation tasks).
public func multiTaskPretrain(
    initial: ParameterVector, family: TaskFamily, steps: Int, runSeed: UInt64, config: DQNConfig,
    checkpoints: Int = 20, validationTasks: Int = 5, episodes: Int = 3,
    snapshotsOut: ((Int, ParameterVector)) -> Void = { _ in }
) throws -> (parameters: ParameterVector, step: Int, validationReturn: Double) {
    var taskRNG = SeededRNG(seed: deriveSeed(runSeed, iteration: UInt64.max - 3, slot: 0, purpose: .taskSample))
    var env = try MultiTaskEnvironment(family: family, using: &taskRNG)
    let validation = try (0..<validationTasks).map { _ in try family.sample(using: &taskRNG) }
    let seed = deriveSeed(runSeed, iteration: UInt64.max - 3, slot: 0, purpose: .innerLoop)
    var snapshots: [(Int, ParameterVector)] = []
    let every = max(steps / max(checkpoints, 1), 1)
    let final = try adapt(initial: initial, environment: &env, budget: steps, seed: seed, config: config,
                          snapshots: Snapshots(every: every) { step, p in if step > 0 { snapshots.append((step, p)) } })
    if snapshots.last?.0 != steps { snapshots.append((steps, final.parameters)) }
    for s in snapshots where s.1.isFinite { snapshotsOut(s) }
    var best = (parameters: final.parameters, step: steps, validationReturn: -Double.infinity)
    for (step, p) in snapshots where p.isFinite {
        var total = 0.0
        for (i, task) in validation.enumerated() {
            total += try evaluateGreedy(p, task: task, episodes: episodes, seed: deriveSeed(seed, iteration: 0, slot: UInt64(i), purpose: .evaluation),
                                        config: config).reduce(0, +) / Double(episodes)
        }
        // Later snapshots win ties: they have seen more data.
        if total / Double(validationTasks) >= best.validationReturn { best = (p, step, total / Double(validationTasks)) }
    }
    return best
}

/// Mean and half-width of the 95% confidence interval of the mean (Student t, n − 1 degrees of freedom);
/// the half-width is NaN for a single value.
public func meanAndCI95(_ values: [Double]) -> (mean: Double, ci95: Double) {
    guard !values.isEmpty else { return (0, 0) }
    let n = Double(values.count), mean = values.reduce(0, +) / n
    // One task says nothing about the spread: NaN, which the report prints as "—" and JSON as null.
    guard values.count > 1 else { return (mean, .nan) }
    let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
    return (mean, studentT975(degreesOfFreedom: values.count - 1) * (variance / n).squareRoot())
}

/// The 0.975 quantile of Student's t distribution.
func studentT975(degreesOfFreedom df: Int) -> Double {
    let table: [Double] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                           2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                           2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
    if df >= 1 && df <= table.count { return table[df - 1] }
    // Beyond the table, each range takes its lowest df's quantile: never narrower than the truth.
    if df <= 40 { return 2.040 }
    if df <= 60 { return 2.020 }
    if df <= 120 { return 2.000 }
    return 1.980
}

/// The first scored step at which a curve reaches `target`, or nil.
public func stepsToTarget(_ curve: [Double], steps: [Int], target: Double) -> Int? {
    zip(steps, curve).first { $0.1 >= target }?.0
}

/// The median of per-task steps-to-target, a task that never reached it counting as +∞; nil when the
/// median task never reached it.
public func medianSteps(_ values: [Int?]) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.map { $0.map(Double.init) ?? .infinity }.sorted()
    let n = sorted.count
    let median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    return median.isFinite ? median : nil
}

/// Runs `body(0..<count)` on up to `threads` threads; results come back in index order.
///
/// Each index is an independent, deterministic job, so the results do not depend on `threads`.
public func parallelMap<T: Sendable>(_ count: Int, threads: Int, _ body: @escaping @Sendable (Int) throws -> T) throws -> [T] {
    let jobs = JobQueue<T>(count: count)
    let threadCount = max(1, min(threads, count))
    let done = DispatchSemaphore(value: 0)
    for _ in 0..<threadCount {
        let thread = Thread {
            while let i = jobs.take() { jobs.store(i, Result { try body(i) }) }
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    for _ in 0..<threadCount { done.wait() }
    return try jobs.results()
}

/// The shared state of `parallelMap`: the next index and the results, behind one lock.
private final class JobQueue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private var slots: [Result<T, Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func take() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard next < slots.count else { return nil }
        next += 1
        return next - 1
    }
    func store(_ i: Int, _ r: Result<T, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    func results() throws -> [T] { lock.lock(); defer { lock.unlock() }; return try slots.map { try $0!.get() } }
}
