import Foundation
import MetaLearning
import NeuralNet
import Wire

/// Work for a compute thread: a training slot with the θ it starts from, or a meta-evaluation job.
/// Each carries the kernel its run computes on (the portable one under `numerics: portable`).
public enum WorkerJob: @unchecked Sendable, Equatable {
    case slot(Assignment, theta: ParameterVector, kernel: GEMMBackend)
    case eval(EvalJobMessage, kernel: GEMMBackend)
}

/// Where a client session's connection to the coordinator stands (the worker's and the eval client's alike).
public enum SessionConnection: Equatable, Sendable {
    /// Not started.
    case idle
    case connected
    /// Disconnected; connects (and registers or submits) again at this time.
    case backingOff(until: Tick)
    /// Finished, failed or refused: no more actions.
    case ended
}

/// The worker's side of the protocol as a pure state machine: registration, heartbeats both ways, reconnecting
/// with backoff when the coordinator goes silent, giving up on one that never answers, the θ cache by version and
/// switching runs. It reads no clock and touches no socket; `Worker` (the shell) feeds it events with the time and
/// carries out its actions in order.
///
/// Why a pure core: the fault simulation (`SchedulerSimulationTests`) drives this very session through the wire
/// codec against the real Scheduler, and its liveness and backoff are tested in simulated time, not with sleeps.
/// Paranoid Pirate (ZeroMQ guide, ch. 4): any message counts as a sign of life; silence for liveness × heartbeat
/// means the coordinator is gone, and the worker reconnects after a backoff that doubles up to a maximum.
public struct WorkerSession {
    public struct Settings: Sendable {
        /// The hello this worker sends (the session fills in `previousWorkerID` when it registers again).
        public var hello: Hello
        /// Used until a welcome says otherwise.
        public var heartbeatIntervalMs = 1000
        public var liveness = 5
        public var initialBackoffMs = ClusterLimits.workerBackoffMs.first
        public var maxBackoffMs = ClusterLimits.workerBackoffMs.most
        /// A worker that has never been welcomed gives up this long after it started (nil: never).
        public var giveUpAfterMs: Int? = 300_000
        /// A worker that lost a coordinator it knew (silence, or it was sent away) gives up after trying to reach one
        /// again for this long (nil: never — a restarted coordinator may take a while). Why: a coordinator that died for
        /// good (killed, its job over) tells nobody, and its workers would otherwise retry it until someone kills them.
        public var giveUpAfterLostMs: Int? = 600_000
        /// After a run is over (the coordinator's final goodbye), wait for the next run's coordinator, without a time
        /// limit, instead of ending. Why: a worker pool that outlives runs — a Kubernetes Deployment restarts a worker
        /// that exits, and one that then reached no coordinator would crash-loop until scaled to 0.
        public var waitForNextRun = false
        /// The kernel this process computes on (`GEMMBackend.selected`); a run under `numerics: portable` uses
        /// the portable one instead.
        public var kernel: GEMMBackend

        public init(hello: Hello, kernel: GEMMBackend) { self.hello = hello; self.kernel = kernel }
    }

    public enum Event {
        /// The shell is up: connect for the first time.
        case start
        /// The frames of one message from the coordinator (one, or a head and its shared tensor), to decode.
        case received([[UInt8]])
        /// One message from the coordinator that the shell decoded where libzmq holds its frames
        /// (`WireCodec.decode(head:field:)`: θ is copied once), or why it could not.
        case decoded(Result<Message, WireError>)
        /// A compute thread finished a job; its reply, encoded (in memory of its own, sent without a copy).
        case computed(EncodedMessage)
        /// Time passed; `envSteps` is the total the compute threads have taken (heartbeats carry it).
        case tick(envSteps: UInt64)
        /// A stop signal: say goodbye (the coordinator requeues this worker's work at once) and end.
        case stop
    }

