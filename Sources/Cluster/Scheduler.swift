import MetaLearning
import Wire

/// Milliseconds on the coordinator's monotonic clock; the scheduler never reads a clock itself.
public typealias Tick = Int64

/// A connected peer as the ROUTER socket names it (its routing id).
public struct Peer: Hashable, Sendable, CustomStringConvertible {
    public let id: [UInt8]
    public init(_ id: [UInt8]) { self.id = id }
    public var description: String { id.map { String(format: "%02x", $0) }.joined() }
}

/// The scheduler's settings, from cluster.yaml.
public struct SchedulerSettings: Sendable, Equatable {
    public var runID: String
    /// Meta-iterations to run in total (the run ends when this many updates are applied).
    public var iterations: Int
    /// Slots per meta-iteration.
    public var metaBatch: Int
    public var heartbeatIntervalMs: Int
    /// Heartbeat intervals of silence after which a worker is declared dead.
    public var liveness: Int
    /// Checkpoint after every this many meta-updates (and after the last).
    public var checkpointInterval: Int
    /// Bad messages a registered worker may send before it is disconnected.
    public var maxStrikes = 5
    /// Attempts of one slot after which each further failure is logged as an error: a slot that fails
    /// everywhere is a deterministic failure (e.g. a diverged inner loop) the user must see. The run is
    /// not aborted: a peer must not be able to stop the run by reporting failures.
    public var failedAttemptsWarning = 5
    /// Backup tasks (MapReduce's): a slot running longer than this multiple of the median slot time is
    /// also given to an idle worker; the first result wins. nil turns backups off.
    public var backupAfterMedianMultiple: Double? = 2
    /// Completed slots needed before the median is trusted.
    public var backupMinimumSamples = 3
    /// Distinguishes this coordinator process from earlier ones of the same run, so worker ids handed
    /// out after a restart never collide with ids workers remember from before it.
    public var incarnation = "c0"
    /// Keep serving eval requests after the last meta-iteration, until the shell stops (`--serve`).
    /// Without it the run ends once training is done and no eval request is outstanding.
    public var serve = false
    /// Outstanding eval requests accepted in all, and per client connection: the coordinator keeps each
    /// request's jobs in memory, so no peer may make it hold more than this many.
    public var maxEvalRequests = 64
    public var maxEvalRequestsPerClient = 4
    /// An eval job running longer than this multiple of its request's median job time is also given to
    /// an idle worker (once); the first outcome wins. It also rescues a job whose message was lost.
    public var evalBackupAfterMedianMultiple: Double? = 4
    /// Liveness of work, not only of heartbeats: an attempt held longer than its deadline is taken back (the
    /// slot or eval job runs elsewhere), and its holder gets no new work until it delivers. The deadline is
    /// `timeoutMedianMultiple` × the median completion time once one completion is known (never below
    /// `minimumTimeoutMs`), and `slotTimeoutMs` before that and at most (cluster.yaml `slot_timeout_ms`). An eval
    /// job (its request's jobs differ in length too much for a median to say much) comes back when its holder's
    /// env-step count stalls (`minimumStallMs`), or past `evalTimeoutMs`.
    public var slotTimeoutMs: Int64 = 600_000
    public var evalTimeoutMs: Int64 = 3_600_000
    public var timeoutMedianMultiple: Double = 4
    public var minimumTimeoutMs: Int64 = 1_000
    /// Deadlines a worker may miss in a row, without delivering anything in between, before it is disconnected.
    public var maxTimeouts = 3
    /// An eval job's holder whose env-step count has not moved for this long (or the slot deadline, if longer)
    /// is not computing it: the job comes back.
    public var minimumStallMs: Int64 = 5_000

    public init(runID: String, iterations: Int, metaBatch: Int, heartbeatIntervalMs: Int, liveness: Int,
                checkpointInterval: Int) {
        self.runID = runID; self.iterations = iterations; self.metaBatch = metaBatch
        self.heartbeatIntervalMs = heartbeatIntervalMs; self.liveness = liveness
        self.checkpointInterval = checkpointInterval
    }

    /// Silence longer than this means death.
    public var deadAfterMs: Int64 { Int64(heartbeatIntervalMs) * Int64(liveness) }
}

/// What happened, as the shell reports it to the scheduler.
public enum SchedulerEvent<Payload> {
    case hello(Peer, Hello)
    /// Any message from `peer`; a worker's heartbeat carries its env-step total (nil: none reported).
    case heartbeat(Peer, envSteps: UInt64? = nil)
    /// A decoded, validated result whose payload the shell has checked against θ's size.
    case result(Peer, runID: String, key: SlotKey, parameterVersion: Int, payload: Payload)
    case goodbye(Peer)
    /// The worker did not hold the parameter version an assignment named.
    case parametersMissing(Peer, SlotKey)
    /// The worker could not run the slot.
    case taskFailed(Peer, SlotKey, String)
    /// The worker's update for the slot is not finite or out of bounds (`ErrorCode.diverged`).
    case slotDiverged(Peer, SlotKey, String)
    /// The coordinator recomputed a slot a worker reported diverged: `diverged` says what it found
    /// (nil: a usable update, so the reports were not the run's).
    case divergenceChecked(SlotKey, diverged: String?)
    /// A result that decoded but cannot be used (wrong size, values out of bounds): a strike for the
    /// worker, and the slot runs again elsewhere.
    case invalidResult(Peer, SlotKey, String)
    /// A message that failed to decode or validate, or was of a kind a worker must not send.
    case malformed(Peer, String, code: ErrorCode)
    /// A client asks for eval jobs to run: `jobs` are their indices in its request; the shell numbered
    /// the request and keeps the jobs' content.
    case evalRequest(Peer, request: Int, jobs: [Int])
    /// A worker's validated outcome of an eval job (the shell holds it until the commands say where it goes).
    case evalOutcome(Peer, EvalKey)
    /// A worker could not run an eval job, or sent an outcome that does not fit it.
    case evalFailed(Peer, EvalKey, String)
    /// Time passed: check liveness, send heartbeats, assign.
    case tick
}

