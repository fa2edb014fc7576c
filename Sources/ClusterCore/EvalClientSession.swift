import Foundation
import MetaLearning
import Wire

/// The eval client's side of the protocol as a pure state machine: submit one batch of adaptation jobs as an eval
/// request, keep it alive with heartbeats, collect each job's outcome once, and when the coordinator goes silent or
/// forgets the request (a restart), submit again only the jobs still missing. It reads no clock and touches no
/// socket; `ClusterAdaptationRunner` (the shell) feeds it events with the time and carries out its actions.
///
/// Why a pure core: the fault simulation drives this session through the wire codec against the real Scheduler,
/// coordinator restarts included, and its timeouts are tested in simulated time.
public struct EvalClientSession {
    public struct Settings: Sendable {
        /// Until the coordinator's welcome says otherwise.
        public var heartbeatIntervalMs = 1000
        public var liveness = 5
        public var initialBackoffMs = ClusterLimits.evalClientBackoffMs.first
        public var maxBackoffMs = ClusterLimits.evalClientBackoffMs.most
        /// Give up when the coordinator has said nothing for this long (a wrong endpoint, a coordinator that is
        /// not up, or one that crashed and did not come back); shorter silences are ridden out.
        public var unreachableTimeoutMs = 60_000
        /// The coordinator's address, for messages.
        public var endpoint = ""
        /// Names the requests: `PREFIX-sN` for the N-th submission of this batch.
        public var requestPrefix = "eval"
        /// How often a progress line is logged while outcomes are missing.
        public var reportEveryMs = 30_000

        public init() {}
    }

    public enum Event {
        /// Connect and submit every job.
        case start
        /// The frames of one message from the coordinator.
        case received([[UInt8]])
        case tick
        /// A stop signal: say goodbye and end with an error naming what is missing.
        case stop
    }

    /// What the shell must do, in the order given.
    public enum Action: Equatable {
        /// Open a new connection to the coordinator.
        case connect
        /// Close the connection; read nothing more from it.
        case disconnect
        case send(Message)
        /// Job `index`'s outcome arrived (for progress reports).
        case completed(index: Int)
        /// Every job's outcome, in job order: the batch is done.
        case finished([AdaptationOutcome])
        /// The batch cannot be completed: the shell throws with this text.
        case failed(String)
        case log(LogLevel, String)
    }

    public let settings: Settings
    public let jobs: [AdaptationJob]
    public private(set) var outcomes: [AdaptationOutcome?]
    /// The link to the coordinator: connection, liveness both ways, backoff (`ClientLink`, as the worker's).
    public private(set) var link: ClientLink
    public var connection: SessionConnection { link.connection }
    /// Submissions made so far (the first included).
    public private(set) var submissions = 0
    public private(set) var requestID = ""
    /// Anything from any coordinator: the unreachable timeout runs from here.
    var lastAnswer: Tick = 0
    var lastOutcome: Tick = 0
    var lastReport: Tick = 0

    public init(jobs: [AdaptationJob], settings: Settings) {
        self.jobs = jobs
        self.settings = settings
        outcomes = Array(repeating: nil, count: jobs.count)
        missing = jobs.count
        link = ClientLink(heartbeatIntervalMs: settings.heartbeatIntervalMs, liveness: settings.liveness,
                          initialBackoffMs: settings.initialBackoffMs, maxBackoffMs: settings.maxBackoffMs)
    }

    /// Jobs whose outcome has not arrived: a count kept with `outcomes`, so each outcome costs O(1), not a scan of
    /// the whole batch (up to `WireLimits.maxEvalJobs` jobs).
    public private(set) var missing: Int

    public mutating func handle(_ event: Event, now: Tick) -> [Action] {
        var out: [Action] = []
        switch event {
        case .start:
            guard connection == .idle else { break }
            lastAnswer = now; lastOutcome = now; lastReport = now
            if jobs.isEmpty {
                link.end()
                out.append(.finished([]))
            } else {
                submit(now, &out)
            }
        case .received(let frames):
            guard connection == .connected else { break }
            link.heard(now)
            lastAnswer = now
            receive(frames, now, &out)
        case .tick:
            tick(now, &out)
        case .stop:
            guard connection != .ended else { break }
            if connection == .connected { out.append(.send(.goodbye(reason: "eval client stopping"))) }
            fail("stopped by a signal with \(missing) of \(jobs.count) eval jobs missing", &out)
        }
        return out
    }

