import NeuralNet

/// Every knob of the DQN inner loop in one place, with CleanRL-like defaults.
///
/// Defaults follow `shared/reference/dqn_torch.py` (CleanRL's dqn.py scaled down: 64-64 MLP,
/// batch 64, learning starts 500, an update every env step, hard target copy every 100 updates),
/// so speed comparisons with the PyTorch peer run the same algorithm. `DQNConfig.cartPoleSolver`
/// is the tuned setting the learning check uses.
public struct DQNConfig: Codable, Sendable, Equatable {
    /// Widths of the hidden layers (ReLU); input and output sizes come from the environment.
    public var hiddenLayers: [Int] = [64, 64]
    public var optimizer: OptimizerKind = .adam
    public var learningRate: Float = 2.5e-4
    /// Adam's ε (PyTorch default).
    public var adamEpsilon: Float = 1e-8
    /// Replay buffer capacity in transitions (a ring: the oldest are overwritten).
    public var bufferCapacity = 10_000
    public var batchSize = 64
    /// Discount factor γ.
    public var gamma: Float = 0.99
    /// No gradient update until the env step count exceeds this.
    public var learningStarts = 500
    /// Env steps between gradient updates.
    public var trainFrequency = 1
    /// Gradient updates between target-network updates.
    public var targetUpdateInterval = 100
    /// Target update θ⁻ ← τ·θ + (1 − τ)·θ⁻; 1 is a hard copy, e.g. 0.005 with interval 1 is Polyak.
    public var targetUpdateTau: Float = 1
    /// ε-greedy: linear from `startEpsilon` to `endEpsilon` over `explorationFraction` of the budget.
    public var startEpsilon: Float = 1
    public var endEpsilon: Float = 0.05
    public var explorationFraction: Float = 0.5
    /// ε-z-greedy (Dabney, Ostrovski & Barreto, "Temporally-extended ε-greedy exploration", ICLR 2021): an exploratory
    /// action is held for n steps, n drawn from a zeta(2) distribution (P(n) ∝ 1/n²) capped at this; nil: plain
    /// ε-greedy. Why: dithering one step at a time rarely travels far, so sparse goals many moves away are found late.
    /// Optional so that configurations without it keep their hash.
    public var ezMaxRepeat: Int? = nil
    /// Double DQN: the online network picks the next action, the target network values it.
    public var doubleDQN = false
    public var loss: RegressionLoss = .huber
    /// Clip the gradient's Euclidean norm to this before the optimiser step; nil: no clipping.
    public var maxGradientNorm: Float? = nil
    /// Transitions of context the Q-network also sees (`ContextEnvironment`); nil: none. Optional so that
    /// configurations without it keep the hash they had before it existed.
    public var contextWindow: Int? = nil

    public init() {}

    /// The setting the CartPole learning check uses (see docs/TESTING.md: it solves default CartPole).
    public static var cartPoleSolver: DQNConfig {
        var c = DQNConfig()
        c.learningRate = 5e-4
        c.bufferCapacity = 50_000
        c.batchSize = 64
        c.learningStarts = 1_000
        c.trainFrequency = 1
        c.targetUpdateInterval = 500
        c.explorationFraction = 0.2
        c.endEpsilon = 0.02
        c.doubleDQN = true
        c.maxGradientNorm = 10
        return c
    }

    /// Throws a message naming the first invalid field.
    public func validate() throws {
        func check(_ ok: Bool, _ field: String, _ value: Any, _ requirement: String) throws {
            if !ok { throw DQNError.invalidConfig(field: field, value: "\(value)", requirement: requirement) }
        }
        try check(!hiddenLayers.isEmpty && hiddenLayers.allSatisfy { $0 > 0 && $0 <= 65_536 }, "hidden_layers",
                  hiddenLayers, "a non-empty list of widths in 1...65536")
        try check(learningRate > 0 && learningRate.isFinite, "learning_rate", learningRate, "finite and > 0")
        try check(adamEpsilon > 0 && adamEpsilon.isFinite, "adam_epsilon", adamEpsilon, "finite and > 0")
        try check(bufferCapacity > 0, "buffer_capacity", bufferCapacity, "> 0")
        try check(batchSize > 0 && batchSize <= bufferCapacity, "batch_size", batchSize, "in 1...buffer_capacity")
        try check(gamma >= 0 && gamma <= 1, "gamma", gamma, "in [0, 1]")
        try check(learningStarts >= 0, "learning_starts", learningStarts, "≥ 0")
        try check(trainFrequency > 0, "train_frequency", trainFrequency, "> 0")
        try check(targetUpdateInterval > 0, "target_update_interval", targetUpdateInterval, "> 0")
        try check(targetUpdateTau > 0 && targetUpdateTau <= 1, "target_update_tau", targetUpdateTau, "in (0, 1]")
        for (name, e) in [("start_epsilon", startEpsilon), ("end_epsilon", endEpsilon)] {
            try check(e >= 0 && e <= 1, name, e, "in [0, 1]")
        }
        try check(explorationFraction > 0 && explorationFraction <= 1, "exploration_fraction",
                  explorationFraction, "in (0, 1]")
        if let m = maxGradientNorm { try check(m > 0 && m.isFinite, "max_gradient_norm", m, "finite and > 0") }
        if let k = contextWindow { try check(k >= 1 && k <= 64, "context_window", k, "in 1...64 (or absent)") }
        if let n = ezMaxRepeat { try check(n >= 2 && n <= 1000, "ez_max_repeat", n, "in 2...1000 (or absent: plain ε-greedy)") }
    }

    /// The cumulative zeta(2) distribution over 1...cap, for drawing ε-z-greedy's repeat counts.
    public static func zetaCDF(cap: Int) -> [Float] {
        let weights = (1...cap).map { 1 / Double($0 * $0) }
        let total = weights.reduce(0, +)
        var sum = 0.0
        return weights.map { sum += $0; return Float(sum / total) }
    }

    /// ε at env step `step` of a run of `budget` steps (CleanRL's `linear_schedule`).
    public func epsilon(step: Int, budget: Int) -> Float {
        let duration = max(explorationFraction * Float(budget), 1)
        let slope = (endEpsilon - startEpsilon) / duration
        return max(slope * Float(step) + startEpsilon, endEpsilon)
    }
}

/// Errors of the DQN inner loop, for inputs that come from configuration or the wire.
public enum DQNError: Error, Equatable, CustomStringConvertible {
    case invalidConfig(field: String, value: String, requirement: String)
    case parameterCount(expected: Int, got: Int)
    case invalidBudget(Int)

    public var description: String {
        switch self {
        case let .invalidConfig(field, value, requirement):
            return "DQN setting '\(field)' = \(value) is invalid: it must be \(requirement)"
        case let .parameterCount(expected, got):
            return "initial parameters have \(got) values, the task's network needs \(expected)"
        case let .invalidBudget(b):
            return "step budget \(b) is invalid: adaptation needs ≥ 0 env steps, an inner loop's support and query phases ≥ 1 each"
        }
    }
}
