import NeuralNet

/// What one environment step produced besides the observation.
public struct StepOutcome: Equatable, Sendable {
    public var reward: Double
    /// The MDP reached a terminal state: do not bootstrap from the next observation.
    public var terminated: Bool
    /// The episode hit its step limit (gymnasium's `TimeLimit`): the state is not terminal.
    public var truncated: Bool

    public init(reward: Double, terminated: Bool, truncated: Bool) {
        self.reward = reward; self.terminated = terminated; self.truncated = truncated
    }
}

/// A discrete-action environment with an observable float vector, stepped one transition at a time.
///
/// Physics run in Double; observations are handed out as Float. The step limit (gymnasium's
/// `TimeLimit` wrapper) is part of the environment: `truncated` is set on the step where the number
/// of steps since reset reaches `maxEpisodeSteps`, independently of `terminated`.
public protocol Environment {
    var observationSize: Int { get }
    var actionCount: Int { get }
    var maxEpisodeSteps: Int { get }
    /// The exact internal state (gymnasium's `env.unwrapped.state`).
    var state: [Double] { get }

    /// Starts a new episode from a start state drawn from `rng`.
    mutating func reset(using rng: inout SeededRNG)
    /// Starts a new episode from exactly `state`; throws if it has the wrong size.
    mutating func setState(_ state: [Double]) throws
    /// Applies `action` (0..<actionCount).
    mutating func step(_ action: Int) -> StepOutcome
    /// Writes the current observation (observationSize Floats).
    func writeObservation(to buffer: UnsafeMutablePointer<Float>)
    /// Why this environment can no longer be stepped (an environment server that died, hung or sent garbage), or nil.
    ///
    /// `step` cannot throw (the built-in environments never fail), so an environment that can fails by latching its
    /// fault here and ending every episode at once; every loop that steps an environment checks it at episode ends
    /// and throws it, so the task fails with the reason. Built-in environments never have one.
    var fault: (any Error)? { get }
}

extension Environment {
    public var fault: (any Error)? { nil }

    /// Throws the environment's fault, if it has one.
    public func checkFault() throws {
        if let fault { throw fault }
    }
}

extension Environment {
    /// The current observation as an array (allocates: not for hot loops).
    public var observation: [Float] {
        [Float](unsafeUninitializedCapacity: observationSize) { buffer, count in
            writeObservation(to: buffer.baseAddress!)
            count = observationSize
        }
    }
}

/// Errors for task parameters and environment state that come from configuration or the wire.
public enum EnvironmentError: Error, Equatable, CustomStringConvertible {
    case invalidParameter(task: String, name: String, value: Double, requirement: String)
    case invalidRange(task: String, name: String, lower: Double, upper: Double)
    case stateSize(task: String, expected: Int, got: Int)
    case invalidFamily(String)
    case noEnvironmentServer(String)
    case unknownSwiftFamily(String)
    case unsupported(task: String, what: String)

    public var description: String {
        switch self {
        case let .invalidParameter(task, name, value, requirement):
            return "\(task): parameter '\(name)' = \(value) is invalid: it must be \(requirement)"
        case let .invalidRange(task, name, lower, upper):
            return "\(task): range for '\(name)' is [\(lower), \(upper)]: lower bound exceeds upper bound"
        case let .stateSize(task, expected, got):
            return "\(task): a state has \(expected) values, got \(got)"
        case let .invalidFamily(text):
            return text
        case let .noEnvironmentServer(name):
            return "gymnasium task \(name): this process has no environment server (a worker starts one per compute thread; give it --python)"
        case let .unknownSwiftFamily(name):
            return "Swift task family '\(name)' is not registered in this program: run the program that registers it (ExternalEnvironments.register), as coordinator and as worker"
        case let .unsupported(task, what):
            return "\(task): \(what) is not supported"
        }
    }
}

/// Checks one parameter and throws a message naming it; used by every `validate()`.
func require(_ ok: Bool, _ task: String, _ name: String, _ value: Double, _ requirement: String) throws {
    guard ok && value.isFinite else {
        throw EnvironmentError.invalidParameter(task: task, name: name, value: value, requirement: requirement)
    }
}

/// Steps-since-reset bookkeeping shared by every environment: gymnasium's `TimeLimit`.
struct EpisodeClock: Sendable {
    var elapsed = 0
    let limit: Int
    mutating func tick() -> Bool {
        elapsed += 1
        return elapsed >= limit
    }
}
