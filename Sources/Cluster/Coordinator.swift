import DQN
import Environments
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// What the coordinator keeps of one slot's result until its iteration is applied.
public struct SlotPayload: Sendable {
    public var update: ParameterVector
    public var statistics: SlotStatistics
}

/// How a coordinator run ended.
public struct CoordinatorSummary: Sendable {
    public var runID: String
    public var runDirectory: String
    public var iterations: Int
    public var theta: ParameterVector
    public var paramsSHA256: String
    public var interrupted: Bool
    public var counters: SchedulerCounters
}

/// The coordinator process: a ZeroMQ ROUTER shell around the pure `Scheduler`.
///
/// One thread owns the socket: it polls with a finite timeout, turns each inbound frame into a
/// scheduler event, and carries out the commands that come back (send, apply the meta-update,
/// checkpoint). Every inbound message is decoded and validated; garbage becomes a `malformed` event
/// and an error reply, never a crash.
public final class Coordinator {
    public let config: ClusterConfig
    public let runDirectory: String
    public let runID: String
    public private(set) var state: MetaState
    /// The endpoint actually bound (a wildcard port resolved).
    public private(set) var endpoint: String
    /// What workers connect to: `endpoint` with a wildcard host replaced (see `advertisedEndpoint`).
    public private(set) var advertised: String
    var endpointFile: String { (runDirectory as NSString).appendingPathComponent("coordinator.endpoint") }
    let logger: Logger
    let stop: StopFlag
    let store: CheckpointStore
    let socket: ZMQSocket
    /// Authenticates CURVE clients against the allow-list (nil without CURVE).
    let zap: ZAPHandler?
    var scheduler: Scheduler<SlotPayload>
    let clock = ContinuousClock()
    let started: ContinuousClock.Instant
    var tasks: (iteration: Int, specs: [TaskSpec]) = (-1, [])
    var lastCheckpoint: Int
    var finished = false
    let evaluation: PeriodicEvaluation
    let divergence: DivergenceCheck
    /// Every metrics.jsonl scalar and the periodic meta-eval returns, for TensorBoard (RUN_DIR/tensorboard).
    let tensorBoard: TensorBoardWriter
    // Per-iteration metrics.
    var bytesSent = 0, bytesReceived = 0, messagesIn = 0, messagesOut = 0
    var iterationStarted: ContinuousClock.Instant
    var busy: Duration = .zero
    /// The jobs of outstanding eval requests, by request number and job index (the scheduler only
    /// tracks their status); and the outcome being handled, until the scheduler says where it goes.
    var evalJobs: [Int: [Int: AdaptationJob]] = [:]
    /// Request numbers start from the clock, so a restarted coordinator never reuses the number of a
    /// request whose late outcomes may still arrive from workers (they would be taken for another job's).
    var nextEvalRequest = Int(UInt64(Date().timeIntervalSince1970 * 1000) % (1 << 30)) + 1
    var inboundOutcome: EvalOutcome?

