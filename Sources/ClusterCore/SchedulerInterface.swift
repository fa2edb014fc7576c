import Foundation
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
    /// What one peer may cost the run: strikes, missed deadlines, eval requests held.
    public var limits = SchedulerLimits()
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
    /// The run's tasks run in environment servers (gymnasium families): a worker's environment identity joins its
    /// numerics fingerprint, so `strict` and `portable` refuse a worker whose Python side differs.
    public var holdsEnvironment = false
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
    /// An eval job's holder whose env-step count has not moved for this long (or the slot deadline, if longer)
    /// is not computing it: the job comes back.
    public var minimumStallMs: Int64 = 5_000
    /// The number of the first eval request this coordinator accepts. The coordinator starts it from the clock, so a
    /// restarted one never reuses the number of a request whose late outcomes may still arrive from workers.
    public var firstEvalRequest = 1
    /// Pipelined meta-iterations (`MetaSettings.pipelined`): the next iteration's slots, which adapt the current θ,
    /// are handed out while the current iteration's (which adapt the θ before it) finish.
    public var pipelined = false

    /// The θ version the slots of `iteration` adapt (`MetaSettings.baseVersion`).
    public func baseVersion(of iteration: Int) -> Int { MetaSettings.baseVersion(of: iteration, pipelined: pipelined) }

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
    /// The coordinator recomputed a slot a worker reported diverged (`confirmDivergence`): what it found.
    case divergenceChecked(SlotKey, DivergenceFinding<Payload>)
    /// A result that decoded but cannot be used (wrong size, values out of bounds): a strike for the
    /// worker, and the slot runs again elsewhere.
    case invalidResult(Peer, SlotKey, String)
    /// A message that failed to decode or validate, or was of a kind a worker must not send.
    case malformed(Peer, String, code: ErrorCode)
    /// A client asks for eval jobs to run (each checked by the shell against this run's network and limits). The
    /// Scheduler decides, numbers it and tells the shell to hold it (`holdEvalRequest`).
    case evalRequest(Peer, EvalRequest)
    /// A worker's validated outcome of an eval job, carried to the client by `forwardEvalOutcome` (no copy kept).
    case evalOutcome(Peer, EvalOutcome)
    /// A worker could not run an eval job, or sent an outcome that does not fit it.
    case evalFailed(Peer, EvalKey, String)
    /// Time passed: check liveness, send heartbeats, assign.
    case tick
}

/// What the scheduler tells the shell to do. The shell carries the commands of one `handle` out in the order given,
/// and that order is part of the contract: an iteration's `fold`s come in slot order, each slot once, all before its
/// `applyMetaUpdate`; its `applyMetaUpdate` comes before its `writeCheckpoint`, and
/// both before the `send(.assign)`s of the next iteration, so θ version t + 1 is applied (and, when due, on disk)
/// before any worker is asked to start from it; a `forget` follows the sends that tell that peer why.
public enum SchedulerCommand<Payload> {
    case send(Peer, Outbound)
    /// The peer is no longer registered (dead, left, replaced or disconnected): a shell drops anything it keeps for it.
    /// The coordinator keeps nothing per peer (its ROUTER socket holds the connection, which the peer closes or libzmq
    /// drops), so for it this is a notification; the fault simulation checks every one against what it did to the peer.
    case forget(Peer)
    /// Slot `slot`'s payload, the next in slot order of `iteration`: fold it into the iteration's update now. Sent as
    /// soon as every slot before it has been folded, so the shell sums updates as they arrive (in slot order, so the
    /// same bits whichever worker finished first) and holds only those that came early, not the whole batch.
    case fold(iteration: Int, slot: Int, payload: Payload)
    /// Every slot of `iteration` has been folded: apply its meta-update.
    case applyMetaUpdate(iteration: Int)
    /// Write a checkpoint of θ after `iteration` meta-updates.
    case writeCheckpoint(iteration: Int)
    case log(LogLevel, String)
    /// The last meta-update has been applied.
    case finished
    /// The run cannot go on: the shell tells every peer why and stops after a final checkpoint of the last good θ.
    /// The last command the Scheduler gives (it answers no event after it).
    case abort(String)
    /// A worker reported `key` diverged: recompute it here on the run's kernel class (slots are deterministic, so a
    /// peer cannot stop the run by lying) and report back with `.divergenceChecked`. At most one is outstanding.
    case confirmDivergence(SlotKey, reason: String)
    /// Send `outcome` (from the event that delivered it) to `client`, the peer that asked for it.
    case forwardEvalOutcome(client: Peer, EvalOutcome)
    /// An eval request was accepted as number `Int`: the shell keeps its jobs (content, parameters) until
    /// `forgetEvalRequest`. Comes before any `send(.evalJob)` of it.
    case holdEvalRequest(Int, client: Peer, EvalRequest)
    /// An eval request is complete or abandoned: the shell can drop its jobs.
    case forgetEvalRequest(Int)
}

/// What the coordinator's own recomputation of a slot reported diverged found.
public enum DivergenceFinding<Payload> {
    /// The slot diverges here too: the run cannot go on.
    case diverged(String)
    /// A usable update, computed on the run's kernel class: the slot's result.
    case usable(Payload)
    /// The coordinator cannot compute on the run's kernel class (its CPU lacks it), so it cannot settle the report.
    case unverifiable(String)
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
    /// Registrations (a worker declared dead that comes back registers again, and is sent θ again).
    public var workersRegistered = 0
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