/// What the scheduler tells the shell to do, in order.
public enum SchedulerCommand<Payload> {
    case send(Peer, Outbound)
    /// Drop everything about this peer (it is dead, left, or was disconnected).
    case forget(Peer)
    /// Apply the meta-update of `iteration` from the slots' payloads, given in slot order.
    case applyMetaUpdate(iteration: Int, payloads: [Payload])
    /// Write a checkpoint of θ after `iteration` meta-updates.
    case writeCheckpoint(iteration: Int)
    case log(LogLevel, String)
    /// The last meta-update has been applied.
    case finished
    /// The run cannot go on: the shell stops after a final checkpoint of the last good θ.
    case abort(String)
    /// A worker reported `key` diverged: recompute it here (slots are deterministic, so a peer cannot
    /// stop the run by lying) and report back with `.divergenceChecked`.
    case confirmDivergence(SlotKey, reason: String)
    /// Send the outcome the shell holds for `key` to `client`, the peer that asked for it.
    case forwardEvalOutcome(client: Peer, EvalKey)
    /// An eval request is complete or abandoned: the shell can drop its jobs.
    case forgetEvalRequest(Int)
}

public enum LogLevel: Sendable { case debug, info, warning, error }

/// A message the shell builds and sends; assignments are filled in with task, config and θ by the shell.
public enum Outbound: Equatable, Sendable {
    case welcome(workerID: String)
    case heartbeat
    case assign(SlotKey, includeParameters: Bool)
    /// An eval job, filled in by the shell from the request it keeps.
    case evalJob(EvalKey)
    case error(ErrorReply)
    case goodbye(String)
}

/// Counts the tests and the coordinator's metrics read.
public struct SchedulerCounters: Sendable, Equatable {
    public var slotsApplied = 0
    public var duplicatesDropped = 0
    public var staleDropped = 0
    public var requeued = 0
    public var workersDeclaredDead = 0
    public var workersDisconnected = 0
    /// Attempts (slots and eval jobs) taken back from a live holder past their deadline.
    public var attemptsTimedOut = 0
    public var assignmentsSent = 0
    public var parameterTransfers = 0
    public var backupsSent = 0
    public var evalJobsSent = 0
    public var evalOutcomesForwarded = 0
    public var evalRequeued = 0
    public var evalDuplicatesDropped = 0
    public var evalRequestsCompleted = 0
    public var evalRequestsAbandoned = 0
}

/// The coordinator's logic as a pure state machine: `handle(event, now) -> [command]`.
///
/// No sockets, threads or clocks inside, so it is tested by simulation. It holds DESIGN.md's
/// invariants: slots are applied once each, in slot order (determinism, exactly once); silent workers
/// are declared dead and their slots requeued (liveness); workers join and leave at any time
/// (elastic); θ is sent to a worker once per version (parameters travel once).
///
/// Its second kind of work is eval jobs from eval clients (`metatrain eval --coordinator`): they run on
/// threads no training slot is waiting for, are requeued like slots, and each outcome is forwarded to
/// its client once. They never touch θ, so the trajectory is the same with or without them.
public struct Scheduler<Payload> {
    enum SlotStatus {
        case pending
        case running
        case done(Payload)
    }

    struct Slot {
        var status: SlotStatus = .pending
        var attempts = 0
        /// When the first attempt was assigned.
        var startedAt: Tick?
        var backups = 0
    }

    struct Worker {
        let id: String
        let number: Int
        let threads: Int
        var host = ""
        /// Slot results it delivered that were applied.
        var slotsDone = 0
        var lastHeard: Tick
        var lastSent: Tick
        /// Slot attempts this worker is computing, with when each was handed to it (for the deadline).
        var running: [SlotKey: Tick] = [:]
        /// θ version the worker holds, if we know it holds one.
        var knownVersion: Int?
        var strikes = 0
        /// Eval job attempts this worker is computing (they share its threads with slots), with their hand-out times.
        var evalRunning: [EvalKey: Tick] = [:]
        var load: Int { running.count + evalRunning.count }
        /// The env-step total its heartbeats report, and when it last moved.
        var envSteps: UInt64 = 0
        var envStepsMovedAt: Tick
        /// Deadlines missed since it last delivered; while > 0 it is suspected and gets no new work.
        var timeouts = 0
        var suspected: Bool { timeouts > 0 }
        /// A free thread, and in good standing: a suspected worker gets nothing new until it delivers.
        var canTakeWork: Bool { load < threads && !suspected }
    }

    /// A peer that submitted eval requests (`metatrain eval --coordinator`): not a worker, gets no slots.
    struct Client {
        var lastHeard: Tick
        var lastSent: Tick
        var requests: Set<Int> = []
    }

    enum EvalJobStatus { case pending, running, done }

    struct EvalJobState {
        var status = EvalJobStatus.pending
        /// Times handed out (backups included).
        var attempts = 0
        /// Times a worker reported it failed.
        var failures = 0
        /// Times a worker died while running it: a job that kills every worker it meets must not
        /// take the cluster down one worker after another.
        var losses = 0
        var startedAt: Tick?
        var backups = 0
    }

    struct EvalRequestState {
        let client: Peer
        /// Job indices in the order they are handed out.
        let order: [Int]
        var jobs: [Int: EvalJobState]
        var remaining: Int
        /// Completed jobs' times from first hand-out to outcome, for the backup rule.
        var durations: [Tick] = []
    }

