import NeuralNet

/// Parameters of one 2D navigation task: where the (hidden) goal is and how the point moves.
public struct GoalNavigationParameters: Codable, Sendable, Equatable {
    public var goalX: Double
    public var goalY: Double
    /// 4 (axis moves) or 8 (axis and diagonal moves).
    public var directions = 8
    /// Distance travelled by one move.
    public var stepSize = 0.1
    /// Fixed episode length (the MAML paper's 2D navigation uses 100).
    public var horizon = 100

    public init(goalX: Double, goalY: Double, directions: Int = 8, stepSize: Double = 0.1, horizon: Int = 100) {
        self.goalX = goalX; self.goalY = goalY; self.directions = directions
        self.stepSize = stepSize; self.horizon = horizon
    }

    public func validate() throws {
        let t = "goal_navigation"
        try require(goalX.isFinite, t, "goal_x", goalX, "finite")
        try require(goalY.isFinite, t, "goal_y", goalY, "finite")
        try require(directions == 4 || directions == 8, t, "directions", Double(directions), "4 or 8")
        try require(stepSize > 0, t, "step_size", stepSize, "finite and > 0")
        try require(horizon > 0, t, "horizon", Double(horizon), "> 0")
    }
}

/// The MAML paper's 2D point navigation with discrete moves, so DQN can act in it.
///
/// The point starts at the origin; each action moves it `stepSize` in one of 4 or 8 directions;
/// the reward is minus the Euclidean distance to the goal after the move. The observation is the
/// position only: the goal is hidden and must be inferred from rewards, which is what makes the
/// family a meta-learning problem. Episodes never terminate; they are truncated at `horizon`.
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
        moves = parameters.directions == 4 ? axis : axis + [(d, d), (d, -d), (-d, d), (-d, -d)]
    }

    public var observationSize: Int { 2 }
    public var actionCount: Int { parameters.directions }
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
        return StepOutcome(reward: -(ex * ex + ey * ey).squareRoot(), terminated: false, truncated: clock.tick())
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        buffer[0] = Float(x); buffer[1] = Float(y)
    }
}