    /// Sets up a fresh run in `runDirectory`, or resumes the newest valid checkpoint there.
    /// With `serve`, the coordinator stays up after the last meta-iteration to run eval requests
    /// (`metatrain eval --coordinator`) on its workers until it is stopped by a signal.
    /// `forceNumerics`: on resume, adopt the first worker's fingerprint instead of the checkpoint's.
    public init(config: ClusterConfig, runDirectory: String, resume: Bool, forceConfig: Bool = false, serve: Bool = false,
                forceNumerics: Bool = false, context: ZMQContext, stop: StopFlag, logger: Logger) throws {
        self.config = config
        self.runDirectory = runDirectory
        self.logger = logger
        self.stop = stop
        store = CheckpointStore(runDirectory: runDirectory, keepLast: config.run.keepLast)
        let numerics: RunNumerics
        if resume {
            let found = try store.newestValid(settings: config.meta, configHash: forceConfig ? nil : config.hash,
                                              runID: CheckpointStore.recordedRunID(runDirectory: runDirectory))
            for problem in found.skipped { logger.warning("skipped checkpoint: \(problem)") }
            logger.info("resuming \(found.record.runID) from \(found.path) (iteration \(found.record.state.iteration), θ \(parametersSHA256(found.record.state.theta).prefix(16))…)")
            runID = found.record.runID
            state = found.record.state
            numerics = Self.resumedNumerics(found.record.numerics, policy: config.numerics, force: forceNumerics, logger: logger)
        } else {
            if !store.files().isEmpty {
                throw CheckpointError.io(path: runDirectory, reason: "already holds checkpoints: resume it with --resume, or choose another run name or folder")
            }
            runID = "\(config.run.name)-\(String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36))-\(getpid())"
            state = MetaState(theta: try Self.initialParameters(config), settings: config.meta)
            numerics = RunNumerics(policy: config.numerics)
        }
        if numerics.policy == .any {
            logger.warning("numerics: any — workers with other kernels or CPUs are accepted, so this run is not bit-reproducible")
        }
        lastCheckpoint = resume ? state.iteration : -1
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        if !resume { try CheckpointStore.recordRunID(runID, runDirectory: runDirectory) }
        // The settings next to the checkpoints (`metatrain eval` reads them from here); a resume rewrites
        // them, since a run continued under --force-config goes on with the new ones.
        if !config.sourceText.isEmpty {
            try Data(config.sourceText.utf8).write(to: URL(fileURLWithPath: (runDirectory as NSString).appendingPathComponent("config.yaml")), options: .atomic)
        }
        tensorBoard = try TensorBoardWriter(directory: (runDirectory as NSString).appendingPathComponent("tensorboard"))
        evaluation = PeriodicEvaluation(config: config, runDirectory: runDirectory, logger: logger, tensorBoard: tensorBoard)
        divergence = DivergenceCheck(logger: logger)

        socket = try context.socket(.router)
        try socket.setRouterMandatory()
        try socket.setMaxMessageSize(Int64(config.coordinator.maxMessageBytes))
        try socket.setHighWaterMarks(send: 1000, receive: Int32(config.coordinator.receiveHighWaterMark))
        if config.security.curve {
            let keys = try KeyFiles.readPair(config.security.coordinatorKey)
            let allowed = try config.security.allowedWorkers.map(KeyFiles.readPublic)
            let handler = try ZAPHandler(context: context, allowedPublicKeys: allowed)
            handler.onDecision = { key, address, ok in
                if ok { logger.info("CURVE: admitted \(key.prefix(8))… from \(address)") }
                else { logger.warning("CURVE: refused \(key.prefix(8))… from \(address): not on the allow-list") }
            }
            zap = handler
            try socket.makeCurveServer(secretKey: keys.secretKey)
            logger.info("CURVE on: \(allowed.count) worker key(s) allowed")
        } else {
            zap = nil
        }
        try socket.bind(config.coordinator.bind)
        endpoint = try socket.lastEndpoint()
        advertised = Self.advertisedEndpoint(bound: endpoint, advertise: config.coordinator.advertise)
        // Where workers (`--connect-file`), tools and tests find this coordinator: what other machines can connect
        // to, with the port actually bound. Replaced atomically at every start (a resumed run's old file names a
        // dead port), removed at exit; a folder we cannot write to is an error here, before any checkpoint fails.
        try Data((advertised + "\n").utf8).write(to: URL(fileURLWithPath: (runDirectory as NSString).appendingPathComponent("coordinator.endpoint")),
                                                options: .atomic)
        if zap == nil && !(endpoint.hasPrefix("tcp://127.") || endpoint.hasPrefix("tcp://localhost") || endpoint.hasPrefix("tcp://[::1]")) {
            logger.warning("bound to \(endpoint), reachable from other machines, without encryption: anyone who can reach it can join the run")
        }
        var settings = SchedulerSettings(
            runID: runID, iterations: config.meta.iterations, metaBatch: config.meta.metaBatch,
            heartbeatIntervalMs: config.coordinator.heartbeatIntervalMs, liveness: config.coordinator.liveness,
            checkpointInterval: config.run.checkpointInterval)
        settings.backupAfterMedianMultiple = config.coordinator.backupAfterMedian > 0 ? config.coordinator.backupAfterMedian : nil
        settings.incarnation = "c\(String(UInt64(Date().timeIntervalSince1970 * 1000) % 1_000_000_007, radix: 36))"
        settings.serve = serve
        settings.slotTimeoutMs = Int64(config.slotTimeoutMs)
        settings.evalTimeoutMs = Int64(config.coordinator.evalTimeoutMs)
        scheduler = try Scheduler(settings: settings, startIteration: state.iteration, numerics: numerics)
        started = clock.now
        iterationStarted = started
    }