    public let settings: SchedulerSettings
    /// Meta-updates applied so far: the iteration being run and θ's version.
    public private(set) var iteration: Int
    public private(set) var counters = SchedulerCounters()
    public private(set) var isFinished = false
    var slots: [Slot]
    var workers: [Peer: Worker] = [:]
    var nextWorkerNumber = 1
    /// Durations of recently completed slot attempts (hand-out to result), for the backup rule and deadlines.
    var slotDurations: [Tick] = []
    var clients: [Peer: Client] = [:]
    /// Outstanding eval requests by number; served in number order.
    var evalRequests: [Int: EvalRequestState] = [:]
    var finishAnnounced = false
    /// Slots of the current iteration the shell is recomputing after a divergence report (not handed out
    /// meanwhile), and those it found usable (a further report of them is a bad message).
    var confirming: Set<Int> = []
    var refuted: Set<Int> = []
    /// The numerics workers are held to: the policy, and the fingerprint the first accepted worker (or the
    /// checkpoint) set. The shell writes it into every checkpoint.
    public private(set) var numerics: RunNumerics

    /// Starts at `iteration` (0 for a new run, the checkpoint's iteration on resume), holding workers to
    /// `numerics` (a new run's policy with no fingerprint yet, or the checkpoint's).
    /// Throws for settings no run can use (they come from cluster.yaml, which validates them first).
    public init(settings: SchedulerSettings, startIteration: Int = 0,
                numerics: RunNumerics = RunNumerics(policy: .strict)) throws {
        guard settings.metaBatch > 0, settings.iterations >= 0, settings.liveness > 0, settings.heartbeatIntervalMs > 0,
              settings.checkpointInterval > 0, startIteration >= 0 else {
            throw ConfigError.invalidValue(path: "meta/coordinator", line: 0,
                                           reason: "cannot schedule with these settings: \(settings), start \(startIteration)")
        }
        self.settings = settings
        self.numerics = numerics
        iteration = startIteration
        slots = Array(repeating: Slot(), count: settings.metaBatch)
        isFinished = startIteration >= settings.iterations
    }

    /// Training is over and nothing keeps the coordinator up: no eval request outstanding, not serving.
    public var isDone: Bool { isFinished && !settings.serve && evalRequests.isEmpty }
    /// Eval requests not yet complete.
    public var outstandingEvalRequests: Int { evalRequests.count }
    /// Connected eval clients.
    public var clientPeers: [Peer] { clients.keys.sorted { $0.id.lexicographicallyPrecedes($1.id) } }

    /// Workers alive right now.
    public var workerCount: Int { workers.count }

    /// What `metatrain status` shows of each worker, in join order.
    public struct WorkerStatus: Sendable {
        public let id: String, host: String, threads: Int, busy: Int, slotsDone: Int, suspected: Bool
        public let lastHeard: Tick, envSteps: UInt64
    }

    public var workerStatus: [WorkerStatus] {
        workers.values.sorted { $0.number < $1.number }.map {
            WorkerStatus(id: $0.id, host: $0.host, threads: $0.threads, busy: $0.load, slotsDone: $0.slotsDone,
                         suspected: $0.suspected, lastHeard: $0.lastHeard, envSteps: $0.envSteps)
        }
    }
    /// Their connections, in the order they joined.
    public var peers: [Peer] { workers.sorted { $0.value.number < $1.value.number }.map(\.key) }

    public mutating func handle(_ event: SchedulerEvent<Payload>, now: Tick) -> [SchedulerCommand<Payload>] {
        var out: [SchedulerCommand<Payload>] = []
        switch event {
        case let .hello(peer, hello):
            register(peer, hello, now: now, &out)
        case let .heartbeat(peer, envSteps):
            if clients[peer] != nil { clients[peer]!.lastHeard = now; break }
            guard touch(peer, now: now, &out) else { break }
            if let envSteps, envSteps != workers[peer]!.envSteps {
                workers[peer]!.envSteps = envSteps
                workers[peer]!.envStepsMovedAt = now
            }
        case let .result(peer, runID, key, version, payload):
            guard touch(peer, now: now, &out) else { break }
            accept(peer, runID: runID, key: key, version: version, payload: payload, &out)
        case .goodbye(let peer):
            if clients[peer] != nil {
                out.append(.log(.info, "eval client \(peer) said goodbye"))
                dropClient(peer, reason: "the client left", &out)
            }
            if workers[peer] != nil {
                out.append(.log(.info, "worker \(workers[peer]!.id) said goodbye"))
                drop(peer, &out)
            }
        case let .parametersMissing(peer, key):
            guard touch(peer, now: now, &out) else { break }
            workers[peer]!.timeouts = 0
            workers[peer]!.knownVersion = nil
            release(peer, key, requeue: true)
            out.append(.log(.info, "worker \(workers[peer]!.id) lacks θ version for \(key); resending with parameters"))
        case let .taskFailed(peer, key, reason):
            guard touch(peer, now: now, &out) else { break }
            workers[peer]!.timeouts = 0
            release(peer, key, requeue: true)
            out.append(.log(.error, "worker \(workers[peer]!.id) failed \(key): \(reason)"))
            warnIfFailingRepeatedly(key, reason, &out)
        case let .slotDiverged(peer, key, reason):
            guard touch(peer, now: now, &out) else { break }
            workers[peer]!.timeouts = 0
            release(peer, key, requeue: true)
            reportDivergence(peer, key, reason, now: now, &out)
        case let .divergenceChecked(key, diverged):
            guard key.iteration == iteration, confirming.remove(key.slot) != nil else { break }
            if let diverged {
                out.append(.abort("iteration \(key.iteration), slot \(key.slot) diverged (confirmed by recomputing it on the coordinator): \(diverged)"))
            } else {
                refuted.insert(key.slot)
                out.append(.log(.warning, "slot \(key.slot) of iteration \(key.iteration) was reported diverged, but the coordinator computed a usable update: the reporting worker computes other bits (or lied); the slot runs again"))
            }
        case let .malformed(peer, reason, code):
            strike(peer, reason, code: code, now: now, &out)
        case let .invalidResult(peer, key, reason):
            release(peer, key, requeue: true)
            strike(peer, "result for \(key) rejected: \(reason)", now: now, &out)
            warnIfFailingRepeatedly(key, reason, &out)
        case let .evalRequest(peer, request, jobs):
            submit(peer, request: request, jobs: jobs, now: now, &out)
        case let .evalOutcome(peer, key):
            guard touch(peer, now: now, &out) else { break }
            acceptEval(peer, key, now: now, &out)
        case let .evalFailed(peer, key, reason):
            guard touch(peer, now: now, &out) else { break }
            failEval(peer, key, reason, &out)
        case .tick:
            expire(now: now, &out)
            reclaimOverdue(now: now, &out)
            heartbeat(now: now, &out)
        }
        assign(now: now, &out)
        return out
    }

