import CProtobufC
import DQN
import Environments
import MetaLearning
import MetaTrainProto
import NeuralNet

// Meta-evaluation: a client's request, one job as a worker gets it, and its outcome. Each message's encoder and
// decoder stand side by side, so a change to its .proto fields touches this file only.

extension WireCodec {
    static func encodeEvalRequest(_ r: EvalRequest, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__EvalRequest> {
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
        return m
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

    static func encodeEvalOutcome(_ o: EvalOutcome, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__EvalOutcome> {
        let m: UnsafeMutablePointer<Metatrain__V1__EvalOutcome> = arena.message { metatrain__v1__eval_outcome__init($0) }
        m.pointee.request = UInt64(o.key.request)
        m.pointee.index = UInt32(clamping: o.key.job)
        m.pointee.attempt = UInt32(clamping: o.key.attempt)
        m.pointee.n_returns = o.outcome.returns.count
        m.pointee.returns = arena.array(o.outcome.returns)
        if let final = o.outcome.final { m.pointee.final = encodeTensor(final.values, arena) }
        m.pointee.error = arena.string(o.error ?? "")
        return m
    }
}

extension WireCodec.Decoder {
    func evalRequest(_ m: Metatrain__V1__EvalRequest) throws(WireError) -> Message {
        guard m.n_jobs >= 1 && m.n_jobs <= limits.maxEvalJobs else {
            throw .invalidField("eval_request.jobs", reason: "\(m.n_jobs) jobs is outside 1...\(limits.maxEvalJobs)")
        }
        guard m.n_parameters >= 1 && m.n_parameters <= m.n_jobs else {
            throw .invalidField("eval_request.parameters", reason: "\(m.n_parameters) tensors for \(m.n_jobs) jobs")
        }
        let parameters = try (0..<m.n_parameters).map { i throws(WireError) in try tensor(m.parameters[i], "eval_request.parameters[\(i)]") }
        var jobs: [(index: Int, job: AdaptationJob)] = []
        var seen = Set<Int>()
        for i in 0..<m.n_jobs {
            guard let p = m.jobs[i] else { throw .missingField("eval_request.jobs[\(i)]") }
            let (key, job) = try evalJob(p.pointee, "eval_request.jobs[\(i)]", parameters: parameters)
            guard seen.insert(key.job).inserted else {
                throw .invalidField("eval_request.jobs[\(i)].index", reason: "index \(key.job) appears twice")
            }
            jobs.append((key.job, job))
        }
        return .evalRequest(EvalRequest(requestID: try identifier(m.request_id, "eval_request.request_id"), jobs: jobs))
    }

    func evalJobMessage(_ m: Metatrain__V1__EvalJob) throws(WireError) -> Message {
        let (key, job) = try evalJob(m, "eval_job")
        return .evalJob(EvalJobMessage(key: key, job: job))
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


    func evalKey(request: UInt64, index: UInt32, attempt: UInt32, _ field: String) throws(WireError) -> EvalKey {
        guard request < UInt64(Int32.max), index < UInt32(clamping: limits.maxEvalJobs), attempt < UInt32(clamping: limits.maxAttempts) else {
            throw .invalidField("\(field).request/index/attempt", reason: "out of range (\(request), \(index), \(attempt))")
        }
        return EvalKey(request: Int(request), job: Int(index), attempt: Int(attempt))
    }


    func evalOutcome(_ m: Metatrain__V1__EvalOutcome) throws(WireError) -> Message {
        let key = try evalKey(request: m.request, index: m.index, attempt: m.attempt, "eval_outcome")
        guard m.n_returns <= limits.maxEvalPoints else {
            throw .tooLarge("eval_outcome.returns", size: m.n_returns, limit: limits.maxEvalPoints)
        }
        let returns = try (0..<m.n_returns).map { i throws(WireError) in try finite(m.returns[i], "eval_outcome.returns[\(i)]") }
        let final = m.final == nil ? nil : try tensor(m.final, "eval_outcome.final")
        let error = try string(m.error, "eval_outcome.error")
        return .evalOutcome(EvalOutcome(key: key, outcome: AdaptationOutcome(returns: returns, final: final),
                                        error: error.isEmpty ? nil : error))
    }
}