    /// Connects anew and submits the jobs still missing, under a new request id.
    mutating func submit(_ now: Tick, _ out: inout [Action]) {
        if connection == .connected { out.append(.disconnect) }
        submissions += 1
        requestID = "\(settings.requestPrefix)-s\(submissions)"
        let pending = outcomes.indices.filter { outcomes[$0] == nil }.map { (index: $0, job: jobs[$0]) }
        out.append(.connect)
        out.append(.send(.evalRequest(EvalRequest(requestID: requestID, jobs: pending))))
        out.append(.log(.info, "submitted \(requestID): \(pending.count) job(s) to \(settings.endpoint)"))
        link.connected(now)
    }

    mutating func backOff(_ now: Tick, _ out: inout [Action]) {
        out.append(.disconnect)
        link.backOff(now)
    }

    mutating func fail(_ reason: String, _ out: inout [Action]) {
        if connection == .connected { out.append(.disconnect) }
        link.end()
        out.append(.failed(reason))
    }

    mutating func tick(_ now: Tick, _ out: inout [Action]) {
        switch connection {
        case .idle, .ended:
            return
        case .backingOff, .connected:
            if now - lastAnswer > Tick(settings.unreachableTimeoutMs) {
                fail("no coordinator answered at \(settings.endpoint) for \(settings.unreachableTimeoutMs / 1000) s, with \(missing) of \(jobs.count) eval jobs missing", &out)
                return
            }
        }
        if case .backingOff = connection {
            if link.reconnectDue(now) { submit(now, &out) }
            return
        }
        if link.heartbeatDue(now) {
            out.append(.send(.heartbeat(envSteps: 0)))
            link.sent(now)
        }
        if now - lastReport >= Tick(settings.reportEveryMs) {
            let stalled = now - lastOutcome > Tick(settings.reportEveryMs)
            out.append(.log(.info, "\(jobs.count - missing) of \(jobs.count) job(s) done" + (stalled
                ? "; no outcome for \((now - lastOutcome) / 1000) s (does the coordinator have workers?)" : "")))
            lastReport = now
        }
        if let quiet = link.silence(now) {
            out.append(.log(.warning, "coordinator silent for \(quiet) ms: reconnecting in \(link.backoffMs) ms and submitting the \(missing) missing job(s) again"))
            backOff(now, &out)
        }
    }

    mutating func receive(_ frames: [[UInt8]], _ now: Tick, _ out: inout [Action]) {
        guard frames.count == 1 else {
            out.append(.log(.warning, "dropped a \(frames.count)-frame message from the coordinator"))
            return
        }
        let message: Message
        do { message = try WireCodec.decode(frames[0]) } catch {
            out.append(.log(.warning, "dropped an invalid message from the coordinator: \(error)"))
            return
        }
        switch message {
        case .welcome(let w):
            link.welcomed(heartbeatIntervalMs: w.heartbeatIntervalMs, liveness: w.liveness)
            out.append(.log(.info, "coordinator of run \(w.runID) accepted \(requestID) as \(w.workerID)"))
        case .heartbeat:
            break
        case .evalOutcome(let o):
            let i = o.key.job
            // A late copy (a backup's, or one sent before a resubmission) of a job already in: ignored.
            guard i >= 0 && i < jobs.count, outcomes[i] == nil, o.error == nil else { return }
            if let problem = jobs[i].mismatch(o.outcome) {
                fail("the coordinator forwarded an outcome for job \(i) that does not fit it: \(problem)", &out)
                return
            }
            outcomes[i] = o.outcome
            missing -= 1
            lastOutcome = now
            out.append(.completed(index: i))
            if missing == 0 {
                out.append(.send(.goodbye(reason: "eval batch complete")))
                out.append(.disconnect)
                link.end()
                out.append(.finished(outcomes.compactMap { $0 }))
            }
        case .error(let e):
            switch e.code {
            case .unknownWorker:
                out.append(.log(.warning, "the coordinator no longer knows \(requestID): submitting the \(missing) missing job(s) again"))
                submit(now, &out)
            case .taskFailed:
                fail("an eval job failed on the workers: \(e.message)", &out)
            case .rejected:
                // The coordinator holds as many requests as it takes: wait, then try again.
                out.append(.log(.warning, "the coordinator refused \(requestID) (\(e.message)): submitting again in \(link.backoffMs) ms"))
                backOff(now, &out)
            default:
                fail("the coordinator refused the eval request (\(e.code)): \(e.message)", &out)
            }
        case .goodbye(let reason, let resumable) where resumable:
            out.append(.log(.warning, "the coordinator stopped (\(reason)): submitting the \(missing) missing job(s) again in \(link.backoffMs) ms"))
            backOff(now, &out)
        case .goodbye(let reason, _):
            fail("the coordinator ended (\(reason)) with \(missing) of \(jobs.count) eval jobs missing", &out)
        case .hello, .assignment, .result, .evalRequest, .evalJob, .statusRequest, .statusReply:
            out.append(.log(.warning, "ignored a \(message.kind) from the coordinator"))
        }
    }
}