    /// Reports a slot that keeps failing: likely deterministic (e.g. the inner loop diverged), so the
    /// user must see it; the slot keeps being retried.
    private func warnIfFailingRepeatedly(_ key: SlotKey, _ reason: String, _ out: inout [SchedulerCommand<Payload>]) {
        if key.iteration == iteration && key.slot < slots.count && slots[key.slot].attempts >= settings.failedAttemptsWarning {
            out.append(.log(.error, "slot \(key.slot) of iteration \(key.iteration) has failed \(slots[key.slot].attempts) attempts; last: \(reason)"))
        }
    }

    /// Records a divergence report. A worker's word never stops a run: the shell recomputes the slot itself
    /// (slots are deterministic) and only its confirmation stops the run; meanwhile the slot is not handed out,
    /// so a diverged run does not spin. A report of a slot the coordinator already found usable is a strike.
    private mutating func reportDivergence(_ peer: Peer, _ key: SlotKey, _ reason: String, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard key.iteration == iteration, key.slot < slots.count, let worker = workers[peer] else { return }
        if refuted.contains(key.slot) {
            strike(peer, "reported slot \(key.slot) diverged, which the coordinator computed usable: \(reason)", now: now, &out)
            return
        }
        out.append(.log(.error, "worker \(worker.id) reports slot \(key.slot) of iteration \(key.iteration) diverged: \(reason)"))
        if confirming.insert(key.slot).inserted {
            out.append(.confirmDivergence(key, reason: reason))
        }
    }

    // MARK: - Registration and liveness

    private mutating func register(_ peer: Peer, _ hello: Hello, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        if let known = workers[peer] {
            // A repeated hello on a live connection (several "unknown worker" replies crossed): same worker.
            workers[peer]!.lastHeard = now
            out.append(.send(peer, .welcome(workerID: known.id)))
            return
        }
        guard admitNumerics(peer, hello, &out) else { return }
        if !hello.previousWorkerID.isEmpty,
           let old = workers.first(where: { $0.value.id == hello.previousWorkerID })?.key {
            out.append(.log(.info, "worker \(hello.previousWorkerID) re-registered from a new connection"))
            drop(old, &out)
        }
        let number = nextWorkerNumber
        nextWorkerNumber += 1
        var worker = Worker(id: "\(settings.incarnation)-w\(number)", number: number, threads: hello.threads, lastHeard: now,
                            lastSent: now, envStepsMovedAt: now)
        worker.host = hello.host
        workers[peer] = worker
        out.append(.send(peer, .welcome(workerID: worker.id)))
        let (kernel, fingerprint) = hello.numerics.effective(under: numerics.policy)
        out.append(.log(.info, "worker \(worker.id) joined from \(hello.host) with \(hello.threads) thread(s); \(workers.count) alive; numerics \(fingerprint) (kernel \(kernel), CPU \(hello.numerics.cpu))"))
        if isDone { out.append(.send(peer, .goodbye("run finished"))) }
    }

    /// Holds a registering worker to the run's numerics policy: under `strict` and `portable` a worker whose
    /// fingerprint differs from the run's is refused with both fingerprints named (its slots would give other
    /// bits, and θ would depend on which worker ran what); the first worker sets the run's fingerprint.
    /// Under `any` every worker is accepted and a difference is logged. Returns false when refused.
    private mutating func admitNumerics(_ peer: Peer, _ hello: Hello, _ out: inout [SchedulerCommand<Payload>]) -> Bool {
        let (kernel, fingerprint) = hello.numerics.effective(under: numerics.policy)
        guard let expected = numerics.fingerprint else {
            numerics.fingerprint = fingerprint
            numerics.kernel = kernel
            numerics.cpu = hello.numerics.cpu
            out.append(.log(.info, "run numerics (\(numerics.policy.rawValue)): fingerprint \(fingerprint), kernel \(kernel), CPU \(hello.numerics.cpu), set by the first worker"
                + (numerics.policy == .any ? "; numerics: any, so the run is not bit-reproducible" : "")))
            return true
        }
        guard expected != fingerprint else { return true }
        let theirs = "fingerprint \(fingerprint) (kernel \(kernel), CPU \(hello.numerics.cpu))"
        let run = "the run's \(expected) (kernel \(numerics.kernel), CPU \(numerics.cpu))"
        if numerics.policy == .any {
            out.append(.log(.warning, "worker from \(hello.host) computes other bits: \(theirs), not \(run); numerics: any, so the run is not bit-reproducible"))
            return true
        }
        let advice = numerics.policy == .strict
            ? "start the run with `numerics: portable` (every x86-64 CPU computes the same bits), run this worker with METATRAIN_KERNEL=\(numerics.kernel) if its CPU has that kernel, or resume with --force-numerics to adopt the first worker's"
            : "a difference outside the kernels (libm, compiler or build): run workers from the same build and system libraries"
        out.append(.send(peer, .error(ErrorReply(code: .numericsMismatch,
                                                 message: "numerics \(numerics.policy.rawValue): this worker's \(theirs) differs from \(run); \(advice)"))))
        out.append(.log(.warning, "refused a worker from \(hello.host): \(theirs) differs from \(run) (numerics: \(numerics.policy.rawValue))"))
        return false
    }

