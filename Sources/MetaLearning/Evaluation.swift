import DQN
import Environments
import NeuralNet

/// One initialisation's adaptation on held-out tasks: mean return before and after a short budget.
public struct InitialisationScore: Sendable, Equatable {
    public var name: String
    /// Greedy return of the initialisation itself, averaged over tasks.
    public var returnBefore: Double
    /// Greedy return after `budget` steps of DQN from it, averaged over tasks.
    public var returnAfter: Double
    /// Mean return of the last training episodes during adaptation, averaged over tasks.
    public var trainingReturn: Double
}

/// The held-out task i of a run: drawn with a seed no training slot uses.
public func heldOutTask(_ family: TaskFamily, runSeed: UInt64, index: Int) throws -> TaskSpec {
    var rng = SeededRNG(seed: deriveSeed(runSeed, iteration: UInt64.max, slot: UInt64(index), purpose: .evaluation))
    return try family.sample(using: &rng)
}

/// Adapts each named initialisation on the same held-out tasks with the same settings and budget.
public func compareInitialisations(
    _ inits: [(String, ParameterVector)], family: TaskFamily, runSeed: UInt64, tasks: Int,
    settings: InnerLoopSettings, episodes: Int = 5
) throws -> [InitialisationScore] {
    let specs = try (0..<tasks).map { try heldOutTask(family, runSeed: runSeed, index: $0) }
    return try inits.map { name, theta in
        var before = 0.0, after = 0.0, training = 0.0
        for (i, task) in specs.enumerated() {
            let seed = deriveSeed(runSeed, iteration: UInt64.max - 1, slot: UInt64(i), purpose: .evaluation)
            let b = try evaluateGreedy(theta, task: task, episodes: episodes, seed: seed, config: settings.dqn)
            let adapted = try adapt(initial: theta, task: task, budget: settings.budget, seed: seed, config: settings.dqn)
            let a = try evaluateGreedy(adapted.parameters, task: task, episodes: episodes, seed: seed, config: settings.dqn)
            let recent = adapted.episodeReturns.suffix(10)
            before += b.reduce(0, +) / Double(b.count)
            after += a.reduce(0, +) / Double(a.count)
            training += recent.isEmpty ? 0 : recent.reduce(0, +) / Double(recent.count)
        }
        let n = Double(max(tasks, 1))
        return InitialisationScore(name: name, returnBefore: before / n, returnAfter: after / n, trainingReturn: training / n)
    }
}
