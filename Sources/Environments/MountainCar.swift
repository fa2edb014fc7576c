import Foundation
import NeuralNet

/// Physical parameters of MountainCar-v0.
public struct MountainCarParameters: Codable, Sendable, Equatable {
    public var force = 0.001
    public var gravity = 0.0025
    public var maxEpisodeSteps = 200

    public init(force: Double = 0.001, gravity: Double = 0.0025, maxEpisodeSteps: Int = 200) {
        self.force = force; self.gravity = gravity; self.maxEpisodeSteps = maxEpisodeSteps
    }

    public func validate() throws {
        try require(force > 0, "mountaincar", "force", force, "finite and > 0")
        try require(gravity >= 0, "mountaincar", "gravity", gravity, "finite and ≥ 0")
        try require(maxEpisodeSteps > 0, "mountaincar", "max_episode_steps", Double(maxEpisodeSteps), "> 0")
    }
}

/// MountainCar-v0 as gymnasium 1.x computes it: velocity first, then position with the new velocity.
public struct MountainCar: Environment, Sendable {
    public let parameters: MountainCarParameters
    let minPosition = -1.2, maxPosition = 0.6, maxSpeed = 0.07
    let goalPosition = 0.5, goalVelocity = 0.0
    var position = 0.0, velocity = 0.0
    var clock: EpisodeClock

    public init(_ parameters: MountainCarParameters = MountainCarParameters()) throws {
        try parameters.validate()
        self.parameters = parameters
        clock = EpisodeClock(limit: parameters.maxEpisodeSteps)
    }

    public var observationSize: Int { 2 }
    public var actionCount: Int { 3 }
    public var maxEpisodeSteps: Int { parameters.maxEpisodeSteps }
    public var state: [Double] { [position, velocity] }

    public mutating func reset(using rng: inout SeededRNG) {
        position = rng.nextDouble(in: -0.6, -0.4); velocity = 0
        clock.elapsed = 0
    }

    public mutating func setState(_ s: [Double]) throws {
        guard s.count == 2 else { throw EnvironmentError.stateSize(task: "mountaincar", expected: 2, got: s.count) }
        position = s[0]; velocity = s[1]
        clock.elapsed = 0
    }

    public mutating func step(_ action: Int) -> StepOutcome {
        velocity = velocity + (Double(action - 1) * parameters.force + cos(3 * position) * (-parameters.gravity))
        velocity = min(max(velocity, -maxSpeed), maxSpeed)
        position = position + velocity
        position = min(max(position, minPosition), maxPosition)
        if position == minPosition && velocity < 0 { velocity = 0.0 }
        let terminated = position >= goalPosition && velocity >= goalVelocity
        return StepOutcome(reward: -1.0, terminated: terminated, truncated: clock.tick())
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        buffer[0] = Float(position); buffer[1] = Float(velocity)
    }
}
