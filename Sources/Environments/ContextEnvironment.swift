import NeuralNet

/// An environment whose observation also carries its episode's last `window` transitions — each the observation
/// it acted on, the action one-hot and the reward — newest first, zeros before the episode has that many.
///
/// Why: a Q-network that sees recent transitions can tell tasks apart without a gradient step (context-based
/// meta-RL in the manner of MQL, Fakoor et al. 2020, with a fixed window instead of a recurrent summary): on a
/// sparse goal family it can learn "search until a reward shows up in the context, then stay". The context is
/// cleared at every reset, so each episode adapts from scratch; the base environment is unchanged.
public struct ContextEnvironment<Base: Environment>: Environment {
    public private(set) var base: Base
    public let window: Int
    /// `window` entries of `entrySize` floats, newest first.
    private var context: [Float]
    private var current: [Float]

    public init(_ base: Base, window: Int) {
        precondition(window >= 1, "a context window holds at least one transition")
        self.base = base
        self.window = window
        context = [Float](repeating: 0, count: window * Self.entrySize(base))
        current = [Float](repeating: 0, count: base.observationSize)
    }

    /// Floats per remembered transition: observation, action one-hot, reward.
    static func entrySize(_ base: Base) -> Int { base.observationSize + base.actionCount + 1 }

    /// The observation size of `base` with a context of `window` transitions.
    public static func observationSize(base observation: Int, actions: Int, window: Int) -> Int {
        observation + window * (observation + actions + 1)
    }

    public var observationSize: Int { Self.observationSize(base: base.observationSize, actions: base.actionCount, window: window) }
    public var actionCount: Int { base.actionCount }
    public var maxEpisodeSteps: Int { base.maxEpisodeSteps }
    public var state: [Double] { base.state }
    public var fault: (any Error)? { base.fault }

    public mutating func reset(using rng: inout SeededRNG) {
        base.reset(using: &rng)
        clear()
    }

    public mutating func setState(_ state: [Double]) throws {
        try base.setState(state)
        clear()
    }

    public mutating func step(_ action: Int) -> StepOutcome {
        current.withUnsafeMutableBufferPointer { base.writeObservation(to: $0.baseAddress!) }
        let outcome = base.step(action)
        let entry = Self.entrySize(base), n = base.observationSize
        // Shift the older entries back by one and write the newest in front.
        if window > 1 {
            for i in stride(from: window * entry - 1, through: entry, by: -1) { context[i] = context[i - entry] }
        }
        for i in 0..<n { context[i] = current[i] }
        for a in 0..<base.actionCount { context[n + a] = a == action ? 1 : 0 }
        context[n + base.actionCount] = Float(outcome.reward)
        return outcome
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        base.writeObservation(to: buffer)
        let n = base.observationSize
        context.withUnsafeBufferPointer { (buffer + n).update(from: $0.baseAddress!, count: $0.count) }
    }

    private mutating func clear() {
        for i in context.indices { context[i] = 0 }
    }
}