    /// Records that `peer` spoke (any message is a heartbeat). Unknown peers are told to say hello.
    private mutating func touch(_ peer: Peer, now: Tick, _ out: inout [SchedulerCommand<Payload>]) -> Bool {
        guard workers[peer] != nil else {
            out.append(.send(peer, .error(ErrorReply(code: .unknownWorker, message: "unknown worker: send hello first"))))
            return false
        }
        workers[peer]!.lastHeard = now
        return true
    }

    private mutating func expire(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        for (peer, worker) in workers.sorted(by: { $0.value.number < $1.value.number })
        where now - worker.lastHeard > settings.deadAfterMs {
            out.append(.log(.warning, "worker \(worker.id) silent for \(now - worker.lastHeard) ms: declared dead, \(worker.running.count) slot(s) and \(worker.evalRunning.count) eval job(s) requeued"))
            counters.workersDeclaredDead += 1
            drop(peer, died: true, &out)
        }
        for (peer, client) in clients.sorted(by: { $0.key.id.lexicographicallyPrecedes($1.key.id) })
        where now - client.lastHeard > settings.deadAfterMs {
            out.append(.log(.warning, "eval client \(peer) silent for \(now - client.lastHeard) ms: its \(client.requests.count) request(s) abandoned"))
            dropClient(peer, reason: "the client went silent", &out)
        }
    }

    private mutating func heartbeat(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        for (peer, worker) in workers.sorted(by: { $0.value.number < $1.value.number })
        where now - worker.lastSent >= Int64(settings.heartbeatIntervalMs) {
            out.append(.send(peer, .heartbeat))
            workers[peer]!.lastSent = now
        }
        for (peer, client) in clients.sorted(by: { $0.key.id.lexicographicallyPrecedes($1.key.id) })
        where now - client.lastSent >= Int64(settings.heartbeatIntervalMs) {
            out.append(.send(peer, .heartbeat))
            clients[peer]!.lastSent = now
        }
    }

    private mutating func strike(_ peer: Peer, _ reason: String, code: ErrorCode = .malformed, now: Tick,
                                 _ out: inout [SchedulerCommand<Payload>]) {
        out.append(.send(peer, .error(ErrorReply(code: code, message: reason))))
        guard var worker = workers[peer] else {
            out.append(.log(.warning, "bad message from unregistered peer \(peer): \(reason)"))
            return
        }
        worker.strikes += 1
        worker.lastHeard = now
        workers[peer] = worker
        out.append(.log(.warning, "bad message from worker \(worker.id) (\(worker.strikes)/\(settings.maxStrikes)): \(reason)"))
        if worker.strikes >= settings.maxStrikes {
            out.append(.send(peer, .error(ErrorReply(code: .rejected, message: "too many bad messages: disconnected"))))
            out.append(.log(.warning, "worker \(worker.id) disconnected after \(worker.strikes) bad messages"))
            counters.workersDisconnected += 1
            drop(peer, &out)
        }
    }

    /// Forgets a worker and requeues the slots and eval jobs only it was running; `died` counts the
    /// loss against each eval job it held.
    private mutating func drop(_ peer: Peer, died: Bool = false, _ out: inout [SchedulerCommand<Payload>]) {
        guard let worker = workers.removeValue(forKey: peer) else { return }
        for key in worker.running.keys.sorted() where key.iteration == iteration {
            if case .running = slots[key.slot].status, !isRunningElsewhere(key.slot) {
                slots[key.slot].status = .pending
                counters.requeued += 1
            }
        }
        out.append(.forget(peer))
        for key in worker.evalRunning.keys.sorted() {
            if died, let job = evalRequests[key.request]?.jobs[key.job], job.status == .running {
                evalRequests[key.request]!.jobs[key.job]!.losses += 1
                if job.losses + 1 >= settings.failedAttemptsWarning {
                    let client = evalRequests[key.request]!.client
                    out.append(.send(client, .error(ErrorReply(
                        code: .taskFailed, message: "eval job \(key.job) was running on \(job.losses + 1) workers that died: it is not retried again"))))
                    out.append(.log(.error, "eval request \(key.request) abandoned: job \(key.job) was running on \(job.losses + 1) workers that died"))
                    abandon(key.request, &out)
                    continue
                }
            }
            requeueEval(key)
        }
    }

    private func isRunningElsewhere(_ slot: Int) -> Bool {
        workers.values.contains { w in w.running.keys.contains { $0.iteration == iteration && $0.slot == slot } }
    }

    /// Frees `peer`'s capacity for `key`; with `requeue`, the slot is pending again unless done or running elsewhere.
    private mutating func release(_ peer: Peer, _ key: SlotKey, requeue: Bool) {
        workers[peer]?.running[key] = nil
        guard requeue, key.iteration == iteration, key.slot < slots.count else { return }
        if case .running = slots[key.slot].status, !isRunningElsewhere(key.slot) {
            slots[key.slot].status = .pending
            counters.requeued += 1
        }
    }

    // MARK: - Results