    /// What the shell must do, in the order given.
    public enum Action: Equatable {
        /// Open a new connection to the coordinator (the shell reads the endpoint file again).
        case connect
        /// Close the connection; read nothing more from it.
        case disconnect
        case send(Message)
        /// Send a reply a compute thread encoded.
        case transmit(EncodedMessage)
        case compute(WorkerJob)
        /// Drop the jobs queued and not started: the coordinator no longer counts them as this worker's (a welcome is
        /// a new registration; a lost connection gets its work requeued), so computing them only delays new work and
        /// keeps their θ copies (issue 39, defect 6). Jobs already running finish; their replies are dropped or, if
        /// they arrive first, applied (slots are deterministic).
        case dropQueuedJobs
        case log(LogLevel, String)
        /// The run is over (the coordinator said goodbye, or a stop signal): the shell returns.
        case finish
        /// No coordinator ever welcomed this worker within `giveUpAfterMs`, or (`lost`) none welcomed it again within
        /// `giveUpAfterLostMs` of losing the one it had: the shell throws `WorkerGaveUp`.
        case giveUp(afterMs: Int64, lost: Bool = false)
        /// The coordinator refused this worker for good: the shell throws `WorkerRefused`.
        case refused(String)
    }

    public let settings: Settings
    /// The link to the coordinator: connection, liveness both ways, backoff (`ClientLink`).
    public private(set) var link: ClientLink
    public var connection: SessionConnection { link.connection }
    public private(set) var runID: String?
    public private(set) var workerID = ""
    /// θ received since the last welcome, the two highest versions in version order: a pipelined run hands out slots
    /// of two versions at once (`MetaSettings.pipelined`), always the two newest. The coordinator's record of what a
    /// worker holds follows the same rule from the same start (`Scheduler.Worker.knownVersions`).
    public private(set) var cached: [(version: Int, theta: ParameterVector)] = []
    static let cachedVersions = 2

    /// `held` with `item` added (in place of one of the same version), sorted by version, less the lowest versions
    /// past `cachedVersions`: the one rule worker and coordinator both keep.
    static func caching<T>(_ item: T, in held: [T], version: (T) -> Int) -> [T] {
        let kept = held.filter { version($0) != version(item) } + [item]
        return Array(kept.sorted { version($0) < version($1) }.suffix(cachedVersions))
    }
    public private(set) var kernel: GEMMBackend
    public var heartbeatIntervalMs: Int { link.heartbeatIntervalMs }
    public var liveness: Int { link.liveness }
    public var backoffMs: Int { link.backoffMs }
    public private(set) var everWelcomed = false
    /// When the coordinator this worker had was lost (nil: it has one, or never had one).
    public private(set) var lostSince: Tick?
    /// The run this worker was in is over and it waits for the next one (`Settings.waitForNextRun`): no give-up.
    public private(set) var betweenRuns = false
    /// Job replies handed back (results and failures alike), whether or not a connection was up to take them.
    public private(set) var jobsCompleted = 0
    var startedAt: Tick = 0
    /// When the last hello went out (a reply of "unknown worker" within a heartbeat interval of it is one it answers).
    var lastHelloAt: Tick = .min / 2

    public init(settings: Settings) {
        self.settings = settings
        kernel = settings.kernel
        link = ClientLink(heartbeatIntervalMs: settings.heartbeatIntervalMs, liveness: settings.liveness,
                          initialBackoffMs: settings.initialBackoffMs, maxBackoffMs: settings.maxBackoffMs)
    }

    /// How long the shell may wait for a socket before the next tick is due.
    public var pollTimeoutMs: Int { max(5, min(100, heartbeatIntervalMs / 4)) }

    public mutating func handle(_ event: Event, now: Tick) -> [Action] {
        var out: [Action] = []
        switch event {
        case .start:
            guard connection == .idle else { break }
            startedAt = now
            connect(now, &out)
        case .received(let frames):
            guard connection == .connected else { break }
            link.heard(now)
            receive(frames, now, &out)
        case .decoded(let message):
            guard connection == .connected else { break }
            link.heard(now)
            receive(message, now, &out)
        case .computed(let bytes):
            jobsCompleted += 1
            if connection == .connected {
                out.append(.transmit(bytes))
                link.sent(now)
            } else {
                out.append(.log(.debug, "a reply computed while disconnected is dropped (the coordinator runs that work again)"))
            }
        case .tick(let envSteps):
            tick(envSteps: envSteps, now, &out)
        case .stop:
            guard connection != .ended else { break }
            out.append(.log(.info, "stopping: saying goodbye (the coordinator requeues this worker's slots)"))
            send(.goodbye(reason: "worker stopping"), now, &out)
            end(&out)
        }
        return out
    }

