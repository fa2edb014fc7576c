import CProtobufC
import DQN
import Environments
import MetaLearning
import MetaTrainProto
import NeuralNet

// Training slots: the assignment (task, inner loop, θ) and the result (update, statistics). Each message's
// encoder and decoder stand side by side, so a change to its .proto fields touches this file only.

extension WireCodec {
    static func encodeAssignment(_ a: Assignment, _ arena: Arena, omitTensor: Bool = false) -> UnsafeMutablePointer<Metatrain__V1__Assignment> {
        let m: UnsafeMutablePointer<Metatrain__V1__Assignment> = arena.message { metatrain__v1__assignment__init($0) }
        m.pointee.run_id = arena.string(a.runID)
        m.pointee.iteration = UInt64(a.key.iteration)
        m.pointee.slot = UInt32(a.key.slot)
        m.pointee.attempt = UInt32(a.key.attempt)
        m.pointee.task = encodeTask(a.task, arena)
        m.pointee.inner_loop = encodeInnerLoop(a.innerLoop, arena)
        m.pointee.algorithm = encodeAlgorithm(a.algorithm)
        m.pointee.seed = a.seed
        m.pointee.parameter_version = UInt64(a.parameterVersion)
        if let p = a.parameters, !omitTensor { m.pointee.parameters = encodeTensor(p.values, arena) }
        return m
    }