    private mutating func accept(_ peer: Peer, runID: String, key: SlotKey, version: Int, payload: Payload,
                                 _ out: inout [SchedulerCommand<Payload>]) {
        let heldSince = workers[peer]?.running[key]
        // Every refusal below leaves the slot held elsewhere or pending again (release with requeue), never
        // nowhere: a sender that loses its claim to a slot it held must not strand it.
        guard runID == settings.runID else {
            out.append(.send(peer, .error(ErrorReply(code: .wrongRun, message: "this coordinator runs \(settings.runID), not \(runID)", key: key))))
            release(peer, key, requeue: true)
            return
        }
        workers[peer]?.timeouts = 0
        guard key.iteration == iteration, version == iteration, !isFinished else {
            release(peer, key, requeue: true)
            counters.staleDropped += 1
            out.append(.log(.debug, "dropped stale result for \(key) (θ version \(version)); running iteration \(iteration)"))
            return
        }
        release(peer, key, requeue: false)
        guard key.slot >= 0 && key.slot < slots.count else {
            strike(peer, "result names slot \(key.slot); iterations have \(slots.count) slots", now: workers[peer]?.lastHeard ?? 0, &out)
            return
        }
        if case .done = slots[key.slot].status {
            counters.duplicatesDropped += 1
            out.append(.log(.debug, "dropped duplicate result for \(key)"))
            return
        }
        // How long computing a slot takes: this attempt's own time, from its hand-out to its result (time lost
        // to dead or stuck holders before it would inflate the median, and every deadline with it).
        if let started = heldSince, let now = workers[peer]?.lastHeard {
            slotDurations.append(now - started)
            if slotDurations.count > 256 { slotDurations.removeFirst(slotDurations.count - 256) }
        }
        slots[key.slot].status = .done(payload)
        counters.slotsApplied += 1
        workers[peer]?.slotsDone += 1
        completeIterationIfDone(&out)
    }

    private mutating func completeIterationIfDone(_ out: inout [SchedulerCommand<Payload>]) {
        var payloads: [Payload] = []
        for slot in slots {
            guard case .done(let p) = slot.status else { return }
            payloads.append(p)
        }
        out.append(.applyMetaUpdate(iteration: iteration, payloads: payloads))
        iteration += 1
        let last = iteration >= settings.iterations
        if last || iteration % settings.checkpointInterval == 0 { out.append(.writeCheckpoint(iteration: iteration)) }
        slots = Array(repeating: Slot(), count: settings.metaBatch)
        confirming = []
        refuted = []
        if last {
            isFinished = true
            if settings.serve {
                out.append(.log(.info, "training finished: serving eval requests until stopped"))
            } else if !evalRequests.isEmpty {
                out.append(.log(.info, "training finished: finishing \(evalRequests.count) eval request(s) first"))
            }
            finishIfDone(&out)
        }
    }

    /// Announces the end of the run once training is over and nothing else keeps it up.
    private mutating func finishIfDone(_ out: inout [SchedulerCommand<Payload>]) {
        guard isDone, !finishAnnounced else { return }
        finishAnnounced = true
        out.append(.finished)
        for (peer, _) in workers.sorted(by: { $0.value.number < $1.value.number }) {
            out.append(.send(peer, .goodbye("run finished")))
        }
    }

    // MARK: - Assignment

    /// Gives pending slots, in slot order, to workers with free threads, in the order they joined.
    /// Gives a straggling slot (running longer than the backup multiple of the median slot time) to an
    /// idle worker as well; at most one backup per slot. Results are identical by determinism, so the
    /// first to arrive is applied and the other dropped as a duplicate.
    private mutating func assignBackups(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard let multiple = settings.backupAfterMedianMultiple, slotDurations.count >= settings.backupMinimumSamples else { return }
        let median = slotDurations.sorted()[slotDurations.count / 2]
        let limit = Tick(Double(max(median, 1)) * multiple)
        for slot in slots.indices {
            guard case .running = slots[slot].status, slots[slot].backups == 0,
                  let started = slots[slot].startedAt, now - started > limit else { continue }
            let busy = Set(workers.filter { $0.value.running.keys.contains { $0.iteration == iteration && $0.slot == slot } }.map(\.key))
            // No candidate for this straggler (its holders are the only free ones) does not mean none for the next.
            guard let (peer, _) = workers.sorted(by: { $0.value.number < $1.value.number })
                .first(where: { !busy.contains($0.key) && $0.value.canTakeWork }) else { continue }
            slots[slot].backups += 1
            counters.backupsSent += 1
            out.append(.log(.info, "slot \(slot) has run \(now - started) ms (median \(median) ms): backup copy to \(workers[peer]!.id)"))
            out.append(dispatch(slot, to: peer, now: now))
        }
    }

    /// Records a new attempt of `slot` on `peer` and returns the command that sends it (with θ when
    /// the worker does not hold this version yet).
    private mutating func dispatch(_ slot: Int, to peer: Peer, now: Tick) -> SchedulerCommand<Payload> {
        let key = SlotKey(iteration: iteration, slot: slot, attempt: slots[slot].attempts)
        slots[slot].attempts += 1
        slots[slot].status = .running
        if slots[slot].startedAt == nil { slots[slot].startedAt = now }
        var worker = workers[peer]!
        let includeParameters = worker.knownVersion != iteration
        worker.knownVersion = iteration
        worker.running[key] = now
        worker.lastSent = now
        workers[peer] = worker
        counters.assignmentsSent += 1
        if includeParameters { counters.parameterTransfers += 1 }
        return .send(peer, .assign(key, includeParameters: includeParameters))
    }

    /// Training slots first (the run's progress), then backups of stragglers, then eval jobs on the
    /// threads left over: evaluation never delays a meta-iteration by more than the eval jobs already
    /// running, and once training is over it has every thread.
    private mutating func assign(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        if !isFinished {
            var pending = slots.indices.filter {
                guard !confirming.contains($0) else { return false }   // being recomputed by the shell
                if case .pending = slots[$0].status { return true } else { return false }
            }[...]
            if pending.isEmpty {
                assignBackups(now: now, &out)
            } else {
                for (peer, _) in workers.sorted(by: { $0.value.number < $1.value.number }) {
                    while let slot = pending.first, let worker = workers[peer], worker.canTakeWork {
                        pending.removeFirst()
                        out.append(dispatch(slot, to: peer, now: now))
                    }
                    if pending.isEmpty { break }
                }
                return
            }
        }
        assignEval(now: now, &out)
    }

    // MARK: - Liveness of work

