import Foundation
import NeuralNet

/// Parameters of one random tabular MDP: its size, horizon, and the seed its tables come from.
public struct TabularMDPParameters: Codable, Sendable, Equatable {
    public var states = 10
    public var actions = 5
    public var horizon = 10
    /// Seeds the transition and reward tables: the task's identity.
    public var seed: UInt64 = 0
    /// When set, the transition table comes from this seed and only the rewards from `seed`: tasks that share
    /// it share their dynamics and differ in what pays (a family whose tasks have structure in common).
    public var dynamicsSeed: UInt64?

    public init(states: Int = 10, actions: Int = 5, horizon: Int = 10, seed: UInt64 = 0, dynamicsSeed: UInt64? = nil) {
        self.states = states; self.actions = actions; self.horizon = horizon; self.seed = seed
        self.dynamicsSeed = dynamicsSeed
    }

    public func validate() throws {
        let t = "tabular_mdp"
        try require(states > 0 && states <= 4096, t, "states", Double(states), "in 1...4096")
        try require(actions > 0 && actions <= 256, t, "actions", Double(actions), "in 1...256")
        try require(horizon > 0, t, "horizon", Double(horizon), "> 0")
    }
}

/// A random MDP (the RL² / seed documents' family): S states, A actions, one-hot observations.
///
/// From the task seed: each transition row P(·|s, a) ~ Dirichlet(1, …, 1) and each mean reward
/// R(s, a) ~ N(1, 1); with a `dynamicsSeed`, the rows come from it and the rewards alone from the task
/// seed. Rewards are the means (no reward noise, so the task is the table). Episodes
/// start in a uniformly drawn state and are truncated at `horizon`; transitions are sampled from an
/// RNG seeded at each reset, so an episode is a pure function of the reset RNG.
public struct TabularMDP: Environment, Sendable {
    public let parameters: TabularMDPParameters
    /// cumulative[(s·A + a)·S + s'] = P(next ≤ s' | s, a); the last entry of each row is exactly 1.
    let cumulative: [Double]
    public let rewards: [Double]
    var current = 0
    var rng = SeededRNG(seed: 0)
    var clock: EpisodeClock

    public init(_ parameters: TabularMDPParameters) throws {
        try parameters.validate()
        self.parameters = parameters
        let s = parameters.states, a = parameters.actions
        var tableRNG = SeededRNG(seed: parameters.seed)
        // Without a dynamics seed, one stream draws rows and rewards interleaved (the original family's tables).
        var dynamicsRNG = parameters.dynamicsSeed.map { SeededRNG(seed: $0) }
        var cumulative = [Double](repeating: 0, count: s * a * s)
        var rewards = [Double](repeating: 0, count: s * a)
        for row in 0..<(s * a) {
            // Dirichlet(1) = normalised Exp(1) draws.
            var draws = (0..<s).map { _ in
                -log(1 - (dynamicsRNG != nil ? dynamicsRNG!.nextDouble() : tableRNG.nextDouble()))
            }
            let total = draws.reduce(0, +)
            var running = 0.0
            for j in 0..<s {
                draws[j] /= total
                running += draws[j]
                cumulative[row * s + j] = running
            }
            cumulative[row * s + s - 1] = 1
            rewards[row] = 1 + tableRNG.nextGaussian()
        }
        self.cumulative = cumulative
        self.rewards = rewards
        clock = EpisodeClock(limit: parameters.horizon)
    }

    public var observationSize: Int { parameters.states }
    public var actionCount: Int { parameters.actions }
    public var maxEpisodeSteps: Int { parameters.horizon }
    public var state: [Double] { [Double(current)] }

    public mutating func reset(using rng: inout SeededRNG) {
        self.rng = SeededRNG(seed: rng.next())
        current = self.rng.nextInt(below: parameters.states)
        clock.elapsed = 0
    }

    public mutating func setState(_ s: [Double]) throws {
        guard s.count == 1 else { throw EnvironmentError.stateSize(task: "tabular_mdp", expected: 1, got: s.count) }
        guard let index = Int(exactly: s[0]), index >= 0, index < parameters.states else {
            throw EnvironmentError.invalidParameter(task: "tabular_mdp", name: "state", value: s[0],
                                                    requirement: "an integer in 0..<\(parameters.states)")
        }
        current = index
        clock.elapsed = 0
    }

    public mutating func step(_ action: Int) -> StepOutcome {
        let s = parameters.states
        let row = current * parameters.actions + action
        let reward = rewards[row]
        let u = rng.nextDouble()
        var next = 0
        while next < s - 1 && cumulative[row * s + next] <= u { next += 1 }
        current = next
        return StepOutcome(reward: reward, terminated: false, truncated: clock.tick())
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        buffer.update(repeating: 0, count: parameters.states)
        buffer[current] = 1
    }
}