    static func encodeResult(_ r: SlotResult, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__Result> {
        let m: UnsafeMutablePointer<Metatrain__V1__Result> = arena.message { metatrain__v1__result__init($0) }
        m.pointee.run_id = arena.string(r.runID)
        m.pointee.iteration = UInt64(r.key.iteration)
        m.pointee.slot = UInt32(r.key.slot)
        m.pointee.attempt = UInt32(r.key.attempt)
        m.pointee.parameter_version = UInt64(r.parameterVersion)
        m.pointee.update = encodeTensor(r.update.values, arena)
        let s: UnsafeMutablePointer<Metatrain__V1__Statistics> = arena.message { metatrain__v1__statistics__init($0) }
        let st = r.statistics
        s.pointee.mean_return = st.meanReturn
        s.pointee.episodes = UInt32(clamping: st.episodes)
        s.pointee.mean_loss = st.meanLoss
        s.pointee.env_steps = UInt64(max(st.environmentSteps, 0))
        s.pointee.gradient_updates = UInt64(max(st.gradientUpdates, 0))
        s.pointee.seconds = st.seconds
        s.pointee.query_loss = st.queryLoss
        m.pointee.statistics = s
        return m
    }

    static func encodeInnerLoop(_ s: InnerLoopSettings, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__InnerLoopConfig> {
        let m: UnsafeMutablePointer<Metatrain__V1__InnerLoopConfig> = arena.message { metatrain__v1__inner_loop_config__init($0) }
        let c = s.dqn
        m.pointee.n_hidden_layers = c.hiddenLayers.count
        m.pointee.hidden_layers = arena.array(c.hiddenLayers.map { UInt32(clamping: $0) })
        m.pointee.optimizer = encodeOptimizer(c.optimizer)
        m.pointee.learning_rate = c.learningRate
        m.pointee.adam_epsilon = c.adamEpsilon
        m.pointee.buffer_capacity = UInt32(clamping: c.bufferCapacity)
        m.pointee.batch_size = UInt32(clamping: c.batchSize)
        m.pointee.gamma = c.gamma
        m.pointee.learning_starts = UInt32(clamping: c.learningStarts)
        m.pointee.train_frequency = UInt32(clamping: c.trainFrequency)
        m.pointee.target_update_interval = UInt32(clamping: c.targetUpdateInterval)
        m.pointee.target_update_tau = c.targetUpdateTau
        m.pointee.start_epsilon = c.startEpsilon
        m.pointee.end_epsilon = c.endEpsilon
        m.pointee.exploration_fraction = c.explorationFraction
        m.pointee.double_dqn = c.doubleDQN ? 1 : 0
        m.pointee.loss = c.loss == .huber ? METATRAIN__V1__LOSS__LOSS_HUBER : METATRAIN__V1__LOSS__LOSS_MSE
        m.pointee.max_gradient_norm = c.maxGradientNorm ?? 0
        m.pointee.budget = UInt32(clamping: s.budget)
        m.pointee.query_steps = UInt32(clamping: s.querySteps)
        m.pointee.context_window = UInt32(clamping: c.contextWindow ?? 0)
        m.pointee.ez_max_repeat = UInt32(clamping: c.ezMaxRepeat ?? 0)
        m.pointee.teacher_steps = UInt32(clamping: s.teacher?.steps ?? 0)
        m.pointee.teacher_advantages = s.teacher?.match == .advantages ? 1 : 0
        m.pointee.es_sigma = s.evolution?.sigma ?? 0
        m.pointee.es_fitness_every = UInt32(clamping: s.evolution?.fitnessEvery ?? 0)
        m.pointee.es_fitness_episodes = UInt32(clamping: s.evolution?.fitnessEpisodes ?? 0)
        return m
    }

    static func encodeTask(_ task: TaskSpec, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__TaskSpec> {
        let t: UnsafeMutablePointer<Metatrain__V1__TaskSpec> = arena.message { metatrain__v1__task_spec__init($0) }
        switch task {
        case .cartPole(let p):
            let m: UnsafeMutablePointer<Metatrain__V1__CartPoleTask> = arena.message { metatrain__v1__cart_pole_task__init($0) }
            m.pointee.gravity = p.gravity; m.pointee.masscart = p.massCart; m.pointee.masspole = p.massPole
            m.pointee.length = p.length; m.pointee.force_mag = p.forceMagnitude
            m.pointee.max_episode_steps = UInt32(clamping: p.maxEpisodeSteps)
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_CARTPOLE
            t.pointee.cartpole = m
        case .acrobot(let p):
            let m: UnsafeMutablePointer<Metatrain__V1__AcrobotTask> = arena.message { metatrain__v1__acrobot_task__init($0) }
            m.pointee.link_length_1 = p.linkLength1; m.pointee.link_mass_1 = p.linkMass1; m.pointee.link_mass_2 = p.linkMass2
            m.pointee.link_com_pos_1 = p.linkCenterOfMass1; m.pointee.link_com_pos_2 = p.linkCenterOfMass2
            m.pointee.link_moi = p.linkMomentOfInertia
            m.pointee.max_episode_steps = UInt32(clamping: p.maxEpisodeSteps)
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_ACROBOT
            t.pointee.acrobot = m
        case .mountainCar(let p):
            let m: UnsafeMutablePointer<Metatrain__V1__MountainCarTask> = arena.message { metatrain__v1__mountain_car_task__init($0) }
            m.pointee.force = p.force; m.pointee.gravity = p.gravity
            m.pointee.max_episode_steps = UInt32(clamping: p.maxEpisodeSteps)
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_MOUNTAIN_CAR
            t.pointee.mountain_car = m
        case .goalNavigation(let p):
            let m: UnsafeMutablePointer<Metatrain__V1__GoalNavigationTask> = arena.message { metatrain__v1__goal_navigation_task__init($0) }
            m.pointee.goal_x = p.goalX; m.pointee.goal_y = p.goalY; m.pointee.directions = UInt32(clamping: p.directions)
            m.pointee.step_size = p.stepSize; m.pointee.horizon = UInt32(clamping: p.horizon)
            m.pointee.sparse_reward = p.reward == .sparse ? 1 : 0; m.pointee.success_radius = p.successRadius
            m.pointee.stay_action = p.stayAction ? 1 : 0; m.pointee.terminate_at_goal = p.terminateAtGoal ? 1 : 0
            m.pointee.control_rotation_degrees = p.controlRotationDegrees
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_GOAL_NAVIGATION
            t.pointee.goal_navigation = m
        case .tabularMDP(let p):
            let m: UnsafeMutablePointer<Metatrain__V1__TabularMDPTask> = arena.message { metatrain__v1__tabular_mdptask__init($0) }
            m.pointee.states = UInt32(clamping: p.states); m.pointee.actions = UInt32(clamping: p.actions)
            m.pointee.horizon = UInt32(clamping: p.horizon); m.pointee.seed = p.seed
            m.pointee.has_dynamics_seed = p.dynamicsSeed == nil ? 0 : 1; m.pointee.dynamics_seed = p.dynamicsSeed ?? 0
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_TABULAR_MDP
            t.pointee.tabular_mdp = m
        case .gymnasium(let p):
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_GYMNASIUM
            t.pointee.gymnasium = encodeGymnasium(p, arena)
        }
        return t
    }

    static func encodeGymnasium(_ p: GymnasiumTask, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__GymnasiumTask> {
        let m: UnsafeMutablePointer<Metatrain__V1__GymnasiumTask> = arena.message { metatrain__v1__gymnasium_task__init($0) }
        if let id = p.environmentID { m.pointee.id = arena.string(id) }
        if let entry = p.entryPoint { m.pointee.entry_point = arena.string(entry) }
        let entries = p.kwargs.map { ($0.key, $0.value, false) } + p.attributes.map { ($0.key, $0.value, true) }
        let parameters = entries.sorted { ($0.2 ? 1 : 0, $0.0) < ($1.2 ? 1 : 0, $1.0) }.map { name, value, attribute in
            let q: UnsafeMutablePointer<Metatrain__V1__GymnasiumParameter> = arena.message { metatrain__v1__gymnasium_parameter__init($0) }
            q.pointee.name = arena.string(name)
            q.pointee.attribute = attribute ? 1 : 0
            switch value {
            case .bool(let b): q.pointee.value_case = METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_BOOL_VALUE; q.pointee.bool_value = b ? 1 : 0
            case .int(let i): q.pointee.value_case = METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_INT_VALUE; q.pointee.int_value = i
            case .double(let d): q.pointee.value_case = METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_DOUBLE_VALUE; q.pointee.double_value = d
            case .string(let s): q.pointee.value_case = METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_STRING_VALUE; q.pointee.string_value = arena.string(s)
            }
            return Optional(q)
        }
        m.pointee.n_parameters = parameters.count
        m.pointee.parameters = arena.array(parameters)
        m.pointee.seed = p.seed
        m.pointee.max_episode_steps = UInt32(clamping: p.maxEpisodeSteps ?? 0)
        return m
    }
}

extension WireCodec.Decoder {
    /// An assignment; `shared`, when given, is its θ decoded from the frame it travelled in (`decode(head:field:)`).
    func assignment(_ m: Metatrain__V1__Assignment, shared: ParameterVector? = nil) throws(WireError) -> Assignment {
        var parameters = shared
        if parameters == nil, m.parameters != nil { parameters = try tensor(m.parameters, "assignment.parameters") }
        let settings = try innerLoop(m.inner_loop), algorithm = try algorithm(m.algorithm, "assignment.algorithm")
        // An ES-MAML slot cannot run without its perturbation settings, and no other algorithm reads them.
        guard (algorithm == .esMAML) == (settings.evolution != nil) else {
            throw .invalidField("assignment.inner_loop.es_sigma", reason: algorithm == .esMAML
                                ? "is missing: an es-maml slot needs es_sigma, es_fitness_every and es_fitness_episodes"
                                : "is set, but the algorithm is \(algorithm.rawValue), not es-maml")
        }
        return Assignment(
            runID: try identifier(m.run_id, "assignment.run_id"),
            key: try key(iteration: m.iteration, slot: m.slot, attempt: m.attempt, "assignment"),
            task: try task(m.task), innerLoop: settings,
            algorithm: algorithm, seed: m.seed,
            parameterVersion: try version(m.parameter_version, "assignment.parameter_version"),
            parameters: parameters)
    }


    /// A result; `shared`, when given, is its update decoded from the received bytes (`decodeResultInPlace`).
    func result(_ m: Metatrain__V1__Result, shared: ParameterVector? = nil) throws(WireError) -> SlotResult {
        guard let s = m.statistics?.pointee else { throw .missingField("result.statistics") }
        let update: ParameterVector
        if let shared { update = shared } else { update = try tensor(m.update, "result.update") }
        let statistics = SlotStatistics(
            meanReturn: try finite(s.mean_return, "result.statistics.mean_return"), episodes: Int(s.episodes),
            meanLoss: try finite(s.mean_loss, "result.statistics.mean_loss"),
            environmentSteps: Int(clamping: s.env_steps), gradientUpdates: Int(clamping: s.gradient_updates),
            seconds: try finite(s.seconds, "result.statistics.seconds"),
            queryLoss: try finite(s.query_loss, "result.statistics.query_loss"))
        return SlotResult(
            runID: try identifier(m.run_id, "result.run_id"),
            key: try key(iteration: m.iteration, slot: m.slot, attempt: m.attempt, "result"),
            parameterVersion: try version(m.parameter_version, "result.parameter_version"),
            update: update, statistics: statistics)
    }

    func task(_ p: UnsafeMutablePointer<Metatrain__V1__TaskSpec>?) throws(WireError) -> TaskSpec {
        guard let t = p?.pointee else { throw .missingField("assignment.task") }
        let spec: TaskSpec
        switch t.kind_case {
        case METATRAIN__V1__TASK_SPEC__KIND_CARTPOLE:
            let m = t.cartpole.pointee
            spec = .cartPole(CartPoleParameters(gravity: m.gravity, massCart: m.masscart, massPole: m.masspole,
                                                length: m.length, forceMagnitude: m.force_mag,
                                                maxEpisodeSteps: Int(m.max_episode_steps)))
        case METATRAIN__V1__TASK_SPEC__KIND_ACROBOT:
            let m = t.acrobot.pointee
            spec = .acrobot(AcrobotParameters(linkLength1: m.link_length_1, linkMass1: m.link_mass_1,
                                              linkMass2: m.link_mass_2, linkCenterOfMass1: m.link_com_pos_1,
                                              linkCenterOfMass2: m.link_com_pos_2, linkMomentOfInertia: m.link_moi,
                                              maxEpisodeSteps: Int(m.max_episode_steps)))
        case METATRAIN__V1__TASK_SPEC__KIND_MOUNTAIN_CAR:
            let m = t.mountain_car.pointee
            spec = .mountainCar(MountainCarParameters(force: m.force, gravity: m.gravity,
                                                      maxEpisodeSteps: Int(m.max_episode_steps)))
        case METATRAIN__V1__TASK_SPEC__KIND_GOAL_NAVIGATION:
            let m = t.goal_navigation.pointee
            spec = .goalNavigation(GoalNavigationParameters(goalX: m.goal_x, goalY: m.goal_y,
                                                            directions: Int(m.directions), stepSize: m.step_size,
                                                            horizon: Int(m.horizon), reward: m.sparse_reward != 0 ? .sparse : .dense,
                                                            successRadius: m.success_radius, stayAction: m.stay_action != 0,
                                                            terminateAtGoal: m.terminate_at_goal != 0,
                                                            controlRotationDegrees: m.control_rotation_degrees))
        case METATRAIN__V1__TASK_SPEC__KIND_TABULAR_MDP:
            let m = t.tabular_mdp.pointee
            spec = .tabularMDP(TabularMDPParameters(states: Int(m.states), actions: Int(m.actions),
                                                    horizon: Int(m.horizon), seed: m.seed,
                                                    dynamicsSeed: m.has_dynamics_seed != 0 ? m.dynamics_seed : nil))
        case METATRAIN__V1__TASK_SPEC__KIND_GYMNASIUM:
            spec = .gymnasium(try gymnasium(t.gymnasium.pointee))
        default:
            throw .missingField("assignment.task.kind")
        }
        do { try spec.validate() } catch { throw .invalidField("assignment.task", reason: "\(error)") }
        return spec
    }


    /// A gymnasium task, its counts and texts bounded before anything is built from them.
    func gymnasium(_ m: Metatrain__V1__GymnasiumTask) throws(WireError) -> GymnasiumTask {
        let field = "assignment.task.gymnasium"
        guard m.n_parameters <= GymnasiumTask.maxValues else {
            throw .tooLarge("\(field).parameters", size: m.n_parameters, limit: GymnasiumTask.maxValues)
        }
        let limit = GymnasiumTask.maxTextBytes
        let id = try string(m.id, "\(field).id", limit: limit), entry = try string(m.entry_point, "\(field).entry_point", limit: limit)
        var task = GymnasiumTask(environmentID: id.isEmpty ? nil : id, entryPoint: entry.isEmpty ? nil : entry, seed: m.seed,
                                 maxEpisodeSteps: m.max_episode_steps == 0 ? nil : Int(m.max_episode_steps))
        for i in 0..<m.n_parameters {
            guard let q = m.parameters[i]?.pointee else { throw .missingField("\(field).parameters") }
            let name = try string(q.name, "\(field).parameters.name", limit: limit)
            let value: GymValue
            switch q.value_case {
            case METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_BOOL_VALUE: value = .bool(q.bool_value != 0)
            case METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_INT_VALUE: value = .int(q.int_value)
            case METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_DOUBLE_VALUE: value = .double(try finite(q.double_value, "\(field).parameters.\(name)"))
            case METATRAIN__V1__GYMNASIUM_PARAMETER__VALUE_STRING_VALUE:
                value = .string(try string(q.string_value, "\(field).parameters.\(name)", limit: limit))
            default: throw .missingField("\(field).parameters.\(name).value")
            }
            let known = q.attribute != 0 ? task.attributes.updateValue(value, forKey: name) : task.kwargs.updateValue(value, forKey: name)
            guard known == nil else { throw .invalidField("\(field).parameters", reason: "'\(name)' is given twice") }
        }
        return task
    }

    /// An assignment's inner loop; an eval job (`forEval`) has no query phase, so its query_steps may be 0.
    func innerLoop(_ p: UnsafeMutablePointer<Metatrain__V1__InnerLoopConfig>?, forEval: Bool = false) throws(WireError) -> InnerLoopSettings {
        guard let m = p?.pointee else { throw .missingField("assignment.inner_loop") }
        guard m.n_hidden_layers >= 1 && m.n_hidden_layers <= limits.maxHiddenLayers else {
            throw .invalidField("inner_loop.hidden_layers", reason: "needs 1...\(limits.maxHiddenLayers) layers, got \(m.n_hidden_layers)")
        }
        var c = DQNConfig()
        c.hiddenLayers = (0..<m.n_hidden_layers).map { Int(m.hidden_layers[$0]) }
        switch m.optimizer {
        case METATRAIN__V1__OPTIMIZER__OPTIMIZER_SGD: c.optimizer = .sgd
        case METATRAIN__V1__OPTIMIZER__OPTIMIZER_ADAM: c.optimizer = .adam
        default: throw .unknownEnum("inner_loop.optimizer", value: Int64(m.optimizer.rawValue))
        }
        switch m.loss {
        case METATRAIN__V1__LOSS__LOSS_HUBER: c.loss = .huber
        case METATRAIN__V1__LOSS__LOSS_MSE: c.loss = .mse
        default: throw .unknownEnum("inner_loop.loss", value: Int64(m.loss.rawValue))
        }
        c.learningRate = m.learning_rate; c.adamEpsilon = m.adam_epsilon
        c.bufferCapacity = Int(m.buffer_capacity); c.batchSize = Int(m.batch_size); c.gamma = m.gamma
        c.learningStarts = Int(m.learning_starts); c.trainFrequency = Int(m.train_frequency)
        c.targetUpdateInterval = Int(m.target_update_interval); c.targetUpdateTau = m.target_update_tau
        c.startEpsilon = m.start_epsilon; c.endEpsilon = m.end_epsilon; c.explorationFraction = m.exploration_fraction
        c.doubleDQN = m.double_dqn != 0
        c.maxGradientNorm = m.max_gradient_norm == 0 ? nil : m.max_gradient_norm
        c.contextWindow = m.context_window == 0 ? nil : Int(m.context_window)
        c.ezMaxRepeat = m.ez_max_repeat == 0 ? nil : Int(m.ez_max_repeat)
        var settings = InnerLoopSettings(dqn: c, budget: Int(m.budget), querySteps: Int(m.query_steps),
                                         teacher: m.teacher_steps == 0 ? nil : TeacherQuery(steps: Int(m.teacher_steps),
                                                                                            match: m.teacher_advantages != 0 ? .advantages : .values))
        guard m.teacher_steps != 0 || m.teacher_advantages == 0 else {
            throw .invalidField("inner_loop.teacher_advantages", reason: "is set without teacher_steps")
        }
        // ES-MAML's fields come together or not at all; their values are checked with the rest below.
        let esFieldsSet = [m.es_sigma != 0, m.es_fitness_every != 0, m.es_fitness_episodes != 0].filter { $0 }.count
        guard esFieldsSet == 0 || esFieldsSet == 3 else {
            throw .invalidField("inner_loop.es_sigma", reason: "es_sigma, es_fitness_every and es_fitness_episodes must be set together")
        }
        if esFieldsSet == 3 {
            // Bounded here as well as by `validate`, which eval jobs (forEval) skip.
            guard m.es_fitness_episodes <= EvolutionSettings.maxFitnessEpisodes else {
                throw .tooLarge("inner_loop.es_fitness_episodes", size: Int(m.es_fitness_episodes), limit: EvolutionSettings.maxFitnessEpisodes)
            }
            settings.evolution = EvolutionSettings(sigma: m.es_sigma, fitnessEvery: Int(m.es_fitness_every),
                                                   fitnessEpisodes: Int(m.es_fitness_episodes))
        }
        for (field, steps) in [("budget", settings.budget), ("query_steps", settings.querySteps), ("teacher_steps", settings.teacher?.steps ?? 0),
                               ("es_fitness_every", settings.evolution?.fitnessEvery ?? 0)]
        where steps > limits.maxBudget {
            throw .tooLarge("inner_loop.\(field)", size: steps, limit: limits.maxBudget)
        }
        guard c.bufferCapacity <= limits.maxBudget else {
            throw .tooLarge("inner_loop.buffer_capacity", size: c.bufferCapacity, limit: limits.maxBudget)
        }
        do {
            if forEval { try settings.dqn.validate() } else { try settings.validate() }
        } catch { throw .invalidField("inner_loop", reason: "\(error)") }
        return settings
    }
}