    /// How long an attempt may be held: `timeoutMedianMultiple` × the median completion time once there is one
    /// (the upper median, so one sample at iteration 0 is enough), never below `minimumTimeoutMs` and never above
    /// `ceiling`; the ceiling alone before any completion.
    func deadline(durations: [Tick], ceiling: Tick) -> Tick {
        guard !durations.isEmpty else { return ceiling }
        let median = durations.sorted()[durations.count / 2]
        return min(ceiling, max(settings.minimumTimeoutMs, Tick(Double(median) * settings.timeoutMedianMultiple)))
    }

    /// The current deadline of a training slot attempt.
    public var slotDeadline: Tick { deadline(durations: slotDurations, ceiling: settings.slotTimeoutMs) }

    /// Takes back every attempt held past its deadline, however alive its holder's heartbeats are: the slot (or
    /// eval job) runs elsewhere, and the holder is suspected — no new work until it delivers something. A
    /// suspected worker whose env-step count (from its heartbeats) has not moved for `maxTimeouts` deadlines is
    /// stuck, not slow, and is disconnected with the reason; a slow one that still computes is kept.
    private mutating func reclaimOverdue(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        let slotLimit = slotDeadline
        for (peer, worker) in workers.sorted(by: { $0.value.number < $1.value.number }) {
            var missed: [String] = []
            for (key, since) in worker.running.sorted(by: { $0.key < $1.key }) where now - since > slotLimit {
                release(peer, key, requeue: true)
                if key.iteration == iteration { missed.append("slot \(key.slot) of iteration \(key.iteration) (held \(now - since) ms, deadline \(slotLimit) ms)") }
            }
            // Eval jobs of one request differ in length (probes, curves), so their median says little about any one
            // of them: an eval job comes back when its holder's env-step count has stalled for the stall window
            // (it is not computing), or past the ceiling. Stragglers that compute get assignEval's one backup.
            let stallLimit = max(slotLimit, settings.minimumStallMs)
            let stalled = now - worker.envStepsMovedAt > stallLimit
            for (key, since) in worker.evalRunning.sorted(by: { $0.key < $1.key }) {
                guard evalRequests[key.request] != nil else { unholdEval(peer, key); continue }
                guard now - since > settings.evalTimeoutMs || (stalled && now - since > stallLimit) else { continue }
                unholdEval(peer, key)
                requeueEval(key)
                missed.append("eval job \(key.job) of request \(key.request) (held \(now - since) ms)")
            }
            if !missed.isEmpty {
                counters.attemptsTimedOut += missed.count
                workers[peer]!.timeouts += missed.count
                let still = now - worker.envStepsMovedAt
                let state = still > slotLimit
                    ? "looks stuck: its env-step count (\(worker.envSteps)) has not moved for \(still) ms"
                    : "is computing but slow: its env-step count moved \(still) ms ago (\(worker.envSteps))"
                out.append(.log(.warning, "worker \(worker.id) held \(missed.joined(separator: ", ")) past the deadline and \(state): taken back; it gets no new work until it delivers"))
            }
            let stuckFor = now - workers[peer]!.envStepsMovedAt
            if workers[peer]!.suspected, stuckFor > Tick(settings.maxTimeouts) * slotLimit {
                let reason = "no result for work past its deadline and no progress (env steps) for \(stuckFor) ms: disconnected"
                out.append(.send(peer, .error(ErrorReply(code: .rejected, message: reason))))
                out.append(.log(.warning, "worker \(worker.id) \(reason)"))
                counters.workersDisconnected += 1
                drop(peer, &out)
            }
        }
    }

    /// Forgets that `peer` holds eval attempt `key` (it delivered, failed, or lost it).
    private mutating func unholdEval(_ peer: Peer, _ key: EvalKey) {
        workers[peer]?.evalRunning[key] = nil
    }

    /// The current iteration's slots that are neither done, pending, nor held by a live worker: always
    /// empty (the fault simulation checks it after every step; a refused result must never strand a slot).
    public var strandedSlots: [Int] {
        guard !isFinished else { return [] }
        return slots.indices.filter { slot in
            guard case .running = slots[slot].status else { return false }
            return !isRunningElsewhere(slot)
        }
    }

    // MARK: - Eval jobs

    private mutating func submit(_ peer: Peer, request: Int, jobs: [Int], now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        if workers[peer] != nil {
            out.append(.forgetEvalRequest(request))
            strike(peer, "a worker must not send eval requests", now: now, &out)
            return
        }
        guard !jobs.isEmpty, evalRequests[request] == nil else {
            out.append(.forgetEvalRequest(request))
            out.append(.send(peer, .error(ErrorReply(code: .malformed, message: "an eval request needs at least one job"))))
            return
        }
        guard evalRequests.count < settings.maxEvalRequests,
              (clients[peer]?.requests.count ?? 0) < settings.maxEvalRequestsPerClient else {
            out.append(.forgetEvalRequest(request))
            out.append(.send(peer, .error(ErrorReply(code: .rejected, message: "too many eval requests outstanding (at most \(settings.maxEvalRequests), \(settings.maxEvalRequestsPerClient) per client): try again later"))))
            out.append(.log(.warning, "refused an eval request from \(peer): too many outstanding"))
            return
        }
        var client = clients[peer] ?? Client(lastHeard: now, lastSent: now)
        client.lastHeard = now
        client.requests.insert(request)
        clients[peer] = client
        evalRequests[request] = EvalRequestState(client: peer, order: jobs,
                                                 jobs: Dictionary(uniqueKeysWithValues: jobs.map { ($0, EvalJobState()) }),
                                                 remaining: jobs.count)
        out.append(.send(peer, .welcome(workerID: "eval-\(settings.incarnation)-\(request)")))
        out.append(.log(.info, "eval request \(request) from \(peer): \(jobs.count) job(s); \(workers.count) worker(s) alive"))
    }

