import Foundation
import MetaLearning
import Wire


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
        /// θ versions the worker holds: of those sent since it registered, what its cache keeps (`WorkerSession.caching`).
        var knownVersions: [Int] = []
        /// Records that `version` was sent to it, as its cache keeps versions.
        mutating func received(_ version: Int) {
            knownVersions = WorkerSession.caching(version, in: knownVersions) { $0 }
        }
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

    struct EvalRequestState {
        let client: Peer
        /// Its jobs by index, in the order they are handed out.
        var jobs: AttemptTracker<Int, Void>
    }

    public let settings: SchedulerSettings
    /// Meta-updates applied so far: the iteration being run and θ's version.
    public internal(set) var iteration: Int
    public internal(set) var counters = SchedulerCounters()
    public internal(set) var isFinished = false
    /// The current iteration's slots and divergence reports (attempt times carry over from one iteration to the
    /// next). A done slot's payload stays here only until every slot before it is done (`fold`).
    var current: Round
    /// The current iteration's slots handed on with `fold` so far: 0 ..< nextFold.
    var nextFold = 0
    /// A pipelined run's next iteration (`iteration + 1`), whose slots adapt the current θ and are handed out once
    /// the current iteration's are all out; nil when not pipelined or when the current iteration is the last. Its
    /// results wait here until it becomes the current one.
    var ahead: Round?

    /// One iteration's slots, and the divergence reports of them.
    struct Round {
        var slots: AttemptTracker<Int, Payload>
        /// Slots the shell is recomputing after a divergence report (not handed out meanwhile), and those it found
        /// usable (a further report of them is a bad message).
        var confirming: Set<Int> = []
        var refuted: Set<Int> = []
    }

    /// The slots of `iteration` while it is being run: the current iteration, or a pipelined run's next one.
    func round(_ iteration: Int) -> Round? {
        if iteration == self.iteration, !isFinished { return current }
        if iteration == self.iteration + 1 { return ahead }
        return nil
    }

    /// Runs `body` on the round of `iteration` (`round`); nil when that iteration is not being run.
    @discardableResult
    mutating func withRound<R>(_ iteration: Int, _ body: (inout Round) -> R) -> R? {
        if iteration == self.iteration, !isFinished { return body(&current) }
        if iteration == self.iteration + 1, ahead != nil { return body(&ahead!) }
        return nil
    }
    var workers = WorkerTable()
    var nextWorkerNumber = 1
    var clients: [Peer: Client] = [:]
    /// Outstanding eval requests by number; served in number order.
    var evalRequests: [Int: EvalRequestState] = [:]
    var finishAnnounced = false
    /// The numerics workers are held to: the policy, and the fingerprint the first accepted worker (or the
    /// checkpoint) set. The shell writes it into every checkpoint.
    public internal(set) var numerics: RunNumerics

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
        current = Round(slots: AttemptTracker(Array(0..<settings.metaBatch)))
        isFinished = startIteration >= settings.iterations
        if settings.pipelined && startIteration + 1 < settings.iterations {
            ahead = Round(slots: AttemptTracker(Array(0..<settings.metaBatch)))
        }
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
        workers.inJoinOrder.map(\.value).map {
            WorkerStatus(id: $0.id, host: $0.host, threads: $0.threads, busy: $0.load, slotsDone: $0.slotsDone,
                         suspected: $0.suspected, lastHeard: $0.lastHeard, envSteps: $0.envSteps)
        }
    }
    /// Their connections, in the order they joined.
    public var peers: [Peer] { workers.joinOrder }

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
            workers[peer]!.knownVersions = []
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
            guard withRound(key.iteration, { $0.confirming.remove(key.slot) != nil }) == true else { break }
            if let diverged {
                out.append(.abort("iteration \(key.iteration), slot \(key.slot) diverged (confirmed by recomputing it on the coordinator): \(diverged)"))
            } else {
                withRound(key.iteration) { $0.refuted.insert(key.slot) }
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
    func warnIfFailingRepeatedly(_ key: SlotKey, _ reason: String, _ out: inout [SchedulerCommand<Payload>]) {
        if let attempts = round(key.iteration)?.slots[key.slot]?.attempts, attempts >= settings.failedAttemptsWarning {
            out.append(.log(.error, "slot \(key.slot) of iteration \(key.iteration) has failed \(attempts) attempts; last: \(reason)"))
        }
    }

    /// Records a divergence report. A worker's word never stops a run: the shell recomputes the slot itself
    /// (slots are deterministic) and only its confirmation stops the run; meanwhile the slot is not handed out,
    /// so a diverged run does not spin. A report of a slot the coordinator already found usable is a strike.
    mutating func reportDivergence(_ peer: Peer, _ key: SlotKey, _ reason: String, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard let round = round(key.iteration), round.slots[key.slot] != nil, let worker = workers[peer] else { return }
        if round.refuted.contains(key.slot) {
            strike(peer, "reported slot \(key.slot) diverged, which the coordinator computed usable: \(reason)", now: now, &out)
            return
        }
        out.append(.log(.error, "worker \(worker.id) reports slot \(key.slot) of iteration \(key.iteration) diverged: \(reason)"))
        if withRound(key.iteration, { $0.confirming.insert(key.slot).inserted }) == true {
            out.append(.confirmDivergence(key, reason: reason))
        }
    }
}
