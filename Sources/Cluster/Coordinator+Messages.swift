import ClusterCore
import DQN
import Environments
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// The coordinator shell's translation: socket frames → scheduler events, scheduler commands → sends and effects.
extension Coordinator {
    // MARK: - Inbound

    /// Handles one message from the socket, decoded where libzmq received it (no copy of a θ-sized update).
    func receive(_ frames: ZMQFrames) throws {
        messagesIn += 1
        guard frames.count == 2 else {
            logger.warning("dropped a message of \(frames.count) frames (expected identity + payload)")
            if frames.count > 0 {
                try execute(scheduler.handle(.malformed(Peer(frames.bytes(0)), "expected one payload frame, got \(frames.count - 1)", code: .malformed), now: now))
            }
            return
        }
        let peer = Peer(frames.bytes(0))
        bytesReceived += frames.size(1)
        // A result or eval outcome (θ-sized) from a peer that is not a registered worker is refused unread, the way
        // the Scheduler refuses any message of an unknown worker: it is told to say hello (issue 39, defect 8).
        if !scheduler.isWorker(peer),
           let body = frames.withUnsafeBytes(1, { WireCodec.bodyField($0) }), WireCodec.workerOnlyBodies.contains(body) {
            try execute(scheduler.handle(.heartbeat(peer), now: now))
            return
        }
        let event: SchedulerEvent<SlotPayload>
        do {
            let message = try frames.withUnsafeBytes(1) { (payload) throws(WireError) -> Message in try WireCodec.decode(payload) }
            if case .statusRequest = message {
                // Answered here from the shell's view of the run; the asker is no worker and is not registered.
                send(peer, .statusReply(json: statusJSON()))
                return
            }
            event = self.event(peer, message)
        } catch {
            let code: ErrorCode
            if case .protocolVersion = error { code = .protocolVersion } else { code = .malformed }
            event = .malformed(peer, "\(error)", code: code)
        }
        try execute(scheduler.handle(event, now: now))
    }

    func event(_ peer: Peer, _ message: Message) -> SchedulerEvent<SlotPayload> {
        .inbound(peer, message, result: { r in
            guard r.update.count == state.theta.count else {
                return .invalidResult(peer, r.key, "update has \(r.update.count) values; θ has \(state.theta.count)")
            }
            // Finite is checked by the decoder; this bound keeps a finite-but-absurd update from overflowing θ.
            // An honest worker checks the same bound and reports `.diverged` instead, so this is a strike.
            if let problem = r.update.divergence { return .invalidResult(peer, r.key, problem) }
            return .result(peer, runID: r.runID, key: r.key, parameterVersion: r.parameterVersion,
                           payload: SlotPayload(update: r.update, statistics: r.statistics))
        }, evalRequest: { r in
            evalRequest(peer, r)
        }, evalOutcome: { o in
            // Checked against its job while the shell holds it; a request completed or abandoned is the Scheduler's to
            // drop (it counts the outcome as a duplicate). The outcome travels in the event and comes back in the
            // command that forwards it: the shell keeps no copy.
            if let job = evalJobs[o.key.request]?[o.key.job], let problem = job.mismatch(o.outcome) {
                return .evalFailed(peer, o.key, "outcome does not fit the job: \(problem)")
            }
            return .evalOutcome(peer, o)
        }, note: { e in
            logger.info("worker error reply (\(e.code)): \(e.message)")
        })
    }

    /// Checks an eval request's jobs and numbers it.
    ///
    /// The decoder has checked each job (`AdaptationJob.validate`); here it must also fit this run's workers: this run's network shape, a
    /// replay buffer no larger than the run's (or the job's budget) and a batch no larger than `ClusterLimits.maxEvalBatchSize`, so
    /// no client can hand out a job that exhausts a worker's memory.
    /// Nothing is numbered or kept here: the Scheduler decides, and `holdEvalRequest` says what to keep.
    func evalRequest(_ peer: Peer, _ r: EvalRequest) -> SchedulerEvent<SlotPayload> {
        let run = config.innerLoop.dqn
        for (index, job) in r.jobs {
            do {
                guard job.initial.count == state.theta.count, job.dqn.hiddenLayers == run.hiddenLayers else {
                    throw EvaluationError.invalid("its network (\(job.dqn.hiddenLayers), \(job.initial.count) parameters) is not this run's (\(run.hiddenLayers), \(state.theta.count))")
                }
                guard job.dqn.bufferCapacity <= max(run.bufferCapacity, job.budget), job.dqn.batchSize <= ClusterLimits.maxEvalBatchSize else {
                    throw EvaluationError.invalid("replay buffer \(job.dqn.bufferCapacity) or batch \(job.dqn.batchSize) is larger than this run allows")
                }
            } catch {
                return .malformed(peer, "eval request \(r.requestID) job \(index): \(error)", code: .malformed)
            }
        }
        return .evalRequest(peer, r)
    }

