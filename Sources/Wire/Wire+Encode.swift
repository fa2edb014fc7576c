import CProtobufC
import DQN
import Environments
import Foundation
import MetaLearning
import MetaTrainProto
import NeuralNet

/// Encodes and decodes `Message`s as metatrain.v1 protobuf envelopes.
public enum WireCodec {
    /// The protobuf bytes of `message` inside an envelope with this build's protocol version.
    public static func encode(_ message: Message) -> [UInt8] {
        encode(message, version: protocolVersion)
    }

    /// Like `encode(_:)` with an explicit version (tests use it to send a wrong one).
    public static func encode(_ message: Message, version: UInt32) -> [UInt8] {
        let arena = Arena()
        let envelope = envelope(message, version: version, arena)
        let size = metatrain__v1__envelope__get_packed_size(envelope)
        var out = [UInt8](repeating: 0, count: size)
        _ = out.withUnsafeMutableBufferPointer { metatrain__v1__envelope__pack(envelope, $0.baseAddress) }
        return out
    }

    /// The protobuf-c envelope of `message`, its storage in `arena`. `omitTensor` leaves out the tensor a
    /// `SharedTensorField` carries instead (an assignment's θ, an eval job's initial parameters).
    static func envelope(_ message: Message, version: UInt32, _ arena: Arena,
                         omitTensor: Bool = false) -> UnsafeMutablePointer<Metatrain__V1__Envelope> {
        let envelope: UnsafeMutablePointer<Metatrain__V1__Envelope> = arena.message { metatrain__v1__envelope__init($0) }
        envelope.pointee.protocol_version = version
        switch message {
        case .hello(let h):
            let m: UnsafeMutablePointer<Metatrain__V1__Hello> = arena.message { metatrain__v1__hello__init($0) }
            m.pointee.host = arena.string(h.host)
            m.pointee.cores = UInt32(clamping: h.cores)
            m.pointee.threads = UInt32(clamping: h.threads)
            m.pointee.previous_worker_id = arena.string(h.previousWorkerID)
            let n: UnsafeMutablePointer<Metatrain__V1__Numerics> = arena.message { metatrain__v1__numerics__init($0) }
            n.pointee.kernel = arena.string(h.numerics.kernel)
            n.pointee.fingerprint = arena.string(h.numerics.fingerprint)
            n.pointee.portable_kernel = arena.string(h.numerics.portableKernel)
            n.pointee.portable_fingerprint = arena.string(h.numerics.portableFingerprint)
            n.pointee.cpu = arena.string(h.numerics.cpu)
            m.pointee.numerics = n
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_HELLO
            envelope.pointee.hello = m
        case .welcome(let w):
            let m: UnsafeMutablePointer<Metatrain__V1__Welcome> = arena.message { metatrain__v1__welcome__init($0) }
            m.pointee.run_id = arena.string(w.runID)
            m.pointee.worker_id = arena.string(w.workerID)
            m.pointee.heartbeat_interval_ms = UInt32(clamping: w.heartbeatIntervalMs)
            m.pointee.liveness = UInt32(clamping: w.liveness)
            m.pointee.numerics = encodeNumericsPolicy(w.numerics)
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_WELCOME
            envelope.pointee.welcome = m
        case .heartbeat(let envSteps):
            let m: UnsafeMutablePointer<Metatrain__V1__Heartbeat> = arena.message { metatrain__v1__heartbeat__init($0) }
            m.pointee.env_steps = envSteps
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_HEARTBEAT
            envelope.pointee.heartbeat = m
        case .assignment(let a):
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
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_ASSIGNMENT
            envelope.pointee.assignment = m
        case .result(let r):
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
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_RESULT
            envelope.pointee.result = m
        case .error(let e):
            let m: UnsafeMutablePointer<Metatrain__V1__ErrorReply> = arena.message { metatrain__v1__error_reply__init($0) }
            m.pointee.code = Metatrain__V1__ErrorCode(rawValue: numericCast(e.code.rawValue))
            m.pointee.message = arena.string(e.message)
            if let k = e.key {
                m.pointee.iteration = UInt64(k.iteration); m.pointee.slot = UInt32(k.slot); m.pointee.attempt = UInt32(k.attempt)
                m.pointee.has_key = 1
            }
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_ERROR
            envelope.pointee.error = m
        case .goodbye(let reason):
            let m: UnsafeMutablePointer<Metatrain__V1__Goodbye> = arena.message { metatrain__v1__goodbye__init($0) }
            m.pointee.reason = arena.string(reason)
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_GOODBYE
            envelope.pointee.goodbye = m
        case .statusRequest:
            let m: UnsafeMutablePointer<Metatrain__V1__StatusRequest> = arena.message { metatrain__v1__status_request__init($0) }
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_STATUS_REQUEST
            envelope.pointee.status_request = m
        case .statusReply(let json):
            let m: UnsafeMutablePointer<Metatrain__V1__StatusReply> = arena.message { metatrain__v1__status_reply__init($0) }
            m.pointee.json = arena.string(json)
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_STATUS_REPLY
            envelope.pointee.status_reply = m
        case .evalRequest(let r):
            let m: UnsafeMutablePointer<Metatrain__V1__EvalRequest> = arena.message { metatrain__v1__eval_request__init($0) }
            m.pointee.request_id = arena.string(r.requestID)
            // Jobs adapting the same θ share one tensor; bit patterns are compared, so −0 and +0 stay apart.
            var distinct: [ParameterVector] = []
            var slots: [Int] = []
            for (_, job) in r.jobs {
                if let k = distinct.firstIndex(where: { sameBits($0.values, job.initial.values) }) { slots.append(k) } else {
                    slots.append(distinct.count)
                    distinct.append(job.initial)
                }
            }
            m.pointee.n_parameters = distinct.count
            m.pointee.parameters = arena.array(distinct.map { Optional(encodeTensor($0.values, arena)) })
            m.pointee.n_jobs = r.jobs.count
            m.pointee.jobs = arena.array(zip(r.jobs, slots).map { item, slot in
                Optional(encodeEvalJob(EvalKey(request: 0, job: item.index, attempt: 0), item.job, arena, initialIndex: slot))
            })
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_EVAL_REQUEST
            envelope.pointee.eval_request = m
        case .evalJob(let j):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_EVAL_JOB
            // initial_index 0 is proto3's default, so with omitTensor neither it nor the tensor is written.
            envelope.pointee.eval_job = encodeEvalJob(j.key, j.job, arena, initialIndex: omitTensor ? 0 : nil)
        case .evalOutcome(let o):
            let m: UnsafeMutablePointer<Metatrain__V1__EvalOutcome> = arena.message { metatrain__v1__eval_outcome__init($0) }
            m.pointee.request = UInt64(o.key.request)
            m.pointee.index = UInt32(clamping: o.key.job)
            m.pointee.attempt = UInt32(clamping: o.key.attempt)
            m.pointee.n_returns = o.outcome.returns.count
            m.pointee.returns = arena.array(o.outcome.returns)
            if let final = o.outcome.final { m.pointee.final = encodeTensor(final.values, arena) }
            m.pointee.error = arena.string(o.error ?? "")
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_EVAL_OUTCOME
            envelope.pointee.eval_outcome = m
        }
        return envelope
    }

