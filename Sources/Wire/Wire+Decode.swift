import CProtobufC
import DQN
import Environments
import MetaLearning
import MetaTrainProto
import NeuralNet

extension WireCodec {
    /// Decodes and validates one envelope. Every field from the peer is checked; garbage throws.
    public static func decode(_ bytes: [UInt8], limits: WireLimits = WireLimits()) throws(WireError) -> Message {
        let unpacked = bytes.withUnsafeBufferPointer { metatrain__v1__envelope__unpack(nil, $0.count, $0.baseAddress) }
        guard let envelope = unpacked else { throw .undecodable(bytes: bytes.count) }
        defer { metatrain__v1__envelope__free_unpacked(envelope, nil) }
        let e = envelope.pointee
        guard e.protocol_version == protocolVersion else {
            throw .protocolVersion(got: e.protocol_version, expected: protocolVersion)
        }
        let d = Decoder(limits: limits)
        switch e.body_case {
        case METATRAIN__V1__ENVELOPE__BODY_HELLO:
            let m = e.hello.pointee
            let threads = Int(m.threads)
            guard threads >= 1 && threads <= limits.maxThreads else {
                throw .invalidField("hello.threads", reason: "\(threads) is outside 1...\(limits.maxThreads)")
            }
            guard let n = m.numerics?.pointee else { throw .invalidField("hello.numerics", reason: "missing") }
            let numerics = NumericsReport(
                kernel: try d.kernelName(n.kernel, "hello.numerics.kernel"),
                fingerprint: try d.fingerprint(n.fingerprint, "hello.numerics.fingerprint"),
                portableKernel: try d.kernelName(n.portable_kernel, "hello.numerics.portable_kernel"),
                portableFingerprint: try d.fingerprint(n.portable_fingerprint, "hello.numerics.portable_fingerprint"),
                cpu: try d.string(n.cpu, "hello.numerics.cpu"))
            return .hello(Hello(host: try d.string(m.host, "hello.host"), cores: Int(m.cores), threads: threads,
                                previousWorkerID: try d.string(m.previous_worker_id, "hello.previous_worker_id"),
                                numerics: numerics))
        case METATRAIN__V1__ENVELOPE__BODY_WELCOME:
            let m = e.welcome.pointee
            guard m.heartbeat_interval_ms > 0 && m.heartbeat_interval_ms <= 3_600_000 else {
                throw .invalidField("welcome.heartbeat_interval_ms", reason: "\(m.heartbeat_interval_ms) is outside 1...3600000")
            }
            guard m.liveness > 0 && m.liveness <= 1000 else {
                throw .invalidField("welcome.liveness", reason: "\(m.liveness) is outside 1...1000")
            }
            return .welcome(Welcome(runID: try d.identifier(m.run_id, "welcome.run_id"),
                                    workerID: try d.identifier(m.worker_id, "welcome.worker_id"),
                                    heartbeatIntervalMs: Int(m.heartbeat_interval_ms), liveness: Int(m.liveness),
                                    numerics: try d.numericsPolicy(m.numerics, "welcome.numerics")))
        case METATRAIN__V1__ENVELOPE__BODY_HEARTBEAT:
            return .heartbeat(envSteps: e.heartbeat.pointee.env_steps)
        case METATRAIN__V1__ENVELOPE__BODY_ASSIGNMENT:
            return .assignment(try d.assignment(e.assignment.pointee))
        case METATRAIN__V1__ENVELOPE__BODY_RESULT:
            return .result(try d.result(e.result.pointee))
        case METATRAIN__V1__ENVELOPE__BODY_ERROR:
            let m = e.error.pointee
            guard let code = ErrorCode(rawValue: Int32(bitPattern: UInt32(truncatingIfNeeded: m.code.rawValue))) else {
                throw .unknownEnum("error.code", value: Int64(m.code.rawValue))
            }
            guard m.has_key != 0 || (m.iteration == 0 && m.slot == 0 && m.attempt == 0) else {
                throw .invalidField("error.has_key", reason: "a slot key is set but has_key is false")
            }
            let key = m.has_key == 0 ? nil : try d.key(iteration: m.iteration, slot: m.slot, attempt: m.attempt, "error")
            return .error(ErrorReply(code: code, message: try d.string(m.message, "error.message"), key: key))
        case METATRAIN__V1__ENVELOPE__BODY_GOODBYE:
            return .goodbye(reason: try d.string(e.goodbye.pointee.reason, "goodbye.reason"))
        case METATRAIN__V1__ENVELOPE__BODY_STATUS_REQUEST:
            return .statusRequest
        case METATRAIN__V1__ENVELOPE__BODY_STATUS_REPLY:
            return .statusReply(json: try d.string(e.status_reply.pointee.json, "status_reply.json", limit: limits.maxStatusBytes))
        case METATRAIN__V1__ENVELOPE__BODY_EVAL_REQUEST:
            let m = e.eval_request.pointee
            guard m.n_jobs >= 1 && m.n_jobs <= limits.maxEvalJobs else {
                throw .invalidField("eval_request.jobs", reason: "\(m.n_jobs) jobs is outside 1...\(limits.maxEvalJobs)")
            }
            guard m.n_parameters >= 1 && m.n_parameters <= m.n_jobs else {
                throw .invalidField("eval_request.parameters", reason: "\(m.n_parameters) tensors for \(m.n_jobs) jobs")
            }
            let parameters = try (0..<m.n_parameters).map { i throws(WireError) in try d.tensor(m.parameters[i], "eval_request.parameters[\(i)]") }
            var jobs: [(index: Int, job: AdaptationJob)] = []
            var seen = Set<Int>()
            for i in 0..<m.n_jobs {
                guard let p = m.jobs[i] else { throw .missingField("eval_request.jobs[\(i)]") }
                let (key, job) = try d.evalJob(p.pointee, "eval_request.jobs[\(i)]", parameters: parameters)
                guard seen.insert(key.job).inserted else {
                    throw .invalidField("eval_request.jobs[\(i)].index", reason: "index \(key.job) appears twice")
                }
                jobs.append((key.job, job))
            }
            return .evalRequest(EvalRequest(requestID: try d.identifier(m.request_id, "eval_request.request_id"), jobs: jobs))
        case METATRAIN__V1__ENVELOPE__BODY_EVAL_JOB:
            let (key, job) = try d.evalJob(e.eval_job.pointee, "eval_job")
            return .evalJob(EvalJobMessage(key: key, job: job))
        case METATRAIN__V1__ENVELOPE__BODY_EVAL_OUTCOME:
            let m = e.eval_outcome.pointee
            let key = try d.evalKey(request: m.request, index: m.index, attempt: m.attempt, "eval_outcome")
            guard m.n_returns <= limits.maxEvalPoints else {
                throw .tooLarge("eval_outcome.returns", size: m.n_returns, limit: limits.maxEvalPoints)
            }
            let returns = try (0..<m.n_returns).map { i throws(WireError) in try d.finite(m.returns[i], "eval_outcome.returns[\(i)]") }
            let final = m.final == nil ? nil : try d.tensor(m.final, "eval_outcome.final")
            let error = try d.string(m.error, "eval_outcome.error")
            return .evalOutcome(EvalOutcome(key: key, outcome: AdaptationOutcome(returns: returns, final: final),
                                            error: error.isEmpty ? nil : error))
        default:
            throw .missingField("envelope.body")
        }
    }