    /// Keeps an accepted eval request's jobs and their parameters as shared frames; false (nothing kept) when it cannot:
    /// an index named twice (the Scheduler refuses those first; issue 39, defect 9) or no memory for the frames.
    func hold(_ number: Int, _ r: EvalRequest) -> Bool {
        guard let byIndex = Self.jobsByIndex(r.jobs) else { return false }
        do {
            evalTensors[number] = try sharedInitials(r.jobs)
        } catch {
            logger.error("eval request \(r.requestID): the coordinator could not hold its parameters: \(error)")
            return false
        }
        evalJobs[number] = byIndex
        return true
    }

    /// An eval request's jobs by index; nil when an index repeats.
    static func jobsByIndex(_ jobs: [(index: Int, job: AdaptationJob)]) -> [Int: AdaptationJob]? {
        var byIndex: [Int: AdaptationJob] = [:]
        for (index, job) in jobs {
            guard byIndex.updateValue(job, forKey: index) == nil else { return nil }
        }
        return byIndex
    }

    // MARK: - Commands

    func execute(_ commands: [SchedulerCommand<SlotPayload>]) throws {
        // An update applied below is written up after the rest of the commands (the next hand-out) have gone out.
        defer { writeProgress() }
        // Clients whose accepted request the shell could not hold: told, and dropped (which abandons their requests).
        var unheld: [(client: Peer, request: String)] = []
        for command in commands {
            switch command {
            case let .send(peer, outbound):
                try send(peer, outbound)
            case .forget:
                break
            case let .fold(iteration, slot, payload):
                try fold(iteration: iteration, slot: slot, payload: payload)
            case let .applyMetaUpdate(iteration):
                try apply(iteration: iteration)
            case .writeCheckpoint:
                try checkpoint()
            case let .log(level, text):
                logger.log(level: level.loggerLevel, "\(text)")
            case .finished:
                finished = true
            case .abort(let reason):
                try stopDiverged(reason)
            case let .confirmDivergence(key, reason):
                guard let base = state.theta(version: config.meta.baseVersion(of: key.iteration)) else {
                    try stopRun(.internalInconsistency("no θ of version \(config.meta.baseVersion(of: key.iteration)) for a divergence report of \(key) at iteration \(state.iteration)"))
                }
                divergence.confirm(key, reported: reason, theta: base, config: config, numerics: scheduler.numerics)
            case let .forwardEvalOutcome(client, outcome):
                send(client, .evalOutcome(outcome))
            case let .holdEvalRequest(number, client, request):
                if !hold(number, request) {
                    unheldRequests.insert(number)
                    unheld.append((client, request.requestID))
                }
            case .forgetEvalRequest(let number):
                evalJobs[number] = nil
                evalTensors[number] = nil
                unheldRequests.remove(number)
            }
        }
        for (client, request) in unheld {
            send(client, Message.error(ErrorReply(code: .rejected, message: "eval request \(request): the coordinator could not hold its parameters; try again later")))
            try execute(scheduler.handle(.goodbye(client), now: now))
        }
    }

