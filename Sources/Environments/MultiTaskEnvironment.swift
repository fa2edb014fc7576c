import NeuralNet

/// An environment that draws a new task from a family at every reset: the multi-task pretraining setting.
///
/// This is how the "pretrained" baseline of the MAML paper is trained — one network on tasks sampled
/// from the family — and it lets that baseline use the ordinary DQN loop unchanged. Every task of a
/// family has the same observation and action sizes, which `init` checks on the family's extremes.
public struct MultiTaskEnvironment: Environment {
    public let family: TaskFamily
    /// The task of the current episode.
    public private(set) var task: TaskSpec
    private var current: any Environment

    /// Draws a first task from `rng`; every reset draws another.
    public init(family: TaskFamily, using rng: inout SeededRNG) throws {
        try family.validate()
        self.family = family
        task = try family.sample(using: &rng)
        current = try task.makeEnvironment()
    }

    public var observationSize: Int { current.observationSize }
    public var actionCount: Int { current.actionCount }
    public var maxEpisodeSteps: Int { current.maxEpisodeSteps }
    public var state: [Double] { current.state }
    public var fault: (any Error)? { current.fault }

    /// Draws the next task from `rng`, then resets it with the same generator.
    public mutating func reset(using rng: inout SeededRNG) {
        // `init` validated the family, so drawing cannot fail; should it, the episode keeps the old task.
        if let next = try? family.sample(using: &rng), let env = try? next.makeEnvironment(),
           env.observationSize == current.observationSize && env.actionCount == current.actionCount {
            task = next
            current = env
        }
        current.reset(using: &rng)
    }

    public mutating func setState(_ state: [Double]) throws { try current.setState(state) }
    public mutating func step(_ action: Int) -> StepOutcome { current.step(action) }
    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) { current.writeObservation(to: buffer) }
}