    /// Whether two vectors hold the same bit patterns (−0 and +0 differ, a NaN equals its own bits).
    public static func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && (a.isEmpty || a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 } })
    }

    /// An eval job with its parameters inline, or (`initialIndex`, in a request) naming one of the request's tensors.
    static func encodeEvalJob(_ key: EvalKey, _ job: AdaptationJob, _ arena: Arena, initialIndex: Int? = nil) -> UnsafeMutablePointer<Metatrain__V1__EvalJob> {
        let m: UnsafeMutablePointer<Metatrain__V1__EvalJob> = arena.message { metatrain__v1__eval_job__init($0) }
        m.pointee.request = UInt64(key.request)
        m.pointee.index = UInt32(clamping: key.job)
        m.pointee.attempt = UInt32(clamping: key.attempt)
        m.pointee.task = encodeTask(job.task, arena)
        m.pointee.inner_loop = encodeInnerLoop(InnerLoopSettings(dqn: job.dqn, budget: job.budget, querySteps: 0), arena)
        m.pointee.every = UInt32(clamping: job.every)
        m.pointee.episodes = UInt32(clamping: job.episodes)
        m.pointee.seed = job.seed
        m.pointee.scoring_seed = job.scoringSeed
        m.pointee.return_final = job.returnFinal ? 1 : 0
        if let initialIndex { m.pointee.initial_index = UInt32(initialIndex) } else { m.pointee.initial = encodeTensor(job.initial.values, arena) }
        return m
    }

    static func encodeTensor(_ values: [Float], _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__Tensor> {
        let t: UnsafeMutablePointer<Metatrain__V1__Tensor> = arena.message { metatrain__v1__tensor__init($0) }
        t.pointee.n_shape = 1
        t.pointee.shape = arena.array([UInt32(values.count)])
        t.pointee.data = arena.floatBytes(values)
        return t
    }

    static func encodeAlgorithm(_ a: MetaAlgorithm) -> Metatrain__V1__Algorithm {
        switch a {
        case .reptile: return METATRAIN__V1__ALGORITHM__ALGORITHM_REPTILE
        case .fomaml: return METATRAIN__V1__ALGORITHM__ALGORITHM_FOMAML
        case .maml: return METATRAIN__V1__ALGORITHM__ALGORITHM_MAML
        }
    }

    static func encodeNumericsPolicy(_ p: NumericsPolicy) -> Metatrain__V1__NumericsPolicy {
        switch p {
        case .strict: return METATRAIN__V1__NUMERICS_POLICY__NUMERICS_STRICT
        case .portable: return METATRAIN__V1__NUMERICS_POLICY__NUMERICS_PORTABLE
        case .any: return METATRAIN__V1__NUMERICS_POLICY__NUMERICS_ANY
        }
    }

    static func encodeOptimizer(_ o: OptimizerKind) -> Metatrain__V1__Optimizer {
        o == .adam ? METATRAIN__V1__OPTIMIZER__OPTIMIZER_ADAM : METATRAIN__V1__OPTIMIZER__OPTIMIZER_SGD
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
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_GOAL_NAVIGATION
            t.pointee.goal_navigation = m
        case .tabularMDP(let p):
            let m: UnsafeMutablePointer<Metatrain__V1__TabularMDPTask> = arena.message { metatrain__v1__tabular_mdptask__init($0) }
            m.pointee.states = UInt32(clamping: p.states); m.pointee.actions = UInt32(clamping: p.actions)
            m.pointee.horizon = UInt32(clamping: p.horizon); m.pointee.seed = p.seed
            m.pointee.has_dynamics_seed = p.dynamicsSeed == nil ? 0 : 1; m.pointee.dynamics_seed = p.dynamicsSeed ?? 0
            t.pointee.kind_case = METATRAIN__V1__TASK_SPEC__KIND_TABULAR_MDP
            t.pointee.tabular_mdp = m
        }
        return t
    }
}