    /// The endpoint to tell workers for a bound endpoint: a wildcard host (0.0.0.0, *, [::]) is no address anyone
    /// can connect to, so it becomes `advertise`'s host when that names one, else this machine's host name; the
    /// port is always the one actually bound.
    public static func advertisedEndpoint(bound: String, advertise: String) -> String {
        func split(_ e: String) -> (host: String, port: String)? {
            guard e.hasPrefix("tcp://"), let colon = e.lastIndex(of: ":"), colon > e.index(e.startIndex, offsetBy: 6) else { return nil }
            return (String(e[e.index(e.startIndex, offsetBy: 6)..<colon]), String(e[e.index(after: colon)...]))
        }
        let wildcards: Set<String> = ["0.0.0.0", "*", "[::]", "::", "[*]"]
        guard let b = split(bound), wildcards.contains(b.host) else { return bound }
        if let a = split(advertise), !wildcards.contains(a.host), !a.host.isEmpty { return "tcp://\(a.host):\(b.port)" }
        return "tcp://\(ProcessInfo.processInfo.hostName):\(b.port)"
    }

    /// The numerics a resumed run holds workers to: the checkpoint's fingerprint under the same policy, unless
    /// `force` (then the first worker sets it anew) or the policy changed (a forced config: the old fingerprint
    /// was of another kind).
    static func resumedNumerics(_ saved: RunNumerics?, policy: NumericsPolicy, force: Bool, logger: Logger) -> RunNumerics {
        guard let saved, let fingerprint = saved.fingerprint else { return RunNumerics(policy: policy) }
        if force {
            logger.warning("--force-numerics: not holding workers to the checkpoint's fingerprint \(fingerprint) (kernel \(saved.kernel), CPU \(saved.cpu)); the first worker sets the run's anew, so θ from here on may differ from an uninterrupted run's")
            return RunNumerics(policy: policy)
        }
        guard saved.policy == policy else {
            logger.warning("numerics changed from \(saved.policy.rawValue) to \(policy.rawValue): the first worker sets the run's fingerprint anew, so θ from here on may differ from an uninterrupted run's")
            return RunNumerics(policy: policy)
        }
        logger.info("holding workers to the checkpoint's numerics (\(policy.rawValue)): fingerprint \(fingerprint), kernel \(saved.kernel), CPU \(saved.cpu)")
        return saved
    }

    /// θ₀: the network for the family's tasks, initialised from the run seed.
    public static func initialParameters(_ config: ClusterConfig) throws -> ParameterVector {
        var rng = SeededRNG(seed: deriveSeed(config.run.seed, iteration: 0, slot: 0, purpose: .taskSample))
        let task = try config.family.sample(using: &rng)
        let mlp = try makeNetwork(for: task, config: config.innerLoop.dqn)
        var initRNG = SeededRNG(seed: deriveSeed(config.run.seed, iteration: 0, slot: 0, purpose: .networkInit))
        return mlp.initialParameters(using: &initRNG)
    }

    /// The task of slot `slot` in meta-iteration `iteration`: a pure function of the run seed.
    public static func task(_ config: ClusterConfig, iteration: Int, slot: Int) throws -> TaskSpec {
        try trainingTask(config.family, runSeed: config.run.seed, iteration: iteration, slot: slot)
    }

    var now: Tick { Tick((clock.now - started) / .milliseconds(1)) }

