import Foundation
import NeuralNet

/// Physical parameters of CartPole-v1 (gymnasium's attribute names in the comments).
public struct CartPoleParameters: Codable, Sendable, Equatable {
    public var gravity = 9.8          // gravity
    public var massCart = 1.0         // masscart
    public var massPole = 0.1         // masspole
    /// Half the pole's length.
    public var length = 0.5           // length
    public var forceMagnitude = 10.0  // force_mag
    public var maxEpisodeSteps = 500  // TimeLimit of CartPole-v1

    public init() {}
    public init(gravity: Double = 9.8, massCart: Double = 1.0, massPole: Double = 0.1, length: Double = 0.5,
                forceMagnitude: Double = 10.0, maxEpisodeSteps: Int = 500) {
        self.gravity = gravity; self.massCart = massCart; self.massPole = massPole
        self.length = length; self.forceMagnitude = forceMagnitude; self.maxEpisodeSteps = maxEpisodeSteps
    }

    public func validate() throws {
        let t = "cartpole"
        try require(gravity >= 0, t, "gravity", gravity, "finite and ≥ 0")
        try require(massCart > 0, t, "masscart", massCart, "finite and > 0")
        try require(massPole > 0, t, "masspole", massPole, "finite and > 0")
        try require(length > 0, t, "length", length, "finite and > 0")
        try require(forceMagnitude > 0, t, "force_mag", forceMagnitude, "finite and > 0")
        try require(maxEpisodeSteps > 0, t, "max_episode_steps", Double(maxEpisodeSteps), "> 0")
    }
}

/// CartPole-v1, step for step as gymnasium 1.x computes it (explicit Euler, τ = 0.02).
public struct CartPole: Environment, Sendable {
    public let parameters: CartPoleParameters
    let totalMass: Double
    let poleMassLength: Double
    let tau = 0.02
    let thetaThreshold = 12 * 2 * Double.pi / 360
    let xThreshold = 2.4
    var x = 0.0, xDot = 0.0, theta = 0.0, thetaDot = 0.0
    var clock: EpisodeClock

    public init(_ parameters: CartPoleParameters = CartPoleParameters()) throws {
        try parameters.validate()
        self.parameters = parameters
        // Cached in gymnasium's __init__; computed in double, never from decimal literals.
        totalMass = parameters.massPole + parameters.massCart
        poleMassLength = parameters.massPole * parameters.length
        clock = EpisodeClock(limit: parameters.maxEpisodeSteps)
    }

    public var observationSize: Int { 4 }
    public var actionCount: Int { 2 }
    public var maxEpisodeSteps: Int { parameters.maxEpisodeSteps }
    public var state: [Double] { [x, xDot, theta, thetaDot] }

    public mutating func reset(using rng: inout SeededRNG) {
        x = rng.nextDouble(in: -0.05, 0.05); xDot = rng.nextDouble(in: -0.05, 0.05)
        theta = rng.nextDouble(in: -0.05, 0.05); thetaDot = rng.nextDouble(in: -0.05, 0.05)
        clock.elapsed = 0
    }

    public mutating func setState(_ s: [Double]) throws {
        guard s.count == 4 else { throw EnvironmentError.stateSize(task: "cartpole", expected: 4, got: s.count) }
        x = s[0]; xDot = s[1]; theta = s[2]; thetaDot = s[3]
        clock.elapsed = 0
    }

    public mutating func step(_ action: Int) -> StepOutcome {
        let p = parameters
        let force = action == 1 ? p.forceMagnitude : -p.forceMagnitude
        let c = cos(theta), s = sin(theta)
        let temp = (force + poleMassLength * (thetaDot * thetaDot) * s) / totalMass
        let thetaAcc = (p.gravity * s - c * temp) / (p.length * (4.0 / 3.0 - p.massPole * (c * c) / totalMass))
        let xAcc = temp - poleMassLength * thetaAcc * c / totalMass
        x = x + tau * xDot
        xDot = xDot + tau * xAcc
        theta = theta + tau * thetaDot
        thetaDot = thetaDot + tau * thetaAcc
        let terminated = x < -xThreshold || x > xThreshold || theta < -thetaThreshold || theta > thetaThreshold
        return StepOutcome(reward: 1.0, terminated: terminated, truncated: clock.tick())
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        buffer[0] = Float(x); buffer[1] = Float(xDot); buffer[2] = Float(theta); buffer[3] = Float(thetaDot)
    }
}
