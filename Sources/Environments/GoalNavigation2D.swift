import Foundation
import NeuralNet

/// What a GoalNavigation2D step pays: minus the distance to the goal, or 1 inside the success radius and 0 elsewhere.
public enum GoalReward: String, Codable, Sendable, CaseIterable {
    /// −‖position − goal‖ after every move (the MAML paper's 2D navigation).
    case dense
    /// +1 after a move that ends within `successRadius` of the goal, else 0 (PEARL's sparse point robot):
    /// nothing tells the agent where the goal is until it has been there, so exploration is the cost.
    case sparse
}

/// Parameters of one 2D navigation task: where the (hidden) goal is and how the point moves.
///
/// The fields after `horizon` were added for the sparse families; their defaults are the dense task, and
/// they are encoded only when they differ from it, so a dense configuration's hash is what it always was.
public struct GoalNavigationParameters: Codable, Sendable, Equatable {
    public var goalX: Double
    public var goalY: Double
    /// 4 (axis moves) or 8 (axis and diagonal moves).
    public var directions = 8
    /// Distance travelled by one move.
    public var stepSize = 0.1
    /// Fixed episode length (the MAML paper's 2D navigation uses 100).
    public var horizon = 100
    public var reward = GoalReward.dense
    /// How close to the goal counts as being there: the sparse reward's radius, and where `terminateAtGoal` ends.
    public var successRadius = 0.2
    /// One more action that leaves the point where it is (the last action index).
    public var stayAction = false
    /// End the episode (terminated, not truncated) after the first move that ends within `successRadius`.
    public var terminateAtGoal = false
    /// Every move's direction turned counter-clockwise by this angle, hidden like the goal: at 180° each action
    /// moves the point the opposite way, so a policy that is right for one task is wrong for the other.
    public var controlRotationDegrees = 0.0

    public init(goalX: Double, goalY: Double, directions: Int = 8, stepSize: Double = 0.1, horizon: Int = 100,
                reward: GoalReward = .dense, successRadius: Double = 0.2, stayAction: Bool = false,
                terminateAtGoal: Bool = false, controlRotationDegrees: Double = 0) {
        self.goalX = goalX; self.goalY = goalY; self.directions = directions
        self.stepSize = stepSize; self.horizon = horizon
        self.reward = reward; self.successRadius = successRadius; self.stayAction = stayAction
        self.terminateAtGoal = terminateAtGoal; self.controlRotationDegrees = controlRotationDegrees
    }

    enum CodingKeys: String, CodingKey {
        case goalX, goalY, directions, stepSize, horizon, reward, successRadius, stayAction, terminateAtGoal
        case controlRotationDegrees
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GoalNavigationParameters(goalX: 0, goalY: 0)
        self.init(goalX: try c.decode(Double.self, forKey: .goalX), goalY: try c.decode(Double.self, forKey: .goalY),
                  directions: try c.decodeIfPresent(Int.self, forKey: .directions) ?? d.directions,
                  stepSize: try c.decodeIfPresent(Double.self, forKey: .stepSize) ?? d.stepSize,
                  horizon: try c.decodeIfPresent(Int.self, forKey: .horizon) ?? d.horizon,
                  reward: try c.decodeIfPresent(GoalReward.self, forKey: .reward) ?? d.reward,
                  successRadius: try c.decodeIfPresent(Double.self, forKey: .successRadius) ?? d.successRadius,
                  stayAction: try c.decodeIfPresent(Bool.self, forKey: .stayAction) ?? d.stayAction,
                  terminateAtGoal: try c.decodeIfPresent(Bool.self, forKey: .terminateAtGoal) ?? d.terminateAtGoal,
                  controlRotationDegrees: try c.decodeIfPresent(Double.self, forKey: .controlRotationDegrees)
                      ?? d.controlRotationDegrees)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(goalX, forKey: .goalX); try c.encode(goalY, forKey: .goalY)
        try c.encode(directions, forKey: .directions); try c.encode(stepSize, forKey: .stepSize)
        try c.encode(horizon, forKey: .horizon)
        try encodeSparseFields(GoalNavigationParameters(goalX: 0, goalY: 0), &c)
    }

    /// Writes the sparse-family fields that differ from `defaults` (shared with the family's encoding).
    func encodeSparseFields<K: CodingKey>(_ defaults: GoalNavigationParameters, _ c: inout KeyedEncodingContainer<K>) throws {
        if reward != defaults.reward { try c.encode(reward, forKey: K(stringValue: "reward")!) }
        if successRadius != defaults.successRadius { try c.encode(successRadius, forKey: K(stringValue: "successRadius")!) }
        if stayAction != defaults.stayAction { try c.encode(stayAction, forKey: K(stringValue: "stayAction")!) }
        if terminateAtGoal != defaults.terminateAtGoal { try c.encode(terminateAtGoal, forKey: K(stringValue: "terminateAtGoal")!) }
        if controlRotationDegrees != defaults.controlRotationDegrees {
            try c.encode(controlRotationDegrees, forKey: K(stringValue: "controlRotationDegrees")!)
        }
    }