    /// Runs until the last meta-iteration is applied or a stop signal arrives.
    public func run() throws -> CoordinatorSummary {
        // Gone with this coordinator (however run() ends), so nobody connects to a dead port from it. A SIGKILL
        // leaves it; the next start of the run replaces it.
        defer {
            do { try FileManager.default.removeItem(atPath: endpointFile) } catch {
                logger.debug("could not remove \(endpointFile): \(error)")
            }
        }
        logger.info("coordinator \(runID) listening on \(endpoint)\(advertised == endpoint ? "" : " (workers connect to \(advertised))"); iterations \(state.iteration)..<\(config.meta.iterations), meta-batch \(config.meta.metaBatch), \(config.meta.algorithm.rawValue)")
        if scheduler.isDone { finished = true }
        if scheduler.isFinished && config.meta.iterations > 0 && !finished {
            logger.info("training is complete (iteration \(state.iteration)): serving eval requests until stopped")
        }
        if state.iteration == 0 && evaluation.isDue(0) { evaluation.start(iteration: 0, theta: state.theta) }
        writeStatus(state: scheduler.isFinished ? "training finished" : "running")
        defer { writeStatus(state: stop.isSet ? "stopped" : "exited") }
        let pollMs = max(5, min(50, config.coordinator.heartbeatIntervalMs / 4))
        while !finished {
            if stop.isSet {
                try shutdown(reason: "coordinator stopping (signal)")
                return summary(interrupted: true)
            }
            let ready = try ZMQPoller.poll([socket] + (zap.map { [$0.socket] } ?? []), timeoutMs: pollMs)
            let t0 = clock.now
            if ready.count > 1 && ready[1] { try zap?.answer() }
            if ready[0] {
                var drained = 0
                while drained < 10_000, let frames = try socket.receive() {
                    drained += 1
                    try receive(frames)
                    if finished { break }
                }
            }
            for (key, found) in divergence.takeFinished() {
                try execute(scheduler.handle(.divergenceChecked(key, diverged: found), now: now))
            }
            try execute(scheduler.handle(.tick, now: now))
            busy += clock.now - t0
        }
        if lastCheckpoint != state.iteration { try checkpoint() }
        evaluation.finish(iteration: state.iteration, theta: state.theta)
        return summary(interrupted: false)
    }

    func summary(interrupted: Bool) -> CoordinatorSummary {
        CoordinatorSummary(runID: runID, runDirectory: runDirectory, iterations: state.iteration, theta: state.theta,
                           paramsSHA256: parametersSHA256(state.theta), interrupted: interrupted, counters: scheduler.counters)
    }

    /// Final checkpoint, goodbye to every worker.
    func shutdown(reason: String) throws {
        logger.info("\(reason): writing a final checkpoint and telling \(scheduler.workerCount) worker(s) to stop")
        if lastCheckpoint != state.iteration { try checkpoint() }
        for peer in scheduler.peers + scheduler.clientPeers { send(peer, .goodbye(reason: reason)) }
    }

    // MARK: - Inbound

    func receive(_ frames: [[UInt8]]) throws {
        messagesIn += 1
        guard frames.count == 2 else {
            logger.warning("dropped a message of \(frames.count) frames (expected identity + payload)")
            if let id = frames.first {
                try execute(scheduler.handle(.malformed(Peer(id), "expected one payload frame, got \(frames.count - 1)", code: .malformed), now: now))
            }
            return
        }
        let peer = Peer(frames[0])
        bytesReceived += frames[1].count
        let event: SchedulerEvent<SlotPayload>
        do {
            event = try self.event(peer, WireCodec.decode(frames[1]))
        } catch {
            let code: ErrorCode
            if case .protocolVersion = error { code = .protocolVersion } else { code = .malformed }
            event = .malformed(peer, "\(error)", code: code)
        }
        defer { inboundOutcome = nil }
        try execute(scheduler.handle(event, now: now))
    }