    func send(_ peer: Peer, _ outbound: Outbound) throws {
        let message: Message
        switch outbound {
        case .welcome(let id):
            message = .welcome(Welcome(runID: runID, workerID: id, heartbeatIntervalMs: config.coordinator.heartbeatIntervalMs,
                                       liveness: config.coordinator.liveness, numerics: scheduler.numerics.policy))
        case .heartbeat: message = .heartbeat(envSteps: 0)
        case .error(let e): message = .error(e)
        case .goodbye(let reason): message = .goodbye(reason: reason, resumable: false)
        case .evalJob(let key):
            // A request the shell could not hold goes with its client (`execute`); its hand-outs until then are not sent.
            if unheldRequests.contains(key.request) { return }
            guard let job = evalJobs[key.request]?[key.job] else {
                try stopRun(.internalInconsistency("no job content for eval job \(key)"))
            }
            guard let initial = evalTensors[key.request]?[key.job] else {
                try stopRun(.internalInconsistency("no parameters frame for eval job \(key)"))
            }
            send(peer, .evalJob(EvalJobMessage(key: key, job: job)), sharing: initial)
            return
        case let .assign(key, includeParameters):
            if !assignedYet {
                assignedYet = true
                iterationStarted = clock.now
            }
            let version = config.meta.baseVersion(of: key.iteration)
            message = .assignment(Assignment(
                runID: runID, key: key, task: try tasks(of: key.iteration)[key.slot], innerLoop: config.innerLoop,
                algorithm: config.meta.algorithm,
                seed: slotSeed(runSeed: config.run.seed, iteration: key.iteration, slot: key.slot),
                parameterVersion: version, parameters: nil))
            if includeParameters {
                guard let tensor = try thetaTensor(version: version) else {
                    try stopRun(.internalInconsistency("no θ of version \(version) for \(key) at iteration \(state.iteration)"))
                }
                send(peer, message, sharing: tensor)
                return
            }
        }
        send(peer, message)
    }

    /// θ of `version` as a shared frame, encoded at the first send of the version; nil for a version no longer held.
    func thetaTensor(version: Int) throws -> SharedTensor? {
        if let frame = thetaFrames.last(where: { $0.version == version }) { return frame.tensor }
        guard let theta = state.theta(version: version) else { return nil }
        // Versions no longer handed out go before the new one's bytes are made.
        thetaFrames.removeAll { state.theta(version: $0.version) == nil }
        let tensor = try SharedTensor(theta, for: .assignment)
        tensorEncodings += 1
        thetaFrames.append((version, tensor))
        return tensor
    }

    /// The tasks of `iteration`'s slots, drawn once per iteration (two iterations are handed out at once when pipelined).
    func tasks(of iteration: Int) throws -> [TaskSpec] {
        if let known = tasks.last(where: { $0.iteration == iteration }) { return known.specs }
        let specs = try (0..<config.meta.metaBatch).map { try config.task(iteration: iteration, slot: $0) }
        tasks.append((iteration, specs))
        if tasks.count > 2 { tasks.removeFirst() }
        return specs
    }

    /// One shared frame per distinct initial vector of an eval request (bit patterns compared), by job index.
    func sharedInitials(_ jobs: [(index: Int, job: AdaptationJob)]) throws -> [Int: SharedTensor] {
        var distinct: [(values: [Float], tensor: SharedTensor)] = []
        var byJob: [Int: SharedTensor] = [:]
        for (index, job) in jobs {
            if let known = distinct.first(where: { WireCodec.sameBits($0.values, job.initial.values) }) {
                byJob[index] = known.tensor
            } else {
                let tensor = try SharedTensor(job.initial, for: .evalJob)
                tensorEncodings += 1
                distinct.append((job.initial.values, tensor))
                byJob[index] = tensor
            }
        }
        return byJob
    }

    /// Sends `message` as its head frame followed by `tensor`'s shared frame (never copied or encoded again).
    func send(_ peer: Peer, _ message: Message, sharing tensor: SharedTensor) {
        let head = WireCodec.encodeHead(message, carrier: tensor.carrier, fieldBytes: tensor.frame.count)
        do {
            try socket.send([peer.id, head], then: tensor.frame)
            bytesSent += head.count + tensor.frame.count
            tensorBytesSent += tensor.frame.count
            messagesOut += 1
        } catch {
            logger.debug("send \(message.kind) to \(peer) failed: \(error)")
        }
    }

    func send(_ peer: Peer, _ message: Message) {
        let bytes = WireCodec.encode(message)
        do {
            try socket.send([peer.id, bytes])
            bytesSent += bytes.count
            messagesOut += 1
        } catch let error as ZMQError {
            // The peer is gone (EHOSTUNREACH) or its queue is full (EAGAIN): liveness will sort it out.
            logger.debug("send \(message.kind) to \(peer) failed: \(error)")
        } catch {
            logger.debug("send \(message.kind) to \(peer) failed: \(error)")
        }
    }
}
