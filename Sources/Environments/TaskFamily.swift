import Foundation
import NeuralNet

/// A closed interval a task parameter is drawn from uniformly; lower == upper fixes the value.
public struct ParameterRange: Codable, Sendable, Equatable {
    public var lower: Double
    public var upper: Double

    public init(_ lower: Double, _ upper: Double) { self.lower = lower; self.upper = upper }
    public static func fixed(_ value: Double) -> ParameterRange { ParameterRange(value, value) }

    func sample(_ rng: inout SeededRNG) -> Double {
        lower == upper ? lower : rng.nextDouble(in: lower, upper)
    }

    func check(_ task: String, _ name: String) throws {
        guard lower.isFinite, upper.isFinite else {
            throw EnvironmentError.invalidParameter(task: task, name: name, value: lower.isFinite ? upper : lower,
                                                    requirement: "finite")
        }
        guard lower <= upper else { throw EnvironmentError.invalidRange(task: task, name: name, lower: lower, upper: upper) }
    }
}

/// A distribution over tasks: which environment kind, and the ranges its parameters are drawn from.
///
/// `sample(using:)` draws a `TaskSpec`; `validate()` checks that every range is ordered and that
/// both ends of every range give a valid task, so a family that validates never samples an invalid
/// task (each parameter's valid set is an interval).
public enum TaskFamily: Codable, Sendable, Equatable {
    case cartPole(CartPoleRanges)
    case acrobot(AcrobotRanges)
    case mountainCar(MountainCarRanges)
    case goalNavigation(GoalNavigationRanges)
    case tabularMDP(TabularMDPRanges)
    /// Any gymnasium environment: an id or a user's entry point, with per-task `vary` distributions.
    case gymnasium(GymnasiumFamily)

    public struct CartPoleRanges: Codable, Sendable, Equatable {
        /// The reference peer's family (shared/reference/reptile_ray.py).
        public var gravity = ParameterRange(4.9, 19.6)
        public var massCart = ParameterRange.fixed(1.0)
        public var massPole = ParameterRange(0.05, 0.5)
        public var length = ParameterRange(0.25, 1.0)
        public var forceMagnitude = ParameterRange(5, 15)
        public init() {}
    }

    public struct AcrobotRanges: Codable, Sendable, Equatable {
        public var linkLength1 = ParameterRange(0.8, 1.3)
        public var linkMass1 = ParameterRange(0.5, 1.5)
        public var linkMass2 = ParameterRange(0.5, 1.5)
        public init() {}
    }

    public struct MountainCarRanges: Codable, Sendable, Equatable {
        public var force = ParameterRange(0.0008, 0.0015)
        public var gravity = ParameterRange(0.002, 0.003)
        public init() {}
    }

    /// Where a GoalNavigation2D family puts its goals.
    public enum GoalLayout: String, Codable, Sendable, CaseIterable {
        /// Uniform in the square [−goalRadius, goalRadius]² (the MAML paper's family).
        case square
        /// Uniform in angle on the arc of radius goalRadius from `arcDegrees.lower` to `.upper`
        /// (PEARL's sparse point robot: a half circle of radius 1): the mean goal is no goal.
        case arc
        /// One of the four corners (±goalRadius, ±goalRadius), each with probability ¼: averaging the tasks
        /// points nowhere useful.
        case corners
    }

    public struct GoalNavigationRanges: Codable, Sendable, Equatable {
        /// The size of the goal set: the square's half-side, the arc's radius, or the corners' offset (MAML: 0.5).
        public var goalRadius = 0.5
        public var directions = 8
        public var stepSize = 0.1
        public var horizon = 100
        public var layout = GoalLayout.square
        /// The arc's angles in degrees, counter-clockwise from +x (used with `layout: arc`).
        public var arcDegrees = ParameterRange(0, 180)
        /// Reward, success radius, stay action and termination of every task (see `GoalNavigationParameters`).
        public var reward = GoalReward.dense
        public var successRadius = 0.2
        public var stayAction = false
        public var terminateAtGoal = false
        /// The control rotations (degrees) a task draws one of, uniformly (`controlRotationDegrees`): [0, 180] reverses
        /// the controls of half the tasks, a family whose mean policy goes nowhere and in which a pre-trained policy
        /// is wrong for half the tasks. [0] (the default): no rotation, and nothing drawn.
        public var controlRotations: [Double] = [0]
        public init() {}