    func event(_ peer: Peer, _ message: Message) -> SchedulerEvent<SlotPayload> {
        switch message {
        case .hello(let h): return .hello(peer, h)
        case .heartbeat(let envSteps): return .heartbeat(peer, envSteps: envSteps)
        case .goodbye: return .goodbye(peer)
        case .result(let r):
            guard r.update.count == state.theta.count else {
                return .invalidResult(peer, r.key, "update has \(r.update.count) values; θ has \(state.theta.count)")
            }
            // Finite is checked by the decoder; this bound keeps a finite-but-absurd update from overflowing θ.
            // An honest worker checks the same bound and reports `.diverged` instead, so this is a strike.
            if let problem = r.update.divergence { return .invalidResult(peer, r.key, problem) }
            return .result(peer, runID: r.runID, key: r.key, parameterVersion: r.parameterVersion,
                           payload: SlotPayload(update: r.update, statistics: r.statistics))
        case .error(let e):
            switch (e.code, e.key) {
            case (.parametersMissing, let key?): return .parametersMissing(peer, key)
            case (.taskFailed, let key?): return .taskFailed(peer, key, e.message)
            case (.diverged, let key?): return .slotDiverged(peer, key, e.message)
            default:
                logger.info("worker error reply (\(e.code)): \(e.message)")
                return .heartbeat(peer)
            }
        case .evalRequest(let r):
            return evalRequest(peer, r)
        case .evalOutcome(let o):
            if let error = o.error { return .evalFailed(peer, o.key, error) }
            guard let job = evalJobs[o.key.request]?[o.key.job] else {
                // Its request completed or was abandoned: the scheduler counts it as dropped.
                return .evalOutcome(peer, o.key)
            }
            if let problem = job.mismatch(o.outcome) { return .evalFailed(peer, o.key, "outcome does not fit the job: \(problem)") }
            inboundOutcome = o
            return .evalOutcome(peer, o.key)
        case .welcome, .assignment, .evalJob:
            return .malformed(peer, "a worker must not send \(message.kind)", code: .malformed)
        }
    }

    /// Checks an eval request's jobs and numbers it.
    ///
    /// The decoder has checked each job (`AdaptationJob.validate`); here it must also fit this run's workers: this run's network shape, a
    /// replay buffer no larger than the run's (or the job's budget) and a batch no larger than 4096, so
    /// no client can hand out a job that exhausts a worker's memory.
    func evalRequest(_ peer: Peer, _ r: EvalRequest) -> SchedulerEvent<SlotPayload> {
        let run = config.innerLoop.dqn
        for (index, job) in r.jobs {
            do {
                guard job.initial.count == state.theta.count, job.dqn.hiddenLayers == run.hiddenLayers else {
                    throw EvaluationError.invalid("its network (\(job.dqn.hiddenLayers), \(job.initial.count) parameters) is not this run's (\(run.hiddenLayers), \(state.theta.count))")
                }
                guard job.dqn.bufferCapacity <= max(run.bufferCapacity, job.budget), job.dqn.batchSize <= 4096 else {
                    throw EvaluationError.invalid("replay buffer \(job.dqn.bufferCapacity) or batch \(job.dqn.batchSize) is larger than this run allows")
                }
            } catch {
                return .malformed(peer, "eval request \(r.requestID) job \(index): \(error)", code: .malformed)
            }
        }
        let number = nextEvalRequest
        nextEvalRequest += 1
        evalJobs[number] = Dictionary(uniqueKeysWithValues: r.jobs.map { ($0.index, $0.job) })
        logger.info("eval request \(r.requestID) numbered \(number): \(r.jobs.count) job(s)")
        return .evalRequest(peer, request: number, jobs: r.jobs.map(\.index))
    }

    // MARK: - Commands