    /// Field-by-field validation shared by the decoders.
    struct Decoder {
        let limits: WireLimits

        func string(_ p: UnsafeMutablePointer<CChar>?, _ field: String, limit: Int? = nil) throws(WireError) -> String {
            guard let p else { return "" }
            let limit = limit ?? limits.maxStringBytes
            let length = strnlen(p, limit + 1)
            guard length <= limit else {
                throw .tooLarge(field, size: length, limit: limit)
            }
            guard let s = String(validatingCString: p) else { throw .invalidField(field, reason: "not valid UTF-8") }
            return s
        }

        /// A run or worker id: 1-128 printable ASCII characters.
        func identifier(_ p: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
            let s = try string(p, field)
            guard !s.isEmpty, s.utf8.count <= 128, s.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
                throw .invalidField(field, reason: "must be 1-128 printable ASCII characters without spaces")
            }
            return s
        }

        func key(iteration: UInt64, slot: UInt32, attempt: UInt32, _ field: String) throws(WireError) -> SlotKey {
            guard iteration < UInt64(Int32.max), slot < UInt32(clamping: limits.maxSlots), attempt < UInt32(clamping: limits.maxAttempts) else {
                throw .invalidField("\(field).iteration/slot/attempt", reason: "out of range (\(iteration), \(slot), \(attempt))")
            }
            return SlotKey(iteration: Int(iteration), slot: Int(slot), attempt: Int(attempt))
        }

