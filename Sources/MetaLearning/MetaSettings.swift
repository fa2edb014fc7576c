import DQN
import Environments
import NeuralNet

/// Which outer update the coordinator applies.
public enum MetaAlgorithm: String, Codable, Sendable, CaseIterable {
    /// Reptile: g = θ − mean φᵢ.
    case reptile
    /// First-order MAML: g = mean ∇L_query(φᵢ), with the TD query or the teacher query (`InnerLoopSettings.teacher`).
    case fomaml
    /// Second-order MAML: g = mean Π_j (I − αH_j) ∇L_query(φᵢ) through the SGD inner steps.
    case maml
    /// Policy distillation: each slot trains a task expert φᵢ from θ (as Reptile's); the coordinator then fits a
    /// student, starting from θ, to every expert's Q-values on states of its own task (`distill(student:experts:…)`),
    /// and g = θ − student.
    case distill
}

/// What MAML's query loss regresses onto (cluster.yaml `inner_loop.query`).
public enum QueryTarget: String, Sendable, CaseIterable {
    /// The adapted network's own TD targets on data it collected (`queryGradient`).
    case td
    /// A teacher's Q-values: the adapted network trained `teacher_steps` more (`teacherQueryGradient`).
    case teacher
}

/// MAML's teacher query (cluster.yaml `inner_loop.query: teacher`): how long the teacher trains, and what of its
/// Q-values the adapted network is regressed onto.
public struct TeacherQuery: Codable, Sendable, Equatable {
    /// Env steps the teacher trains on from the adapted φ (`teacher_steps`).
    public var steps: Int
    /// Q-values as they are, or advantages (each state's Q-vector less its mean over actions): `teacher_match`.
    public var match: TeacherMatch

    public init(steps: Int, match: TeacherMatch = .values) { self.steps = steps; self.match = match }
}

/// What of the teacher's Q-values the teacher query matches (`inner_loop.teacher_match`).
public enum TeacherMatch: String, Codable, Sendable, CaseIterable {
    /// Every action's Q-value.
    case values
    /// Every action's Q-value less the state's mean over actions: which action is how much better, whatever the
    /// level of the values (which differs between tasks of a sparse family far more than the ranking does).
    case advantages
}

/// How the outer step size changes over the run.
public enum StepSchedule: String, Codable, Sendable, CaseIterable {
    case constant
    /// β_t = β₀·(1 − t/T), as the Reptile paper and the reference peer anneal it.
    case linear
}

/// The inner loop of one slot: DQN settings and step budgets.
public struct InnerLoopSettings: Codable, Sendable, Equatable {
    public var dqn: DQNConfig
    /// Env steps of the support (adaptation) phase.
    public var budget: Int
    /// Env steps collected with φ for the query loss (FOMAML, MAML).
    public var querySteps: Int
    /// MAML's query loss: nil for the TD query (`queryGradient`), or the teacher query (`teacherQueryGradient`).
    /// Optional so configurations without it keep the hash they had before it existed.
    public var teacher: TeacherQuery?

    public init(dqn: DQNConfig = DQNConfig(), budget: Int = 2_000, querySteps: Int = 256, teacher: TeacherQuery? = nil) {
        self.dqn = dqn; self.budget = budget; self.querySteps = querySteps; self.teacher = teacher
    }

    public func validate() throws {
        try dqn.validate()
        guard budget > 0 else { throw DQNError.invalidBudget(budget) }
        guard querySteps > 0 else { throw DQNError.invalidBudget(querySteps) }
        if let teacher, teacher.steps <= 0 { throw DQNError.invalidBudget(teacher.steps) }
    }

    /// Env steps one FOMAML or MAML slot runs: support, teacher (if any) and query.
    public var queryPhaseSteps: Int { (teacher?.steps ?? 0) + querySteps }
}

/// The outer loop's settings.
public struct MetaSettings: Codable, Sendable, Equatable {
    public var algorithm: MetaAlgorithm = .reptile
    public var iterations = 10
    /// Slots (tasks) per meta-iteration.
    public var metaBatch = 4
    /// β₀: Reptile's interpolation step, or FOMAML's meta learning rate.
    public var outerStep: Float = 1.0
    public var schedule: StepSchedule = .linear
    /// The meta-optimiser applying g; Reptile with SGD and β = 1 moves θ to mean φ.
    public var optimizer: OptimizerKind = .sgd
    /// How the coordinator distils (`algorithm: distill`; nil otherwise, so other configurations keep the hash
    /// they had before distillation existed and their checkpoints still resume).
    public var distillation: DistillationSettings?

    public init() {}

    /// β at iteration t.
    public func outerStep(at iteration: Int) -> Float {
        switch schedule {
        case .constant: return outerStep
        case .linear: return outerStep * (1 - Float(iteration) / Float(max(iterations, 1)))
        }
    }
}