    mutating func tick(envSteps: UInt64, _ now: Tick, _ out: inout [Action]) {
        switch connection {
        case .idle, .ended:
            return
        case .backingOff:
            guard link.reconnectDue(now) else { return }
            if giveUpIfNeverWelcomed(now, &out) || giveUpIfLostTooLong(now, &out) { return }
            connect(now, &out)
        case .connected:
            if link.heartbeatDue(now) { send(.heartbeat(envSteps: envSteps), now, &out) }
            if let quiet = link.silence(now) {
                if giveUpIfNeverWelcomed(now, &out) { return }
                // Between runs no coordinator is expected: not a warning every backoff.
                out.append(.log(betweenRuns ? .debug : .warning, betweenRuns
                    ? "no coordinator of a next run yet: trying again in \(backoffMs) ms"
                    : "coordinator silent for \(quiet) ms: reconnecting in \(backoffMs) ms"))
                backOff(now, &out)
            }
        }
    }

    /// A worker that lost its coordinator and found none again within `giveUpAfterLostMs` stops.
    mutating func giveUpIfLostTooLong(_ now: Tick, _ out: inout [Action]) -> Bool {
        guard let since = lostSince, let limit = settings.giveUpAfterLostMs, now - since > Tick(limit) else { return false }
        if connection == .connected { out.append(.disconnect) }
        link.end()
        out.append(.giveUp(afterMs: now - since, lost: true))
        return true
    }

    /// A worker no coordinator ever welcomed within `giveUpAfterMs` stops: a stale endpoint, a wrong address or a
    /// coordinator that never came must end in a clear error, not a worker retrying forever.
    mutating func giveUpIfNeverWelcomed(_ now: Tick, _ out: inout [Action]) -> Bool {
        guard !everWelcomed, let limit = settings.giveUpAfterMs, now - startedAt > Tick(limit) else { return false }
        if connection == .connected { out.append(.disconnect) }
        link.end()
        out.append(.giveUp(afterMs: now - startedAt))
        return true
    }

    mutating func connect(_ now: Tick, _ out: inout [Action]) {
        out.append(.connect)
        link.connected(now)
        send(.hello(hello), now, &out)
        lastHelloAt = now
    }

    /// Closes the connection and connects again after the backoff (`ClientLink.backOff`).
    mutating func backOff(_ now: Tick, _ out: inout [Action]) {
        if everWelcomed && lostSince == nil && !betweenRuns { lostSince = now }
        out.append(.disconnect)
        out.append(.dropQueuedJobs)
        link.backOff(now)
    }

    mutating func end(_ out: inout [Action]) {
        if connection == .connected { out.append(.disconnect) }
        link.end()
        out.append(.finish)
    }

    var hello: Hello {
        var h = settings.hello
        h.previousWorkerID = workerID
        return h
    }

    mutating func send(_ message: Message, _ now: Tick, _ out: inout [Action]) {
        guard connection == .connected else { return }
        out.append(.send(message))
        link.sent(now)
    }

    mutating func receive(_ frames: [[UInt8]], _ now: Tick, _ out: inout [Action]) {
        // One frame, or a head and the θ frame shared by every worker it goes to (protocol 5).
        guard frames.count == 1 || frames.count == 2 else {
            out.append(.log(.warning, "dropped a \(frames.count)-frame message from the coordinator"))
            return
        }
        receive(Result { () throws(WireError) in try WireCodec.decode(frames: frames) }, now, &out)
    }