    private mutating func acceptEval(_ peer: Peer, _ key: EvalKey, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        unholdEval(peer, key)
        workers[peer]?.timeouts = 0
        guard var request = evalRequests[key.request], let job = request.jobs[key.job], job.status != .done else {
            counters.evalDuplicatesDropped += 1
            out.append(.log(.debug, "dropped an outcome for \(key): already in, or its request is gone"))
            return
        }
        request.jobs[key.job]!.status = .done
        if let started = job.startedAt { request.durations.append(now - started) }
        request.remaining -= 1
        counters.evalOutcomesForwarded += 1
        out.append(.forwardEvalOutcome(client: request.client, key))
        if request.remaining == 0 {
            evalRequests[key.request] = nil
            clients[request.client]?.requests.remove(key.request)
            counters.evalRequestsCompleted += 1
            out.append(.forgetEvalRequest(key.request))
            out.append(.log(.info, "eval request \(key.request) complete"))
            finishIfDone(&out)
        } else {
            evalRequests[key.request] = request
        }
    }

    private mutating func failEval(_ peer: Peer, _ key: EvalKey, _ reason: String, _ out: inout [SchedulerCommand<Payload>]) {
        unholdEval(peer, key)
        workers[peer]?.timeouts = 0
        guard let request = evalRequests[key.request], let job = request.jobs[key.job], job.status != .done else { return }
        out.append(.log(.error, "worker \(workers[peer]?.id ?? "\(peer)") failed \(key): \(reason)"))
        evalRequests[key.request]!.jobs[key.job]!.failures += 1
        if job.failures + 1 >= settings.failedAttemptsWarning {
            // A job that fails everywhere fails deterministically: tell the client instead of retrying forever.
            out.append(.send(request.client, .error(ErrorReply(
                code: .taskFailed, message: "eval job \(key.job) failed \(job.failures + 1) times; last: \(reason)"))))
            abandon(key.request, &out)
            return
        }
        requeueEval(key)
    }

    /// Makes an eval job pending again unless it is done or another worker still runs it.
    private mutating func requeueEval(_ key: EvalKey) {
        guard let job = evalRequests[key.request]?.jobs[key.job], job.status == .running,
              evalHolders(key.request, key.job).isEmpty else { return }
        evalRequests[key.request]!.jobs[key.job]!.status = .pending
        evalRequests[key.request]!.jobs[key.job]!.startedAt = nil
        counters.evalRequeued += 1
    }

    /// The workers running an attempt of job `job` of request `request`.
    private func evalHolders(_ request: Int, _ job: Int) -> Set<Peer> {
        Set(workers.filter { $0.value.evalRunning.keys.contains { $0.request == request && $0.job == job } }.map(\.key))
    }

    /// Drops a request whose client is gone or whose job cannot succeed; running attempts finish and are dropped.
    private mutating func abandon(_ request: Int, _ out: inout [SchedulerCommand<Payload>]) {
        guard let state = evalRequests.removeValue(forKey: request) else { return }
        clients[state.client]?.requests.remove(request)
        counters.evalRequestsAbandoned += 1
        out.append(.forgetEvalRequest(request))
        finishIfDone(&out)
    }

    private mutating func dropClient(_ peer: Peer, reason: String, _ out: inout [SchedulerCommand<Payload>]) {
        guard let client = clients.removeValue(forKey: peer) else { return }
        for request in client.requests.sorted() {
            out.append(.log(.info, "eval request \(request) abandoned: \(reason)"))
            abandon(request, &out)
        }
    }

    /// Gives pending eval jobs, oldest request first, to workers with free threads, in the order they
    /// joined; then, on threads still free, a backup of each job running far longer than its request's
    /// median (`evalBackupAfterMedianMultiple`), on a worker not already running it.
    private mutating func assignEval(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard !evalRequests.isEmpty else { return }
        var free = workers.sorted(by: { $0.value.number < $1.value.number }).map(\.key).filter { workers[$0]!.canTakeWork }
        guard !free.isEmpty else { return }
        let numbers = evalRequests.keys.sorted()
        for number in numbers {
            for index in evalRequests[number]!.order where evalRequests[number]!.jobs[index]!.status == .pending {
                guard let peer = free.first else { return }
                dispatchEval(number, index, to: peer, now: now, &out)
                if workers[peer]!.load >= workers[peer]!.threads { free.removeFirst() }
            }
        }
        guard let multiple = settings.evalBackupAfterMedianMultiple else { return }
        for number in numbers {
            let durations = evalRequests[number]!.durations
            guard durations.count >= settings.backupMinimumSamples else { continue }
            let median = durations.sorted()[durations.count / 2]
            let limit = Tick(Double(max(median, 1)) * multiple)
            for index in evalRequests[number]!.order {
                let job = evalRequests[number]!.jobs[index]!
                guard job.status == .running, job.backups == 0, let started = job.startedAt, now - started > limit else { continue }
                let holders = evalHolders(number, index)
                guard let at = free.firstIndex(where: { !holders.contains($0) }) else { continue }
                let peer = free[at]
                evalRequests[number]!.jobs[index]!.backups += 1
                out.append(.log(.info, "eval request \(number) job \(index) has run \(now - started) ms (median \(median) ms): backup copy to \(workers[peer]!.id)"))
                dispatchEval(number, index, to: peer, now: now, &out)
                if workers[peer]!.load >= workers[peer]!.threads { free.remove(at: at) }
                if free.isEmpty { return }
            }
        }
    }

    private mutating func dispatchEval(_ number: Int, _ index: Int, to peer: Peer, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        var job = evalRequests[number]!.jobs[index]!
        let key = EvalKey(request: number, job: index, attempt: job.attempts)
        job.attempts += 1
        job.status = .running
        if job.startedAt == nil { job.startedAt = now }
        evalRequests[number]!.jobs[index] = job
        workers[peer]!.evalRunning[key] = now
        workers[peer]!.lastSent = now
        counters.evalJobsSent += 1
        out.append(.send(peer, .evalJob(key)))
    }
}

import Foundation