        func version(_ v: UInt64, _ field: String) throws(WireError) -> Int {
            guard v < UInt64(Int32.max) else { throw .invalidField(field, reason: "\(v) is out of range") }
            return Int(v)
        }

        /// A float32 tensor: shape product × 4 must equal the bytes, every value finite.
        func tensor(_ p: UnsafeMutablePointer<Metatrain__V1__Tensor>?, _ field: String) throws(WireError) -> ParameterVector {
            guard let t = p?.pointee else { throw .missingField(field) }
            let shape = (0..<t.n_shape).map { t.shape[$0] }
            guard !shape.isEmpty, shape.count <= 8, shape.allSatisfy({ $0 > 0 }) else {
                throw .invalidField("\(field).shape", reason: "\(shape) must have 1-8 positive dimensions")
            }
            var count = 1
            for dim in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: Int(dim))
                guard !overflow, product <= limits.maxTensorValues else {
                    throw .tooLarge("\(field).shape", size: overflow ? Int.max : product, limit: limits.maxTensorValues)
                }
                count = product
            }
            guard t.data.len == count * 4, let data = t.data.data else {
                throw .tensorSize(field, shape: shape, bytes: t.data.len)
            }
            var values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(start: data, count: count * 4))
                initialized = count
            }
            #if !_endian(little)
            for i in 0..<count { values[i] = Float(bitPattern: UInt32(littleEndian: values[i].bitPattern)) }
            #endif
            if let bad = values.firstIndex(beyond: .greatestFiniteMagnitude) { throw .nonFinite(field, index: bad) }
            return ParameterVector(values)
        }

        func numericsPolicy(_ p: Metatrain__V1__NumericsPolicy, _ field: String) throws(WireError) -> NumericsPolicy {
            switch p {
            case METATRAIN__V1__NUMERICS_POLICY__NUMERICS_STRICT: return .strict
            case METATRAIN__V1__NUMERICS_POLICY__NUMERICS_PORTABLE: return .portable
            case METATRAIN__V1__NUMERICS_POLICY__NUMERICS_ANY: return .any
            default: throw .unknownEnum(field, value: Int64(p.rawValue))
            }
        }

        /// 16 lowercase hex digits, as `NumericsFingerprint` writes them.
        func fingerprint(_ p: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
            let s = try string(p, field)
            guard s.utf8.count == 16, s.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw .invalidField(field, reason: "'\(s.prefix(32))' is not 16 hex digits")
            }
            return s
        }

        /// A kernel name this build knows (a worker of another build may know others: shown, not used).
        func kernelName(_ p: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
            let s = try string(p, field)
            guard !s.isEmpty, s.utf8.count <= 32, s.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
                throw .invalidField(field, reason: "'\(s.prefix(32))' is not a kernel name")
            }
            return s
        }

        func algorithm(_ a: Metatrain__V1__Algorithm, _ field: String) throws(WireError) -> MetaAlgorithm {
            switch a {
            case METATRAIN__V1__ALGORITHM__ALGORITHM_REPTILE: return .reptile
            case METATRAIN__V1__ALGORITHM__ALGORITHM_FOMAML: return .fomaml
            case METATRAIN__V1__ALGORITHM__ALGORITHM_MAML: return .maml
            default: throw .unknownEnum(field, value: Int64(a.rawValue))
            }
        }

        func finite(_ x: Double, _ field: String) throws(WireError) -> Double {
            guard x.isFinite else { throw .invalidField(field, reason: "\(x) is not finite") }
            return x
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
                                                                terminateAtGoal: m.terminate_at_goal != 0))
            case METATRAIN__V1__TASK_SPEC__KIND_TABULAR_MDP:
                let m = t.tabular_mdp.pointee
                spec = .tabularMDP(TabularMDPParameters(states: Int(m.states), actions: Int(m.actions),
                                                        horizon: Int(m.horizon), seed: m.seed,
                                                        dynamicsSeed: m.has_dynamics_seed != 0 ? m.dynamics_seed : nil))
            default:
                throw .missingField("assignment.task.kind")
            }
            do { try spec.validate() } catch { throw .invalidField("assignment.task", reason: "\(error)") }
            return spec
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
            let settings = InnerLoopSettings(dqn: c, budget: Int(m.budget), querySteps: Int(m.query_steps))
            guard settings.budget <= limits.maxBudget, settings.querySteps <= limits.maxBudget else {
                throw .tooLarge("inner_loop.budget", size: max(settings.budget, settings.querySteps), limit: limits.maxBudget)
            }
            guard c.bufferCapacity <= limits.maxBudget else {
                throw .tooLarge("inner_loop.buffer_capacity", size: c.bufferCapacity, limit: limits.maxBudget)
            }
            do {
                if forEval { try settings.dqn.validate() } else { try settings.validate() }
            } catch { throw .invalidField("inner_loop", reason: "\(error)") }
            return settings
        }

        func evalKey(request: UInt64, index: UInt32, attempt: UInt32, _ field: String) throws(WireError) -> EvalKey {
            guard request < UInt64(Int32.max), index < UInt32(clamping: limits.maxEvalJobs), attempt < UInt32(clamping: limits.maxAttempts) else {
                throw .invalidField("\(field).request/index/attempt", reason: "out of range (\(request), \(index), \(attempt))")
            }
            return EvalKey(request: Int(request), job: Int(index), attempt: Int(attempt))
        }

        /// An eval job: the task and DQN settings validated like an assignment's, the job as
        /// `AdaptationJob.validate` checks it (every divides the budget, θ fits the task's network), and
        /// its curve within `maxEvalPoints`.
        /// In a request (`parameters` given) the job names one of the request's tensors; sent to a worker it carries its own.
        func evalJob(_ m: Metatrain__V1__EvalJob, _ field: String, parameters: [ParameterVector]? = nil) throws(WireError) -> (EvalKey, AdaptationJob) {
            let key = try evalKey(request: m.request, index: m.index, attempt: m.attempt, field)
            let settings = try innerLoop(m.inner_loop, forEval: true)
            let episodes = Int(m.episodes)
            guard episodes <= limits.maxEpisodes else { throw .tooLarge("\(field).episodes", size: episodes, limit: limits.maxEpisodes) }
            let initial: ParameterVector
            if let parameters {
                guard Int(m.initial_index) < parameters.count else {
                    throw .invalidField("\(field).initial_index", reason: "\(m.initial_index) names none of the request's \(parameters.count) tensors")
                }
                initial = parameters[Int(m.initial_index)]
            } else {
                initial = try tensor(m.initial, "\(field).initial")
            }
            let job = AdaptationJob(initial: initial, task: try task(m.task), dqn: settings.dqn,
                                    budget: settings.budget, every: Int(m.every), episodes: episodes, seed: m.seed,
                                    scoringSeed: m.scoring_seed, returnFinal: m.return_final != 0)
            do { try job.validate() } catch { throw .invalidField(field, reason: "\(error)") }
            guard job.points <= limits.maxEvalPoints else { throw .tooLarge("\(field).every", size: job.points, limit: limits.maxEvalPoints) }
            return (key, job)
        }

        func assignment(_ m: Metatrain__V1__Assignment) throws(WireError) -> Assignment {
            let parameters = m.parameters == nil ? nil : try tensor(m.parameters, "assignment.parameters")
            return Assignment(
                runID: try identifier(m.run_id, "assignment.run_id"),
                key: try key(iteration: m.iteration, slot: m.slot, attempt: m.attempt, "assignment"),
                task: try task(m.task), innerLoop: try innerLoop(m.inner_loop),
                algorithm: try algorithm(m.algorithm, "assignment.algorithm"), seed: m.seed,
                parameterVersion: try version(m.parameter_version, "assignment.parameter_version"),
                parameters: parameters)
        }

        func result(_ m: Metatrain__V1__Result) throws(WireError) -> SlotResult {
            guard let s = m.statistics?.pointee else { throw .missingField("result.statistics") }
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
                update: try tensor(m.update, "result.update"), statistics: statistics)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
