import ClusterCore
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
    let folder: RunFolder
    public let runID: String
    public internal(set) var state: MetaState
    /// The endpoint actually bound (a wildcard port resolved).
    public private(set) var endpoint: String
    /// What workers connect to: `endpoint` with a wildcard host replaced (see `advertisedEndpoint`).
    public private(set) var advertised: String
    let logger: Logger
    let stop: StopFlag
    let store: CheckpointStore
    let socket: ZMQSocket
    /// Authenticates CURVE clients against the allow-list (nil without CURVE).
    let zap: ZAPHandler?
    var scheduler: Scheduler<SlotPayload>
    let clock = ContinuousClock()
    let started: ContinuousClock.Instant
    /// The tasks of the iterations being handed out (two in a pipelined run), the newest last.
    var tasks: [(iteration: Int, specs: [TaskSpec])] = []
    /// The current iteration's updates folded so far (`fold`); iteration −1 before the first.
    var folded = IterationFold(iteration: -1, keepsUpdates: false)
    var lastCheckpoint: Int
    var finished = false
    let evaluation: PeriodicEvaluation
    let divergence: DivergenceCheck
    /// Every metrics.jsonl scalar and the periodic meta-eval returns, for TensorBoard (RUN_DIR/tensorboard).
    let tensorBoard: TensorBoardWriter
    // Per-iteration metrics.
    var bytesSent = 0, bytesReceived = 0, messagesIn = 0, messagesOut = 0
    /// Of `bytesSent`, the shared tensor frames (θ and eval parameters).
    var tensorBytesSent = 0
    /// Tensor fields encoded since the start: once per θ version sent and per distinct eval θ, never per worker.
    var tensorEncodings = 0
    /// θ as a frame every assignment that carries its version shares: the current version, and a pipelined run's
    /// previous one (the newest last).
    var thetaFrames: [(version: Int, tensor: SharedTensor)] = []
    var iterationStarted: ContinuousClock.Instant
    var busy: Duration = .zero
    /// The applied iteration whose record `writeProgress` has yet to write, and the time spent writing records so far.
    var pendingProgress: PendingProgress?
    var bookkeeping: Duration = .zero
    /// The jobs of outstanding eval requests, by request number and job index (the scheduler only
    /// tracks their status); and the outcome being handled, until the scheduler says where it goes.
    var evalJobs: [Int: [Int: AdaptationJob]] = [:]
    /// Each job's initial parameters as a shared frame, one per distinct vector of its request.
    var evalTensors: [Int: [Int: SharedTensor]] = [:]
    /// Accepted eval requests whose jobs the shell could not hold (no memory for their frames): their client is dropped.
    var unheldRequests: Set<Int> = []
    /// Seconds each of the last (up to 10) meta-iterations took, for the ETA.
    var recentIterationSeconds: [Double] = []
    var lastCheckpointUnixMs: UInt64?
    /// What the run is doing, for status.json and status requests ("running", "training finished", …).
    var phase = "starting"
    /// When status.json was last written, and the longest it goes unwritten while the run's phase stays the same.
    var statusWritten: ContinuousClock.Instant?
    static let statusInterval: Duration = .seconds(1)
    /// status.json is rewritten at least this often while the coordinator runs, progress or not, so its age tells a
    /// reader whether anyone still writes it.
    static let statusRefresh: Duration = .seconds(5)
    /// The iteration and worker count status.json last showed: when either moved on (an iteration whose write was
    /// throttled, a worker that joined or left), the main loop rewrites it once `statusInterval` has passed, so the
    /// file lags the run by about a second, never by `statusRefresh`.
    var statusShown: (iteration: Int, workers: Int)?
    /// Whether any slot was handed out yet by this process: the first iteration's time (and the ETA) counts from then,
    /// not from a start spent waiting for workers.
    var assignedYet = false
    /// θ's SHA-256 for one version (`thetaSHA256`).
    var thetaHash: (iteration: Int, sha256: String)?

    /// Sets up a fresh run in `runDirectory`, or resumes the newest valid checkpoint there.
    /// With `serve`, the coordinator stays up after the last meta-iteration to run eval requests
    /// (`metatrain eval --coordinator`) on its workers until it is stopped by a signal.
    /// `forceNumerics`: on resume, adopt the first worker's fingerprint instead of the checkpoint's.
    public init(config: ClusterConfig, runDirectory: String, resume: Bool, forceConfig: Bool = false, serve: Bool = false,
                forceNumerics: Bool = false, context: ZMQContext, stop: StopFlag, logger: Logger) throws {
        self.config = config
        self.runDirectory = runDirectory
        folder = RunFolder(runDirectory)
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
            if config.meta.isPipelined && state.previousTheta == nil {
                // Written by a run that was not pipelined (resumed with --force-config): there is no θ one version back,
                // so the current iteration's slots adapt θ itself this once.
                logger.warning("the checkpoint holds no previous θ (its run was not pipelined): iteration \(state.iteration)'s slots adapt θ \(state.iteration) instead of \(max(state.iteration - 1, 0))")
                state.previousTheta = state.theta
            } else if !config.meta.isPipelined {
                state.previousTheta = nil
            }
            numerics = Self.resumedNumerics(found.record.numerics, policy: config.numerics, force: forceNumerics, logger: logger)
        } else {
            if !store.files().isEmpty {
                throw CheckpointError.io(path: runDirectory, reason: "already holds checkpoints: resume it with --resume, or choose another run name or folder")
            }
            runID = "\(config.run.name)-\(String(UInt64(Date().timeIntervalSince1970 * 1000), radix: 36))-\(getpid())"
            state = MetaState(theta: try config.initialParameters(), settings: config.meta)
            numerics = RunNumerics(policy: config.numerics)
        }
        if numerics.policy == .any {
            logger.warning("numerics: any — workers with other kernels or CPUs are accepted, so this run is not bit-reproducible")
        }
        lastCheckpoint = resume ? state.iteration : -1
        try folder.create()
        if !resume { try CheckpointStore.recordRunID(runID, runDirectory: runDirectory) }
        // The settings next to the checkpoints (`metatrain eval` reads them from here); a resume rewrites
        // them, since a run continued under --force-config goes on with the new ones.
        if !config.sourceText.isEmpty { try folder.writeConfig(config.sourceText) }
        // A resumed run continues from the checkpoint: what an earlier incarnation wrote after it (metrics lines,
        // TensorBoard steps) is dropped, or a crash-resume would list those iterations twice.
        if resume { try folder.dropMetrics(fromIteration: state.iteration) }
        tensorBoard = try TensorBoardWriter(directory: folder.tensorBoard, restartStep: resume ? state.iteration + 1 : nil)
        evaluation = PeriodicEvaluation(config: config, runDirectory: runDirectory, logger: logger, tensorBoard: tensorBoard)
        divergence = DivergenceCheck(logger: logger)

        socket = try context.socket(.router)
        try socket.setRouterMandatory()
        try socket.setMaxMessageSize(Int64(config.coordinator.maxMessageBytes))
        try socket.setHighWaterMarks(send: ClusterLimits.sendHighWaterMark, receive: Int32(config.coordinator.receiveHighWaterMark))
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
        try folder.writeEndpoint(advertised)
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
        settings.pipelined = config.meta.isPipelined
        settings.holdsEnvironment = config.family.usesEnvironmentServers
        // Request numbers start from the clock, so a restarted coordinator never reuses the number of a request whose
        // late outcomes may still arrive from workers (they would be taken for another job's).
        settings.firstEvalRequest = Int(UInt64(Date().timeIntervalSince1970 * 1000) % (1 << 30)) + 1
        scheduler = try Scheduler(settings: settings, startIteration: state.iteration, numerics: numerics)
        started = clock.now
        iterationStarted = started
    }

    /// The endpoint to tell workers for a bound endpoint: a wildcard host (0.0.0.0, *, [::]) is no address anyone
    /// can connect to, so it becomes `advertise`'s host when that names one other machines can use, else this machine's
    /// host name; the port is always the one actually bound. A loopback `advertise` (127.x, localhost, ::1) with a
    /// wildcard bind is the default config's, not a choice: a coordinator bound for other machines (Slurm's
    /// `--bind tcp://0.0.0.0:*`) must not send their workers to themselves (issue 38).
    public static func advertisedEndpoint(bound: String, advertise: String) -> String {
        func split(_ e: String) -> (host: String, port: String)? {
            guard e.hasPrefix("tcp://"), let colon = e.lastIndex(of: ":"), colon > e.index(e.startIndex, offsetBy: 6) else { return nil }
            return (String(e[e.index(e.startIndex, offsetBy: 6)..<colon]), String(e[e.index(after: colon)...]))
        }
        let wildcards: Set<String> = ["0.0.0.0", "*", "[::]", "::", "[*]"]
        guard let b = split(bound), wildcards.contains(b.host) else { return bound }
        if let a = split(advertise), !wildcards.contains(a.host), !a.host.isEmpty, !isLoopback(a.host) { return "tcp://\(a.host):\(b.port)" }
        return "tcp://\(ProcessInfo.processInfo.hostName):\(b.port)"
    }

    /// Whether `host` names this machine's loopback interface only.
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host.hasPrefix("127.") || host == "[::1]" || host == "::1"
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

    var now: Tick { Tick((clock.now - started) / .milliseconds(1)) }

    /// Runs until the last meta-iteration is applied or a stop signal arrives.
    public func run() throws -> CoordinatorSummary {
        // Gone with this coordinator (however run() ends), so nobody connects to a dead port from it. A SIGKILL
        // leaves it; the next start of the run replaces it.
        defer {
            do { try folder.removeEndpoint() } catch {
                logger.debug("could not remove \(folder.endpoint): \(error)")
            }
        }
        logger.info("coordinator \(runID) listening on \(endpoint)\(advertised == endpoint ? "" : " (workers connect to \(advertised))"); iterations \(state.iteration)..<\(config.meta.iterations), meta-batch \(config.meta.metaBatch), \(config.meta.algorithm.rawValue)\(config.meta.isPipelined ? ", pipelined" : "")")
        // Updates that arrive ahead of an earlier slot wait in memory until it comes (`Scheduler.fold`): at worst an
        // iteration's meta-batch of them, and a few more (backups of stragglers, the frames being decoded). Keep that
        // much free heap for the next iteration instead of returning it to the system (`MessageAllocator.keepFree`);
        // it is a ceiling on what is kept, not memory taken.
        // A pipelined run also keeps the next iteration's early updates: up to two meta-batches.
        let held = config.meta.metaBatch * (config.meta.isPipelined ? 2 : 1) + 4
        let (updateBytes, overflow) = held.multipliedReportingOverflow(by: state.theta.count * 4)
        MessageAllocator.keepFree(overflow ? Int.max : updateBytes, environment: ProcessInfo.processInfo.environment)
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
                // Stopped mid-run (preemption, eviction, Ctrl-C), the run goes on under a restarted coordinator and
                // its workers wait for it; a run whose training is over (serving eval requests) sends them away.
                if scheduler.isFinished {
                    try shutdown(reason: "coordinator stopping (signal)")
                } else {
                    try shutdown(reason: "coordinator stopping (signal); the run resumes from its checkpoint", resumable: true)
                }
                return summary(interrupted: true)
            }
            let ready = try ZMQPoller.poll([socket] + (zap.map { [$0.socket] } ?? []), timeoutMs: pollMs)
            let t0 = clock.now
            if ready.count > 1 && ready[1] { try zap?.answer() }
            if ready[0] {
                var drained = 0
                while drained < ClusterLimits.maxMessagesPerPoll, let frames = try socket.receiveFrames() {
                    drained += 1
                    try receive(frames)
                    if finished { break }
                }
            }
            for (key, found) in divergence.takeFinished() {
                try execute(scheduler.handle(.divergenceChecked(key, found), now: now))
            }
            try execute(scheduler.handle(.tick, now: now))
            if let written = statusWritten {
                let behind = statusShown.map { $0 != (state.iteration, scheduler.workerCount) } ?? true
                if clock.now - written >= (behind ? Self.statusInterval : Self.statusRefresh) { writeStatus(state: phase) }
            }
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

    /// Goodbye to every worker and client, then a final checkpoint.
    ///
    /// `resumable` (a stop signal) tells workers the run goes on under a restarted coordinator, so they reconnect
    /// rather than exit (issue 38, item 4); otherwise (the run stopped for an error) they stop. The goodbyes go first:
    /// a checkpoint that fails (a full disk) must not leave welcomed workers retrying a coordinator that is gone
    /// (issue 39, defect 4) — so a failed checkpoint is thrown, the caller names both, and a resumable goodbye is
    /// sent only after the checkpoint it promises is written.
    func shutdown(reason: String, resumable: Bool = false) throws {
        let peers = scheduler.peers + scheduler.clientPeers
        if resumable {
            logger.info("\(reason): writing a final checkpoint, then telling \(scheduler.workerCount) worker(s) to wait for a restarted coordinator")
            do {
                if lastCheckpoint != state.iteration { try checkpoint() }
            } catch {
                for peer in peers { send(peer, .goodbye(reason: "\(reason), but its final checkpoint failed: \(error)")) }
                throw error
            }
            for peer in peers { send(peer, .goodbye(reason: reason, resumable: true)) }
            return
        }
        logger.info("\(reason): telling \(scheduler.workerCount) worker(s) to stop and writing a final checkpoint")
        for peer in peers { send(peer, .goodbye(reason: reason)) }
        if lastCheckpoint != state.iteration { try checkpoint() }
    }

    /// Stops the run for `error`: every peer is told why (goodbye), θ as it stands (the last good one: no failing
    /// update was applied) is checkpointed, and `error` is thrown — or, if the checkpoint fails, an error that names
    /// both, so the reason is never replaced by the disk's complaint.
    func stopRun(_ error: ClusterError) throws -> Never {
        logger.error("\(error)")
        do {
            try shutdown(reason: "\(error)")
        } catch let failure {
            throw ClusterError.checkpointFailed(reason: "\(error)", error: "\(failure)")
        }
        throw error
    }

    /// Stops a run that diverged (confirmed on the coordinator) with the advice that gets it going again.
    func stopDiverged(_ reason: String) throws -> Never {
        let advice = "θ after \(state.iteration) meta-updates is checkpointed; lower meta.outer_step (now \(config.meta.outerStep)) or inner_loop.learning_rate (now \(config.innerLoop.dqn.learningRate)), then continue with --resume --force-config"
        try stopRun(.diverged("\(reason); \(advice)"))
    }
}
