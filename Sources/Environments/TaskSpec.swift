import NeuralNet

/// Everything that determines one task: the environment kind and its parameters.
///
/// A `TaskSpec` crosses the wire from coordinator to worker; the worker builds the environment from
/// it alone, so equal specs are equal tasks.
public enum TaskSpec: Codable, Sendable, Equatable {
    case cartPole(CartPoleParameters)
    case acrobot(AcrobotParameters)
    case mountainCar(MountainCarParameters)
    case goalNavigation(GoalNavigationParameters)
    case tabularMDP(TabularMDPParameters)
    /// A task of a gymnasium environment, run by the worker's environment server (`ExternalEnvironments`).
    case gymnasium(GymnasiumTask)

    /// Short name of the environment kind, as used in configuration ("cartpole", …).
    public var kindName: String {
        switch self {
        case .cartPole: return "cartpole"
        case .acrobot: return "acrobot"
        case .mountainCar: return "mountaincar"
        case .goalNavigation: return "goal_navigation"
        case .tabularMDP: return "tabular_mdp"
        case .gymnasium(let t): return t.swiftFamily == nil ? "gymnasium" : "swift"
        }
    }

    /// Throws a message naming the first invalid parameter.
    public func validate() throws {
        switch self {
        case .cartPole(let p): try p.validate()
        case .acrobot(let p): try p.validate()
        case .mountainCar(let p): try p.validate()
        case .goalNavigation(let p): try p.validate()
        case .tabularMDP(let p): try p.validate()
        case .gymnasium(let p): try p.validate()
        }
    }

    /// Builds the environment; throws for invalid parameters.
    public func makeEnvironment() throws -> any Environment {
        switch self {
        case .cartPole(let p): return try CartPole(p)
        case .acrobot(let p): return try Acrobot(p)
        case .mountainCar(let p): return try MountainCar(p)
        case .goalNavigation(let p): return try GoalNavigation2D(p)
        case .tabularMDP(let p): return try TabularMDP(p)
        case .gymnasium(let p): return try ExternalEnvironments.makeEnvironment(for: p)
        }
    }

    /// The default task of a kind (gymnasium's defaults; a goal at (0.3, 0.3); MDP seed 0).
    public static func defaultTask(kind: String) -> TaskSpec? {
        switch kind {
        case "cartpole": return .cartPole(CartPoleParameters())
        case "acrobot": return .acrobot(AcrobotParameters())
        case "mountaincar": return .mountainCar(MountainCarParameters())
        case "goal_navigation": return .goalNavigation(GoalNavigationParameters(goalX: 0.3, goalY: 0.3))
        case "tabular_mdp": return .tabularMDP(TabularMDPParameters())
        default: return nil
        }
    }

    public static let kindNames = ["cartpole", "acrobot", "mountaincar", "goal_navigation", "tabular_mdp"]
}