        enum CodingKeys: String, CodingKey {
            case goalRadius, directions, stepSize, horizon, layout, arcDegrees, reward, successRadius, stayAction, terminateAtGoal
            case controlRotations
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            goalRadius = try c.decodeIfPresent(Double.self, forKey: .goalRadius) ?? goalRadius
            directions = try c.decodeIfPresent(Int.self, forKey: .directions) ?? directions
            stepSize = try c.decodeIfPresent(Double.self, forKey: .stepSize) ?? stepSize
            horizon = try c.decodeIfPresent(Int.self, forKey: .horizon) ?? horizon
            layout = try c.decodeIfPresent(GoalLayout.self, forKey: .layout) ?? layout
            arcDegrees = try c.decodeIfPresent(ParameterRange.self, forKey: .arcDegrees) ?? arcDegrees
            reward = try c.decodeIfPresent(GoalReward.self, forKey: .reward) ?? reward
            successRadius = try c.decodeIfPresent(Double.self, forKey: .successRadius) ?? successRadius
            stayAction = try c.decodeIfPresent(Bool.self, forKey: .stayAction) ?? stayAction
            terminateAtGoal = try c.decodeIfPresent(Bool.self, forKey: .terminateAtGoal) ?? terminateAtGoal
            controlRotations = try c.decodeIfPresent([Double].self, forKey: .controlRotations) ?? controlRotations
        }

        /// The four original fields always, the later ones only when they differ from their defaults, so the
        /// configuration hash of a family written before they existed is unchanged.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(goalRadius, forKey: .goalRadius); try c.encode(directions, forKey: .directions)
            try c.encode(stepSize, forKey: .stepSize); try c.encode(horizon, forKey: .horizon)
            let d = GoalNavigationRanges()
            if layout != d.layout { try c.encode(layout, forKey: .layout) }
            if layout == .arc { try c.encode(arcDegrees, forKey: .arcDegrees) }
            try task(goalX: 0, goalY: 0).encodeSparseFields(GoalNavigationParameters(goalX: 0, goalY: 0), &c)
            if controlRotations != d.controlRotations { try c.encode(controlRotations, forKey: .controlRotations) }
        }

        /// A task of this family with its goal at (goalX, goalY) and its controls turned by `rotation` degrees.
        func task(goalX: Double, goalY: Double, rotation: Double = 0) -> GoalNavigationParameters {
            GoalNavigationParameters(goalX: goalX, goalY: goalY, directions: directions, stepSize: stepSize, horizon: horizon,
                                     reward: reward, successRadius: successRadius, stayAction: stayAction,
                                     terminateAtGoal: terminateAtGoal, controlRotationDegrees: rotation)
        }

        /// The control rotation drawn with `value`, after the goal; a family of one rotation draws nothing, so its
        /// task stream is the one it had before rotations existed.
        func rotation(_ value: (ParameterRange) -> Double) -> Double {
            guard controlRotations.count > 1 else { return controlRotations.first ?? 0 }
            return controlRotations[TaskFamily.index(below: controlRotations.count, value)]
        }