    public func validate() throws {
        let t = "goal_navigation"
        try require(goalX.isFinite, t, "goal_x", goalX, "finite")
        try require(goalY.isFinite, t, "goal_y", goalY, "finite")
        try require(directions == 4 || directions == 8, t, "directions", Double(directions), "4 or 8")
        try require(stepSize > 0, t, "step_size", stepSize, "finite and > 0")
        try require(horizon > 0, t, "horizon", Double(horizon), "> 0")
        try require(successRadius.isFinite && successRadius > 0, t, "success_radius", successRadius, "finite and > 0")
        try require(controlRotationDegrees.isFinite, t, "control_rotation_degrees", controlRotationDegrees, "finite")
    }
}

/// The MAML paper's 2D point navigation with discrete moves, so DQN can act in it.
///
/// The point starts at the origin; each action moves it `stepSize` in one of 4 or 8 directions (or,
/// with `stayAction`, not at all); the reward is minus the Euclidean distance to the goal after the
/// move, or with `reward: sparse` 1 within `successRadius` of it and 0 elsewhere. The observation is
/// the position only: the goal is hidden and must be inferred from rewards, which is what makes the
/// family a meta-learning problem. With `controlRotationDegrees` the moves are turned by a hidden angle too
/// (the stay action stays put). Episodes are truncated at `horizon`, and end early only with
/// `terminateAtGoal`.
public struct GoalNavigation2D: Environment, Sendable {
    public let parameters: GoalNavigationParameters
    var x = 0.0, y = 0.0
    var clock: EpisodeClock
    let moves: [(Double, Double)]

    public init(_ parameters: GoalNavigationParameters) throws {
        try parameters.validate()
        self.parameters = parameters
        clock = EpisodeClock(limit: parameters.horizon)
        let h = parameters.stepSize, d = parameters.stepSize / 2.0.squareRoot()
        let axis = [(h, 0.0), (-h, 0.0), (0.0, h), (0.0, -h)]
        let unturned = parameters.directions == 4 ? axis : axis + [(d, d), (d, -d), (-d, d), (-d, -d)]
        moves = Self.turned(unturned, degrees: parameters.controlRotationDegrees) + (parameters.stayAction ? [(0.0, 0.0)] : [])
    }

    /// `moves` turned counter-clockwise by `degrees`; whole quarter turns are exact (180° negates each move), so the
    /// common cases carry no rounding of π into the positions.
    static func turned(_ moves: [(Double, Double)], degrees: Double) -> [(Double, Double)] {
        let turns = degrees / 90
        if turns == turns.rounded() {
            switch Int(turns.truncatingRemainder(dividingBy: 4) + 4) % 4 {
            case 1: return moves.map { (-$0.1, $0.0) }
            case 2: return moves.map { (-$0.0, -$0.1) }
            case 3: return moves.map { ($0.1, -$0.0) }
            default: return moves
            }
        }
        let (c, s) = (cos(degrees * .pi / 180), sin(degrees * .pi / 180))
        return moves.map { (c * $0.0 - s * $0.1, s * $0.0 + c * $0.1) }
    }

    public var observationSize: Int { 2 }
    public var actionCount: Int { moves.count }
    public var maxEpisodeSteps: Int { parameters.horizon }
    public var state: [Double] { [x, y] }

    public mutating func reset(using rng: inout SeededRNG) {
        x = 0; y = 0
        clock.elapsed = 0
    }

    public mutating func setState(_ s: [Double]) throws {
        guard s.count == 2 else { throw EnvironmentError.stateSize(task: "goal_navigation", expected: 2, got: s.count) }
        x = s[0]; y = s[1]
        clock.elapsed = 0
    }

    public mutating func step(_ action: Int) -> StepOutcome {
        let (dx, dy) = moves[action]
        x += dx; y += dy
        let ex = x - parameters.goalX, ey = y - parameters.goalY
        let distance = (ex * ex + ey * ey).squareRoot()
        let there = distance <= parameters.successRadius
        let reward = parameters.reward == .dense ? -distance : (there ? 1 : 0)
        let terminated = parameters.terminateAtGoal && there
        return StepOutcome(reward: reward, terminated: terminated, truncated: clock.tick())
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        buffer[0] = Float(x); buffer[1] = Float(y)
    }
}