    mutating func receive(_ decoded: Result<Message, WireError>, _ now: Tick, _ out: inout [Action]) {
        let message: Message
        switch decoded {
        case .success(let m): message = m
        case .failure(let error):
            out.append(.log(.warning, "dropped an invalid message from the coordinator: \(error)"))
            let code: ErrorCode = error.isVersionMismatch ? .protocolVersion : .malformed
            send(.error(ErrorReply(code: code, message: "\(error)")), now, &out)
            return
        }
        switch message {
        case .welcome(let w):
            if let old = runID, runID != w.runID { out.append(.log(.info, "joined run \(w.runID) (was \(old)): dropping cached θ")) }
            // A welcome is a new registration, whose record at the coordinator holds no θ and no work: neither does
            // the cache, nor the queue of jobs not started.
            cached = []
            out.append(.dropQueuedJobs)
            runID = w.runID
            workerID = w.workerID
            link.welcomed(heartbeatIntervalMs: w.heartbeatIntervalMs, liveness: w.liveness)
            everWelcomed = true
            lostSince = nil
            betweenRuns = false
            kernel = w.numerics == .portable ? .portable : settings.kernel
            out.append(.log(.info, "registered as \(w.workerID) in run \(w.runID); numerics \(w.numerics.rawValue), computing on kernel \(kernel.rawValue)"))
        case .heartbeat:
            break
        case .assignment(let a):
            accept(a, now, &out)
        case .evalJob(let j):
            out.append(.compute(.eval(j, kernel: kernel)))
        case .error(let e):
            switch e.code {
            case .unknownWorker:
                // Every message sent before the welcome gets this reply: one hello per heartbeat interval answers them
                // all (a hello per reply made the coordinator register, and welcome, the same worker several times).
                guard now - lastHelloAt >= Tick(heartbeatIntervalMs) else { break }
                out.append(.log(.info, "coordinator does not know this worker (restarted?): registering again"))
                send(.hello(hello), now, &out)
                lastHelloAt = now
            case .numericsMismatch:
                out.append(.log(.error, "coordinator refused this worker: \(e.message)"))
                out.append(.disconnect)
                link.end()
                out.append(.refused(e.message))
            case .rejected:
                out.append(.log(.error, "coordinator disconnected this worker: \(e.message)"))
                backOff(now, &out)
            default:
                out.append(.log(.warning, "coordinator error (\(e.code)): \(e.message)"))
            }
        case .goodbye(let reason, let resumable) where resumable:
            // The run goes on under a restarted coordinator (preemption, eviction): wait for it as for a lost one,
            // up to giveUpAfterLostMs; only a run that is over ends this worker (issue 38, item 4).
            let patience = settings.giveUpAfterLostMs.map { "up to \($0 / 1000) s" } ?? "until stopped"
            out.append(.log(.warning, "coordinator said goodbye: \(reason); reconnecting in \(backoffMs) ms, waiting \(patience) for it to come back"))
            backOff(now, &out)
        case .goodbye(let reason, _) where settings.waitForNextRun:
            out.append(.log(.info, "coordinator said goodbye: \(reason); waiting for the next run's coordinator"))
            betweenRuns = true
            lostSince = nil
            backOff(now, &out)
        case .goodbye(let reason, _):
            out.append(.log(.info, "coordinator said goodbye: \(reason)"))
            end(&out)
        case .hello, .result, .evalRequest, .evalOutcome, .statusRequest, .statusReply:
            send(.error(ErrorReply(code: .malformed, message: "a coordinator must not send \(message.kind)")), now, &out)
        }
    }

    /// Runs an assignment of this worker's run on the θ it names: sent with it, or cached from an earlier one.
    mutating func accept(_ a: Assignment, _ now: Tick, _ out: inout [Action]) {
        guard a.runID == runID else {
            send(.error(ErrorReply(code: .wrongRun, message: "this worker is registered in \(runID ?? "no run"), not \(a.runID)", key: a.key)), now, &out)
            return
        }
        let theta: ParameterVector
        if let sent = a.parameters {
            theta = sent
            cached = Self.caching((a.parameterVersion, sent), in: cached, version: \.version)
        } else if let held = cached.first(where: { $0.version == a.parameterVersion }) {
            theta = held.theta
        } else {
            send(.error(ErrorReply(code: .parametersMissing, message: "θ version \(a.parameterVersion) is not cached here", key: a.key)), now, &out)
            return
        }
        out.append(.compute(.slot(a, theta: theta, kernel: kernel)))
    }
}

extension WireError {
    var isVersionMismatch: Bool { if case .protocolVersion = self { return true } else { return false } }
}
