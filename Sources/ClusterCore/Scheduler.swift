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
/// Settings no run can be scheduled with (cluster.yaml's validation refuses them first, with the line named).
public enum SchedulerError: Error, CustomStringConvertible {
    case invalidSettings(String)
    public var description: String { if case .invalidSettings(let r) = self { return r } else { return "" } }
}

public struct Scheduler<Payload> {
    /// What the Scheduler knows of one registered worker (the process itself is `Worker`, the shell, in Cluster).
    struct WorkerRecord {
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
        var jobs: AttemptTracker<Int, Void, Peer>
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
        var slots: AttemptTracker<Int, Payload, Peer>
        /// Slots reported diverged, waiting for the shell's recomputation or in it: not handed out meanwhile.
        var confirming: Set<Int> = []
    }

    /// A divergence report waiting for the shell's recomputation: the slot, and who reported it (struck if the
    /// coordinator finds the slot usable).
    struct DivergenceReport {
        let key: SlotKey
        let reporter: Peer
        let reporterID: String
        let reason: String
    }
    /// The report being recomputed (at most one at a time: each is a whole inner loop on the coordinator), and those
    /// waiting, oldest first. At most one per slot of the two rounds being run, so bounded by twice the meta-batch.
    var checking: DivergenceReport?
    var checksWaiting: [DivergenceReport] = []
    /// Why the run stopped (`.abort`); once set, `handle` answers nothing: an abort is the last command.
    public internal(set) var abortReason: String?

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
    /// The number the next accepted eval request gets (`SchedulerSettings.firstEvalRequest` at start).
    var nextEvalRequest: Int
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
            throw SchedulerError.invalidSettings("cannot schedule with these settings: \(settings), start \(startIteration)")
        }
        self.settings = settings
        self.numerics = numerics
        nextEvalRequest = settings.firstEvalRequest
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
    /// Whether `peer` is a registered worker.
    public func isWorker(_ peer: Peer) -> Bool { workers[peer] != nil }

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
        // An aborted run takes no more events: `.abort` was its last command (issue 39, defect 2: slots were handed
        // out again after it, in the same batch of commands).
        guard abortReason == nil else { return [] }
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
            reportDivergence(peer, key, reason, now: now, &out)
        case let .divergenceChecked(key, finding):
            divergenceChecked(key, finding, now: now, &out)
        case let .malformed(peer, reason, code):
            strike(peer, reason, code: code, now: now, &out)
        case let .invalidResult(peer, key, reason):
            release(peer, key, requeue: true)
            strike(peer, "result for \(key) rejected: \(reason)", now: now, &out)
            warnIfFailingRepeatedly(key, reason, &out)
        case let .evalRequest(peer, request):
            submit(peer, request, now: now, &out)
        case let .evalOutcome(peer, outcome):
            guard touch(peer, now: now, &out) else { break }
            acceptEval(peer, outcome, now: now, &out)
        case let .evalFailed(peer, key, reason):
            guard touch(peer, now: now, &out) else { break }
            failEval(peer, key, reason, &out)
        case .tick:
            expire(now: now, &out)
            reclaimOverdue(now: now, &out)
            heartbeat(now: now, &out)
        }
        if abortReason != nil { return out }
        assign(now: now, &out)
        return out
    }

    /// Stops the run: `.abort` is the last command the Scheduler gives.
    mutating func abort(_ reason: String, _ out: inout [SchedulerCommand<Payload>]) {
        abortReason = reason
        out.append(.abort(reason))
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
    /// so a diverged run does not spin. Only a report of an attempt the reporter holds, of a slot not done, counts;
    /// one check runs at a time and the others wait (issue 39, defect 1: every report started a whole inner loop on
    /// the coordinator at once, from any worker, for any slot of the round).
    mutating func reportDivergence(_ peer: Peer, _ key: SlotKey, _ reason: String, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard let worker = workers[peer], worker.running[key] != nil else {
            out.append(.log(.debug, "ignored a divergence report of \(key), which \(workers[peer]?.id ?? "\(peer)") does not hold"))
            return
        }
        release(peer, key, requeue: true)
        guard let round = round(key.iteration), round.slots[key.slot] != nil, !round.slots.isDone(key.slot) else { return }
        out.append(.log(.error, "worker \(worker.id) reports slot \(key.slot) of iteration \(key.iteration) diverged: \(reason)"))
        guard withRound(key.iteration, { $0.confirming.insert(key.slot).inserted }) == true else { return }
        checksWaiting.append(DivergenceReport(key: key, reporter: peer, reporterID: worker.id, reason: reason))
        startNextCheck(&out)
    }

    /// Asks the shell to recompute the oldest waiting report whose slot still needs it, unless a check is running.
    mutating func startNextCheck(_ out: inout [SchedulerCommand<Payload>]) {
        while checking == nil, !checksWaiting.isEmpty {
            let next = checksWaiting.removeFirst()
            guard let round = round(next.key.iteration), round.confirming.contains(next.key.slot) else { continue }
            checking = next
            out.append(.confirmDivergence(next.key, reason: next.reason))
        }
    }

    /// The shell's recomputation of a reported slot. Confirmed: the run stops. Usable: the coordinator's own update is
    /// the slot's result (computed on the run's kernel class, it is the update every honest worker computes), so the
    /// slot is not handed out again and the report cannot recur (issue 39, defect 3: a refuted slot ran again,
    /// each further report was a strike, struck workers registered again, and the run looped); the reporter, which
    /// computed other bits or lied, gets a strike. Not checkable here: the run stops with the reason.
    mutating func divergenceChecked(_ key: SlotKey, _ finding: DivergenceFinding<Payload>, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard let report = checking, report.key.iteration == key.iteration, report.key.slot == key.slot else { return }
        checking = nil
        defer { startNextCheck(&out) }
        guard withRound(key.iteration, { $0.confirming.remove(key.slot) != nil }) == true else { return }
        switch finding {
        case .diverged(let problem):
            abort("iteration \(key.iteration), slot \(key.slot) diverged (confirmed by recomputing it on the coordinator): \(problem)", &out)
        case .unverifiable(let why):
            abort("worker \(report.reporterID) reports iteration \(key.iteration), slot \(key.slot) diverged (\(report.reason)), and the coordinator cannot check it: \(why)", &out)
        case .usable(let payload):
            out.append(.log(.warning, "slot \(key.slot) of iteration \(key.iteration) was reported diverged by worker \(report.reporterID), but the coordinator computed a usable update on the run's kernel class: the reporter computes other bits (or lied); the coordinator's update is used"))
            if workers[report.reporter] != nil {
                strike(report.reporter, "reported slot \(key.slot) of iteration \(key.iteration) diverged, which the coordinator computed usable: \(report.reason)", now: now, &out)
            }
            guard withRound(key.iteration, { $0.slots.complete(key.slot, payload, took: nil) }) == true else { return }
            counters.slotsApplied += 1
            foldCompletedPrefix(&out)
            completeIterationIfDone(&out)
        }
    }
}
