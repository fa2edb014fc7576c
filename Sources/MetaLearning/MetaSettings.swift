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
    /// ES-MAML: each slot perturbs θ by ±σε (one antithetic pair, ε ~ N(0, I) from the slot's seed), adapts both
    /// with DQN on its task and scores each adaptation by its greedy returns along the way (the fitness F, the
    /// quantity the evaluation's steps-to-target rewards); g = mean −(F₊ − F₋)/(2σ)·ε, the evolution-strategies
    /// estimate of −∇F (`evolutionGradient`). No derivative passes through DQN's inner loop, so what the outer
    /// loop optimises is the return after adaptation itself (`InnerLoopSettings.evolution`).
    case esMAML = "es-maml"
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

/// ES-MAML's perturbation and fitness (cluster.yaml `meta.es`).
///
/// Kept with the inner loop's settings rather than the meta settings because every worker needs them to run a slot,
/// and the inner loop's settings are what an assignment carries.
public struct EvolutionSettings: Codable, Sendable, Equatable {
    /// σ: the standard deviation of the perturbation of each parameter.
    public var sigma: Float
    /// Env steps between greedy scorings of an adaptation: the fitness is the mean greedy return at steps
    /// 0, every, 2·every, … ≤ budget (the area under the adaptation curve that the evaluation scores).
    public var fitnessEvery: Int
    /// Greedy episodes per scoring point.
    public var fitnessEpisodes: Int
    /// The most greedy episodes per scoring point a configuration or an assignment may ask for.
    public static let maxFitnessEpisodes = 10_000

    public init(sigma: Float = 0.02, fitnessEvery: Int = 500, fitnessEpisodes: Int = 2) {
        self.sigma = sigma; self.fitnessEvery = fitnessEvery; self.fitnessEpisodes = fitnessEpisodes
    }

    public func validate() throws {
        guard sigma.isFinite && sigma > 0 else {
            throw DQNError.invalidConfig(field: "es.sigma", value: "\(sigma)", requirement: "finite and > 0")
        }
        guard fitnessEvery > 0 else {
            throw DQNError.invalidConfig(field: "es.fitness_every", value: "\(fitnessEvery)", requirement: "> 0")
        }
        guard fitnessEpisodes > 0 && fitnessEpisodes <= Self.maxFitnessEpisodes else {
            throw DQNError.invalidConfig(field: "es.fitness_episodes", value: "\(fitnessEpisodes)", requirement: "in 1...\(Self.maxFitnessEpisodes)")
        }
    }
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
    /// ES-MAML's perturbation and fitness (nil for every other algorithm, so their configurations keep their hash).
    public var evolution: EvolutionSettings?

    public init(dqn: DQNConfig = DQNConfig(), budget: Int = 2_000, querySteps: Int = 256, teacher: TeacherQuery? = nil,
                evolution: EvolutionSettings? = nil) {
        self.dqn = dqn; self.budget = budget; self.querySteps = querySteps; self.teacher = teacher
        self.evolution = evolution
    }

    public func validate() throws {
        try dqn.validate()
        guard budget > 0 else { throw DQNError.invalidBudget(budget) }
        guard querySteps > 0 else { throw DQNError.invalidBudget(querySteps) }
        if let teacher, teacher.steps <= 0 { throw DQNError.invalidBudget(teacher.steps) }
        try evolution?.validate()
    }

    /// Env steps one FOMAML or MAML slot runs: support, teacher (if any) and query.
    public var queryPhaseSteps: Int { (teacher?.steps ?? 0) + querySteps }

    /// Env steps of training one slot of `algorithm` runs (the multitask baseline is given as many in all).
    public func trainingStepsPerSlot(_ algorithm: MetaAlgorithm) -> Int {
        switch algorithm {
        case .reptile, .distill: return budget
        case .fomaml, .maml: return budget + queryPhaseSteps
        case .esMAML: return 2 * budget
        }
    }
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
    /// Pipelined meta-iterations (cluster.yaml `meta.pipeline: true`): iteration t's slots adapt θ_{t−1} instead of
    /// θ_t, so they can run while iteration t − 1's last slots finish and no worker waits at the barrier.
    ///
    /// The update stays the same function of the slots' updates — θ_{t+1} = opt(θ_t, g) with g from slots that
    /// started at θ_{t−1} (a gradient one version stale, as in asynchronous SGD with a fixed delay) — so a run is
    /// still the same bits for any number of workers. Iterations 0 and 1 both adapt θ_0. nil when off, so other
    /// configurations keep the hash they had before it existed.
    public var pipelined: Bool?
    public var isPipelined: Bool { pipelined == true }

    public init() {}

    /// The θ version the slots of `iteration` adapt: `iteration` itself, or one before it when pipelined.
    public func baseVersion(of iteration: Int) -> Int { Self.baseVersion(of: iteration, pipelined: isPipelined) }
    public static func baseVersion(of iteration: Int, pipelined: Bool) -> Int { pipelined ? max(iteration - 1, 0) : iteration }

    /// β at iteration t.
    public func outerStep(at iteration: Int) -> Float {
        switch schedule {
        case .constant: return outerStep
        case .linear: return outerStep * (1 - Float(iteration) / Float(max(iterations, 1)))
        }
    }
}
