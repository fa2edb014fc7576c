import DQN
import Environments
import NeuralNet

/// What a worker reports for one slot besides the update tensor.
public struct SlotStatistics: Codable, Sendable, Equatable {
    public var meanReturn: Double
    public var episodes: Int
    public var meanLoss: Double
    public var environmentSteps: Int
    public var gradientUpdates: Int
    public var seconds: Double
    public var queryLoss: Double

    public init(meanReturn: Double = 0, episodes: Int = 0, meanLoss: Double = 0, environmentSteps: Int = 0,
                gradientUpdates: Int = 0, seconds: Double = 0, queryLoss: Double = 0) {
        self.meanReturn = meanReturn; self.episodes = episodes; self.meanLoss = meanLoss
        self.environmentSteps = environmentSteps; self.gradientUpdates = gradientUpdates
        self.seconds = seconds; self.queryLoss = queryLoss
    }
}

/// A slot's outcome: the update the coordinator aggregates, and statistics.
public struct SlotOutcome: Sendable, Equatable {
    /// φ − θ (Reptile, distill), ∇L_query(φ) (FOMAML), the second-order meta-gradient (MAML) or the antithetic
    /// evolution-strategies estimate of −∇(return after adaptation) (ES-MAML).
    public var update: ParameterVector
    public var statistics: SlotStatistics
}

/// Runs one slot of a meta-iteration: adapt θ to `task`, then form the algorithm's update.
///
/// Deterministic in (θ, task, algorithm, settings, seed): any worker computes the same bits.
/// - Parameter progress: called with the support phase's env steps so far after each finished episode (a
///   worker's liveness report; it changes nothing computed).
public func runSlot(
    theta: ParameterVector, task: TaskSpec, algorithm: MetaAlgorithm, settings: InnerLoopSettings, seed: UInt64,
    progress: ((Int) -> Void)? = nil
) throws -> SlotOutcome {
    if algorithm == .maml, let problem = mamlIncompatibility(settings.dqn) { throw MetaLearningError.incompatible(problem) }
    if algorithm == .esMAML {
        guard let evolution = settings.evolution else {
            throw MetaLearningError.incompatible("es-maml needs the inner loop's evolution settings (cluster.yaml meta.es)")
        }
        return try evolutionSlot(theta: theta, task: task, settings: settings, evolution: evolution, seed: seed, progress: progress)
    }
    var records: [UpdateRecord] = []
    let adaptation = try adapt(initial: theta, task: task, budget: settings.budget, seed: seed, config: settings.dqn,
                               progress: progress.map { report in { step, _ in report(step) } },
                               recorder: algorithm == .maml ? { records.append($0) } : nil)
    let returns = adaptation.episodeReturns
    // The last 10 episodes say how far adaptation got (the reference peer reports the same).
    let recent = returns.suffix(10)
    var statistics = SlotStatistics(
        meanReturn: recent.isEmpty ? 0 : recent.reduce(0, +) / Double(recent.count), episodes: returns.count,
        meanLoss: adaptation.meanLoss, environmentSteps: adaptation.environmentSteps,
        gradientUpdates: adaptation.gradientUpdates, seconds: adaptation.seconds)
    if algorithm == .reptile || algorithm == .distill {
        // A distillation slot trains the expert; the coordinator distils from φ = θ + (φ − θ).
        return SlotOutcome(update: difference(adaptation.parameters, theta), statistics: statistics)
    }
    let query: QueryGradient
    if let spec = settings.teacher {
        // The teacher is φ trained on; only the support phase's steps are differentiated (MAML), the teacher's
        // targets are constants of the query loss.
        let teacher = try adapt(initial: adaptation.parameters, task: task, budget: spec.steps,
                                seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .teacher), config: settings.dqn)
        query = try teacherQueryGradient(parameters: adaptation.parameters, teacher: teacher.parameters, task: task,
                                         steps: settings.querySteps, advantages: spec.match == .advantages,
                                         seed: seed, config: settings.dqn)
        statistics.environmentSteps += spec.steps
    } else {
        query = try queryGradient(parameters: adaptation.parameters, task: task, steps: settings.querySteps,
                                  seed: seed, config: settings.dqn)
    }
    statistics.queryLoss = query.loss
    statistics.environmentSteps += query.transitions
    guard algorithm == .maml else { return SlotOutcome(update: query.gradient, statistics: statistics) }
    let mlp = try makeNetwork(for: task, config: settings.dqn)
    let g = secondOrderMetaGradient(mlp: mlp, steps: records, learningRate: settings.dqn.learningRate,
                                    queryGradient: query.gradient, loss: settings.dqn.loss)
    return SlotOutcome(update: g, statistics: statistics)
}

/// What a worker computes for a slot: the real inner loop, or nothing (`metatrain worker --compute none`).
public enum SlotCompute: String, Sendable, CaseIterable {
    case train
    /// An instant outcome (`instantSlotOutcome`), to measure the coordinator alone: `scripts/capacity.sh`.
    case instant = "none"
}

/// A slot's outcome made without training: valid, deterministic in (θ's size, seed), at no compute cost.
///
/// Why: the coordinator's capacity (slots per second, CPU per slot) is measured with workers that return at once,
/// so every message and the meta-update run at full size while nothing else competes for the cores. Every value is
/// the same small number (at most 1e-3 in magnitude), so θ changes with each version; the θ it gives means nothing.
public func instantSlotOutcome(parameterCount: Int, seed: UInt64) -> SlotOutcome {
    let value = Float(Int(seed % 2001) - 1000) * 1e-6
    return SlotOutcome(update: ParameterVector([Float](repeating: value, count: parameterCount)), statistics: SlotStatistics())
}

public enum MetaLearningError: Error, CustomStringConvertible {
    case incompatible(String)
    public var description: String {
        switch self {
        case .incompatible(let m): return m
        }
    }
}