    func execute(_ commands: [SchedulerCommand<SlotPayload>]) throws {
        for command in commands {
            switch command {
            case let .send(peer, outbound):
                try send(peer, outbound)
            case .forget:
                break
            case let .applyMetaUpdate(iteration, payloads):
                try apply(iteration: iteration, payloads: payloads)
            case .writeCheckpoint:
                try checkpoint()
            case let .log(level, text):
                switch level {
                case .debug: logger.debug("\(text)")
                case .info: logger.info("\(text)")
                case .warning: logger.warning("\(text)")
                case .error: logger.error("\(text)")
                }
            case .finished:
                finished = true
            case .abort(let reason):
                // θ has not taken the failing iteration's update: it is the last good one, checkpointed here.
                let advice = "θ after \(state.iteration) meta-updates is checkpointed; lower meta.outer_step (now \(config.meta.outerStep)) or inner_loop.learning_rate (now \(config.innerLoop.dqn.learningRate)), then continue with --resume --force-config"
                logger.error("\(reason); \(advice)")
                try shutdown(reason: "run stopped: \(reason)")
                throw ClusterError.aborted("\(reason); \(advice)")
            case let .confirmDivergence(key, reason):
                divergence.confirm(key, reported: reason, theta: state.theta, config: config, numerics: scheduler.numerics.policy)
            case let .forwardEvalOutcome(client, key):
                if let outcome = inboundOutcome, outcome.key == key { send(client, .evalOutcome(outcome)) }
            case .forgetEvalRequest(let number):
                evalJobs[number] = nil
            }
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
        case .goodbye(let reason): message = .goodbye(reason: reason)
        case .evalJob(let key):
            guard let job = evalJobs[key.request]?[key.job] else {
                logger.error("internal: no job content for \(key)")
                return
            }
            message = .evalJob(EvalJobMessage(key: key, job: job))
        case let .assign(key, includeParameters):
            if tasks.iteration != key.iteration {
                tasks = (key.iteration, try (0..<config.meta.metaBatch).map { try Self.task(config, iteration: key.iteration, slot: $0) })
            }
            message = .assignment(Assignment(
                runID: runID, key: key, task: tasks.specs[key.slot], innerLoop: config.innerLoop,
                algorithm: config.meta.algorithm,
                seed: slotSeed(runSeed: config.run.seed, iteration: key.iteration, slot: key.slot),
                parameterVersion: state.iteration, parameters: includeParameters ? state.theta : nil))
        }
        send(peer, message)
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

    func apply(iteration: Int, payloads: [SlotPayload]) throws {
        guard iteration == state.iteration else {
            throw ClusterError.aborted("internal: the scheduler applied iteration \(iteration) while θ is at \(state.iteration)")
        }
        state.apply(updates: payloads.map(\.update), settings: config.meta)
        guard state.theta.isFinite else { throw ClusterError.aborted("θ became non-finite after iteration \(iteration)") }
        if evaluation.isDue(state.iteration) { evaluation.start(iteration: state.iteration, theta: state.theta) }
        let seconds = (clock.now - iterationStarted) / .seconds(1)
        let meanReturn = payloads.map(\.statistics.meanReturn).reduce(0, +) / Double(payloads.count)
        let busySeconds = busy / .seconds(1)
        let line: [String: Any] = [
            "iteration": iteration, "mean_inner_return": meanReturn, "workers": scheduler.workerCount,
            "seconds": seconds, "slots_per_second": Double(payloads.count) / max(seconds, 1e-9),
            "bytes_sent": bytesSent, "bytes_received": bytesReceived, "messages_received": messagesIn,
            "messages_sent": messagesOut,
            "coordinator_busy_seconds": busySeconds, "parameters": state.theta.count,
            "slots_applied": scheduler.counters.slotsApplied, "duplicates_dropped": scheduler.counters.duplicatesDropped,
            "stale_dropped": scheduler.counters.staleDropped, "requeued": scheduler.counters.requeued,
            "workers_declared_dead": scheduler.counters.workersDeclaredDead,
            "parameter_transfers": scheduler.counters.parameterTransfers, "backups_sent": scheduler.counters.backupsSent,
            "params_sha256": parametersSHA256(state.theta),
            "numerics_policy": scheduler.numerics.policy.rawValue,
            "numerics_fingerprint": scheduler.numerics.fingerprint ?? "",
            "numerics_kernel": scheduler.numerics.kernel,
        ]
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        var withResources = line
        withResources["coordinator_cpu_seconds"] = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
        withResources["coordinator_max_rss_kb"] = usage.ru_maxrss
        appendMetrics(withResources)
        let scalars = withResources.compactMap { key, value -> (String, Double)? in
            guard key != "iteration", let number = value as? NSNumber, !(value is Bool) else { return nil }
            return ("metrics/\(key)", number.doubleValue)
        }.sorted { $0.0 < $1.0 }
        do { try tensorBoard.add(step: iteration, scalars: scalars) } catch {
            logger.error("could not write TensorBoard events to \(tensorBoard.path): \(error)")
        }
        recentIterationSeconds.append(seconds)
        if recentIterationSeconds.count > 10 { recentIterationSeconds.removeFirst() }
        let eta = recentIterationSeconds.reduce(0, +) / Double(recentIterationSeconds.count) * Double(max(config.meta.iterations - state.iteration, 0))
        logger.info("\(String(format: "iteration %4d/%d  mean inner return %8.2f  workers %3d  %6.2f slots/s  sent %8d B  busy %.3f s  ETA %@", iteration + 1, config.meta.iterations, meanReturn, scheduler.workerCount, Double(payloads.count) / max(seconds, 1e-9), bytesSent, busySeconds, formatDuration(eta)))")
        writeStatus(state: state.iteration >= config.meta.iterations ? "training finished" : "running")
        bytesSent = 0; bytesReceived = 0; messagesIn = 0; messagesOut = 0; busy = .zero
        iterationStarted = clock.now
    }

    func appendMetrics(_ line: [String: Any]) {
        // A non-finite value (a diverging mean return) would make the line unencodable: null it, keep the line.
        let finite = line.mapValues { value -> Any in
            if let d = value as? Double, !d.isFinite { return NSNull() }
            return value
        }
        do {
            let data = try JSONSerialization.data(withJSONObject: finite, options: [.sortedKeys])
            try appendLine(data, to: (runDirectory as NSString).appendingPathComponent("metrics.jsonl"))
        } catch {
            logger.error("could not append to metrics.jsonl: \(error)")
        }
    }

    /// Seconds each of the last (up to 10) meta-iterations took, for the ETA.
    var recentIterationSeconds: [Double] = []
    var lastCheckpointUnixMs: UInt64?

    /// Writes RUN_DIR/status.json (atomically) for `metatrain status`: progress, ETA, throughput, workers,
    /// the last checkpoint. A failure is logged, never fatal.
    func writeStatus(state phase: String) {
        let mean = recentIterationSeconds.isEmpty ? nil : recentIterationSeconds.reduce(0, +) / Double(recentIterationSeconds.count)
        let left = max(config.meta.iterations - state.iteration, 0)
        let nowMs = UInt64(Date().timeIntervalSince1970 * 1000)
        let workers: [[String: Any]] = scheduler.workerStatus.map {
            ["id": $0.id, "host": $0.host, "threads": $0.threads, "busy": $0.busy, "slots_done": $0.slotsDone,
             "suspected": $0.suspected, "last_heard_ms_ago": max(now - $0.lastHeard, 0), "env_steps": $0.envSteps]
        }
        var status: [String: Any] = [
            "run_id": runID, "state": phase, "iteration": state.iteration, "iterations": config.meta.iterations,
            "meta_batch": config.meta.metaBatch, "workers": workers, "updated_unix_ms": nowMs, "endpoint": advertised,
            "params_sha256": parametersSHA256(state.theta),
        ]
        if let mean {
            status["seconds_per_iteration"] = mean
            status["slots_per_second"] = Double(config.meta.metaBatch) / max(mean, 1e-9)
            status["eta_seconds"] = mean * Double(left)
        }
        if let ms = lastCheckpointUnixMs { status["last_checkpoint"] = ["iteration": lastCheckpoint, "unix_ms": ms] }
        do {
            let data = try JSONSerialization.data(withJSONObject: status, options: [.sortedKeys, .prettyPrinted])
            try data.write(to: URL(fileURLWithPath: (runDirectory as NSString).appendingPathComponent("status.json")), options: .atomic)
        } catch {
            logger.error("could not write status.json: \(error)")
        }
    }

    func checkpoint() throws {
        let record = CheckpointRecord(runID: runID, algorithm: config.meta.algorithm, runSeed: config.run.seed,
                                      configHash: config.hash, state: state,
                                      createdUnixMs: UInt64(Date().timeIntervalSince1970 * 1000),
                                      numerics: scheduler.numerics)
        let path = try store.write(record)
        lastCheckpoint = state.iteration
        lastCheckpointUnixMs = UInt64(Date().timeIntervalSince1970 * 1000)
        logger.info("checkpoint \(path) (iteration \(state.iteration), θ \(parametersSHA256(state.theta).prefix(16))…)")
    }
}

/// 3725 s → "1h02m", 185 s → "3m05s", 12.4 s → "12s".
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, s % 3600 / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}

/// Errors that end a cluster process.
public enum ClusterError: Error, CustomStringConvertible {
    case aborted(String)
    /// A worker could not produce a usable result for a slot.
    case slotFailed(String)
    public var description: String {
        switch self {
        case .aborted(let r): return "run aborted: \(r)"
        case .slotFailed(let r): return r
        }
    }
}
