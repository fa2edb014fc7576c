import Foundation
import NeuralNet

/// Physical parameters of Acrobot-v1 ("book" dynamics). Gravity is fixed at 9.8, as in gymnasium.
public struct AcrobotParameters: Codable, Sendable, Equatable {
    public var linkLength1 = 1.0      // LINK_LENGTH_1
    public var linkMass1 = 1.0        // LINK_MASS_1
    public var linkMass2 = 1.0        // LINK_MASS_2
    public var linkCenterOfMass1 = 0.5  // LINK_COM_POS_1
    public var linkCenterOfMass2 = 0.5  // LINK_COM_POS_2
    public var linkMomentOfInertia = 1.0  // LINK_MOI (both links)
    public var maxEpisodeSteps = 500

    public init(linkLength1: Double = 1.0, linkMass1: Double = 1.0, linkMass2: Double = 1.0,
                linkCenterOfMass1: Double = 0.5, linkCenterOfMass2: Double = 0.5,
                linkMomentOfInertia: Double = 1.0, maxEpisodeSteps: Int = 500) {
        self.linkLength1 = linkLength1; self.linkMass1 = linkMass1; self.linkMass2 = linkMass2
        self.linkCenterOfMass1 = linkCenterOfMass1; self.linkCenterOfMass2 = linkCenterOfMass2
        self.linkMomentOfInertia = linkMomentOfInertia; self.maxEpisodeSteps = maxEpisodeSteps
    }

    public func validate() throws {
        let t = "acrobot"
        try require(linkLength1 > 0, t, "link_length_1", linkLength1, "finite and > 0")
        try require(linkMass1 > 0, t, "link_mass_1", linkMass1, "finite and > 0")
        try require(linkMass2 > 0, t, "link_mass_2", linkMass2, "finite and > 0")
        try require(linkCenterOfMass1 >= 0, t, "link_com_pos_1", linkCenterOfMass1, "finite and ≥ 0")
        try require(linkCenterOfMass2 >= 0, t, "link_com_pos_2", linkCenterOfMass2, "finite and ≥ 0")
        try require(linkMomentOfInertia > 0, t, "link_moi", linkMomentOfInertia, "finite and > 0")
        try require(maxEpisodeSteps > 0, t, "max_episode_steps", Double(maxEpisodeSteps), "> 0")
    }
}

/// Acrobot-v1 as gymnasium 1.x computes it: one classical RK4 step over dt = 0.2.
///
/// Squares are `pow(x, 2.0)` (glibc), not `x*x`: gymnasium writes `x**2` on Python floats, and the
/// two differ by an ulp often enough to change states (fixtures README).
public struct Acrobot: Environment, Sendable {
    public let parameters: AcrobotParameters
    let dt = 0.2
    let maxVelocity1 = 4 * Double.pi
    let maxVelocity2 = 9 * Double.pi
    let torques: [Double] = [-1.0, 0.0, 1.0]
    var s: (Double, Double, Double, Double) = (0, 0, 0, 0)
    var clock: EpisodeClock

    public init(_ parameters: AcrobotParameters = AcrobotParameters()) throws {
        try parameters.validate()
        self.parameters = parameters
        clock = EpisodeClock(limit: parameters.maxEpisodeSteps)
    }

    public var observationSize: Int { 6 }
    public var actionCount: Int { 3 }
    public var maxEpisodeSteps: Int { parameters.maxEpisodeSteps }
    public var state: [Double] { [s.0, s.1, s.2, s.3] }

    public mutating func reset(using rng: inout SeededRNG) {
        // gymnasium draws U(-0.1, 0.1) and rounds to float32.
        func draw() -> Double { Double(Float(rng.nextDouble(in: -0.1, 0.1))) }
        s = (draw(), draw(), draw(), draw())
        clock.elapsed = 0
    }

    public mutating func setState(_ v: [Double]) throws {
        guard v.count == 4 else { throw EnvironmentError.stateSize(task: "acrobot", expected: 4, got: v.count) }
        s = (v[0], v[1], v[2], v[3])
        clock.elapsed = 0
    }

    public mutating func step(_ action: Int) -> StepOutcome {
        let torque = torques[action]
        typealias V = (Double, Double, Double, Double)
        let y: V = s
        func add(_ a: V, _ h: Double, _ k: V) -> V { (a.0 + h * k.0, a.1 + h * k.1, a.2 + h * k.2, a.3 + h * k.3) }
        let h = dt / 2.0
        let k1 = derivatives(y, torque)
        let k2 = derivatives(add(y, h, k1), torque)
        let k3 = derivatives(add(y, h, k2), torque)
        let k4 = derivatives(add(y, dt, k3), torque)
        let w = dt / 6.0
        func combine(_ y: Double, _ a: Double, _ b: Double, _ c: Double, _ d: Double) -> Double {
            y + w * (((a + 2 * b) + 2 * c) + d)
        }
        let theta1 = wrap(combine(y.0, k1.0, k2.0, k3.0, k4.0))
        let theta2 = wrap(combine(y.1, k1.1, k2.1, k3.1, k4.1))
        let dTheta1 = min(max(combine(y.2, k1.2, k2.2, k3.2, k4.2), -maxVelocity1), maxVelocity1)
        let dTheta2 = min(max(combine(y.3, k1.3, k2.3, k3.3, k4.3), -maxVelocity2), maxVelocity2)
        s = (theta1, theta2, dTheta1, dTheta2)
        let terminated = -cos(theta1) - cos(theta2 + theta1) > 1.0
        return StepOutcome(reward: terminated ? 0.0 : -1.0, terminated: terminated, truncated: clock.tick())
    }

    /// gymnasium's `_dsdt` ("book" variant), in its evaluation order.
    func derivatives(_ y: (Double, Double, Double, Double), _ a: Double) -> (Double, Double, Double, Double) {
        let p = parameters
        let m1 = p.linkMass1, m2 = p.linkMass2, l1 = p.linkLength1
        let lc1 = p.linkCenterOfMass1, lc2 = p.linkCenterOfMass2
        let i1 = p.linkMomentOfInertia, i2 = p.linkMomentOfInertia
        let g = 9.8
        let (theta1, theta2, dtheta1, dtheta2) = y
        func sq(_ x: Double) -> Double { pow(x, 2.0) }
        let d1 = m1 * sq(lc1) + m2 * (sq(l1) + sq(lc2) + 2 * l1 * lc2 * cos(theta2)) + i1 + i2
        let d2 = m2 * (sq(lc2) + l1 * lc2 * cos(theta2)) + i2
        let phi2 = m2 * lc2 * g * cos(theta1 + theta2 - Double.pi / 2.0)
        let phi1 = -m2 * l1 * lc2 * sq(dtheta2) * sin(theta2) - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * cos(theta1 - Double.pi / 2) + phi2
        let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * sq(dtheta1) * sin(theta2) - phi2)
            / (m2 * sq(lc2) + i2 - sq(d2) / d1)
        let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return (dtheta1, dtheta2, ddtheta1, ddtheta2)
    }

    func wrap(_ value: Double) -> Double {
        var x = value
        let span = Double.pi - (-Double.pi)
        while x > Double.pi { x = x - span }
        while x < -Double.pi { x = x + span }
        return x
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        buffer[0] = Float(cos(s.0)); buffer[1] = Float(sin(s.0))
        buffer[2] = Float(cos(s.1)); buffer[3] = Float(sin(s.1))
        buffer[4] = Float(s.2); buffer[5] = Float(s.3)
    }
}