        /// The goal drawn with `value` (uniform in a range, or one of its ends for validation).
        func goal(_ value: (ParameterRange) -> Double) -> (Double, Double) {
            switch layout {
            case .square:
                let square = ParameterRange(-goalRadius, goalRadius)
                return (value(square), value(square))
            case .arc:
                let angle = value(arcDegrees) * Double.pi / 180
                return (goalRadius * cos(angle), goalRadius * sin(angle))
            case .corners:
                let corner = min(Int(value(ParameterRange(0, 4))), 3)
                return (corner % 2 == 0 ? goalRadius : -goalRadius, corner < 2 ? goalRadius : -goalRadius)
            }
        }
    }

    public struct TabularMDPRanges: Codable, Sendable, Equatable {
        public var states = 10
        public var actions = 5
        public var horizon = 10
        /// nil: every task draws its own transitions (tasks share only a prior). Otherwise each task's
        /// transitions are one of `count` tables fixed by `seed`, and its rewards are its own.
        public var sharedDynamics: SharedDynamics?
        public init() {}
    }

    /// How many transition tables a tabular family's tasks share, and the seed that fixes them.
    public struct SharedDynamics: Codable, Sendable, Equatable {
        public var count: Int
        public var seed: UInt64
        public init(count: Int, seed: UInt64) { self.count = count; self.seed = seed }

        /// The dynamics seed of table `index`.
        public func tableSeed(_ index: Int) -> UInt64 { deriveSeed(seed, iteration: UInt64(index), slot: 0, purpose: .taskSample) }
    }

    /// The family's environment kind ("cartpole", …).
    public var kindName: String {
        switch self {
        case .cartPole: return "cartpole"
        case .acrobot: return "acrobot"
        case .mountainCar: return "mountaincar"
        case .goalNavigation: return "goal_navigation"
        case .tabularMDP: return "tabular_mdp"
        case .gymnasium(let f): return f.isSwift ? "swift" : "gymnasium"
        }
    }

    /// Whether the family's tasks run in Python environment servers (a gymnasium family, not a Swift one).
    public var usesEnvironmentServers: Bool {
        if case .gymnasium(let family) = self { return !family.isSwift }
        return false
    }

    /// Draws one task. Throws only if the family is invalid (see `validate()`).
    public func sample(using rng: inout SeededRNG) throws -> TaskSpec {
        if case .gymnasium(let family) = self {
            let task = family.draw(&rng)
            try task.validate()
            return .gymnasium(task)
        }
        let spec = draw { range in range.sample(&rng) } seed: { rng.next() }
        try spec.validate()
        return spec
    }

    /// Throws a message naming the first bad range or parameter.
    public func validate() throws {
        let task = kindName
        if case .gymnasium(let family) = self { return try family.validate() }
        switch self {
        case .cartPole(let r):
            for (name, range) in [("gravity", r.gravity), ("masscart", r.massCart), ("masspole", r.massPole),
                                  ("length", r.length), ("force_mag", r.forceMagnitude)] { try range.check(task, name) }
        case .acrobot(let r):
            for (name, range) in [("link_length_1", r.linkLength1), ("link_mass_1", r.linkMass1),
                                  ("link_mass_2", r.linkMass2)] { try range.check(task, name) }
        case .mountainCar(let r):
            for (name, range) in [("force", r.force), ("gravity", r.gravity)] { try range.check(task, name) }
        case .goalNavigation(let r):
            try ParameterRange(-r.goalRadius, r.goalRadius).check(task, "goal_radius")
            try r.arcDegrees.check(task, "arc_degrees")
            guard !r.controlRotations.isEmpty, r.controlRotations.count <= 360 else {
                throw EnvironmentError.invalidParameter(task: task, name: "control_rotations", value: Double(r.controlRotations.count),
                                                        requirement: "1 to 360 angles")
            }
            for angle in r.controlRotations {
                try GoalNavigationParameters(goalX: 0, goalY: 0, controlRotationDegrees: angle).validate()
            }
        case .tabularMDP(let r):
            if let d = r.sharedDynamics, !(1...1_000_000).contains(d.count) {
                throw EnvironmentError.invalidParameter(task: task, name: "shared_dynamics", value: Double(d.count), requirement: "in 1...1000000")
            }
        case .gymnasium: break
        }
        try draw { $0.lower } seed: { 0 }.validate()
        try draw { $0.upper } seed: { 0 }.validate()
    }

    /// Where a task lies in the family: each ranged parameter scaled to [0, 1] (fixed ones left out).
    ///
    /// Lets evaluation ask how close two tasks really are, e.g. whether nearest-task retrieval found
    /// a similar one. Empty for tabular MDPs (their tasks differ by a seed, not by a parameter) and for
    /// a task of another kind.
    public func coordinates(of task: TaskSpec) -> [Double] {
        func scaled(_ pairs: [(ParameterRange, Double)]) -> [Double] {
            pairs.filter { $0.0.lower < $0.0.upper }.map { ($0.1 - $0.0.lower) / ($0.0.upper - $0.0.lower) }
        }
        switch (self, task) {
        case let (.cartPole(r), .cartPole(p)):
            return scaled([(r.gravity, p.gravity), (r.massCart, p.massCart), (r.massPole, p.massPole),
                           (r.length, p.length), (r.forceMagnitude, p.forceMagnitude)])
        case let (.acrobot(r), .acrobot(p)):
            return scaled([(r.linkLength1, p.linkLength1), (r.linkMass1, p.linkMass1), (r.linkMass2, p.linkMass2)])
        case let (.mountainCar(r), .mountainCar(p)):
            return scaled([(r.force, p.force), (r.gravity, p.gravity)])
        case let (.goalNavigation(r), .goalNavigation(p)):
            // The goal's position in the square that holds every layout's goals: nearby goals, nearby coordinates; and
            // which of the family's control rotations the task has (tasks that differ in it are far apart).
            let square = ParameterRange(-r.goalRadius, r.goalRadius)
            let rotations = r.controlRotations.count
            let rotation = Double(r.controlRotations.firstIndex(of: p.controlRotationDegrees) ?? 0)
            return scaled([(square, p.goalX), (square, p.goalY)])
                + (rotations > 1 ? [rotation / Double(rotations - 1)] : [])
        case let (.gymnasium(r), .gymnasium(p)):
            return r.coordinates(of: p)
        default:
            return []
        }
    }

    /// One of `count` choices, drawn with `value` uniformly over [0, count) (the top end, which a range's upper bound
    /// can give, is the last choice).
    static func index(below count: Int, _ value: (ParameterRange) -> Double) -> Int {
        min(Int(value(ParameterRange(0, Double(count)))), count - 1)
    }

    /// Builds a spec choosing each ranged value with `value`.
    private func draw(_ value: (ParameterRange) -> Double, seed: () -> UInt64) -> TaskSpec {
        switch self {
        case .cartPole(let r):
            return .cartPole(CartPoleParameters(gravity: value(r.gravity), massCart: value(r.massCart),
                                                massPole: value(r.massPole), length: value(r.length),
                                                forceMagnitude: value(r.forceMagnitude)))
        case .acrobot(let r):
            let length = value(r.linkLength1)
            // The centre of mass stays mid-link, as the fixtures' generator sets it.
            return .acrobot(AcrobotParameters(linkLength1: length, linkMass1: value(r.linkMass1),
                                              linkMass2: value(r.linkMass2), linkCenterOfMass1: length / 2))
        case .mountainCar(let r):
            return .mountainCar(MountainCarParameters(force: value(r.force), gravity: value(r.gravity)))
        case .goalNavigation(let r):
            let (x, y) = r.goal(value)
            return .goalNavigation(r.task(goalX: x, goalY: y, rotation: r.rotation(value)))
        case .gymnasium(let family):
            var rng = SeededRNG(seed: seed())
            return .gymnasium(family.draw(&rng))
        case .tabularMDP(let r):
            let dynamics = r.sharedDynamics.map { d in d.tableSeed(Self.index(below: d.count, value)) }
            return .tabularMDP(TabularMDPParameters(states: r.states, actions: r.actions, horizon: r.horizon,
                                                    seed: seed(), dynamicsSeed: dynamics))
        }
    }
}
