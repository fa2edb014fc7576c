import ClusterCore
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// Runs meta-evaluation jobs on a cluster's workers: `metatrain eval --coordinator` hands each batch to
/// the coordinator as one eval request and collects the outcomes it forwards.
///
/// The coordinator schedules the jobs on its workers' free threads (after training slots) and requeues
/// a job whose worker dies, so the outcomes are the ones local threads would give. The client keeps the
/// request alive with heartbeats; when the coordinator goes silent (a crash), it reconnects with backoff
/// and submits again only the jobs still missing. A job that fails on every worker, a refused request,
/// or a coordinator that says goodbye ends the batch with an error.
public final class ClusterAdaptationRunner: AdaptationRunner {
    public struct Options: Sendable {
        public var endpoint: String
        /// Until the coordinator's answer says otherwise.
        public var heartbeatIntervalMs = 1000
        public var liveness = 5
        public var maxMessageBytes = ClusterLimits.maxMessageBytes
        public var initialBackoffMs = 1000
        public var maxBackoffMs = 16_000
        /// Give up when the coordinator has said nothing for this long: a wrong endpoint, a coordinator
        /// that is not up, or one that crashed and did not come back. Shorter silences (a restart) are
        /// ridden out by reconnecting and submitting the missing jobs again.
        public var unreachableTimeoutMs = 60_000
        /// CURVE: the coordinator's public key and a key pair on its allow-list.
        public var curve: (serverPublicKey: String, keys: CurveKeyPair)?

        public init(endpoint: String) { self.endpoint = endpoint }
    }

    let options: Options
    let context: ZMQContext
    let stop: StopFlag?
    let logger: Logger
    /// Where progress lines of a batch go (jobs done of total, ETA; every 10 s); nil: nowhere.
    public var progress: (@Sendable (String) -> Void)?
    /// The shell's clock in milliseconds (monotonic), the only time the session sees.
    let clock: () -> Tick
    var batches = 0

    /// - Parameter clock: milliseconds on a monotonic clock (default: since this call, on `ContinuousClock`).
    public init(options: Options, context: ZMQContext, stop: StopFlag? = nil, logger: Logger, clock: (() -> Tick)? = nil) {
        self.options = options; self.context = context; self.stop = stop; self.logger = logger
        if let clock { self.clock = clock } else {
            let continuous = ContinuousClock(), started = continuous.now
            self.clock = { Tick((continuous.now - started) / .milliseconds(1)) }
        }
    }

    public func run(_ jobs: [AdaptationJob]) throws -> [AdaptationOutcome] {
        guard !jobs.isEmpty else { return [] }
        batches += 1
        var settings = EvalClientSession.Settings()
        settings.heartbeatIntervalMs = options.heartbeatIntervalMs
        settings.liveness = options.liveness
        settings.initialBackoffMs = options.initialBackoffMs
        settings.maxBackoffMs = options.maxBackoffMs
        settings.unreachableTimeoutMs = options.unreachableTimeoutMs
        settings.endpoint = options.endpoint
        settings.requestPrefix = "eval-\(getpid())-b\(batches)"
        var session = EvalClientSession(jobs: jobs, settings: settings)
        let reporter = progress.map { JobProgress(total: jobs.count, label: "eval batch \(batches) on the cluster", sink: $0) }
        let start = clock()
        func now() -> Tick { clock() }
        var socket: ZMQSocket?
        defer { socket?.close() }
        /// Carries out the session's actions; returns the outcomes once the batch is done.
        func perform(_ event: EvalClientSession.Event) throws -> [AdaptationOutcome]? {
            for action in session.handle(event, now: now()) {
                switch action {
                case .connect:
                    let s = try context.socket(.dealer)
                    try s.setMaxMessageSize(Int64(options.maxMessageBytes))
                    if let curve = options.curve { try s.makeCurveClient(serverPublicKey: curve.serverPublicKey, keys: curve.keys) }
                    try s.connect(options.endpoint)
                    socket = s
                case .disconnect:
                    socket?.close()
                    socket = nil
                case .send(let message):
                    try socket?.send([WireCodec.encode(message)], dontWait: false)
                case .completed:
                    reporter?.completed()
                case .finished(let outcomes):
                    logger.info("eval batch \(batches): \(jobs.count) job(s) done in \(String(format: "%.1f", Double(now() - start) / 1000)) s")
                    return outcomes
                case .failed(let reason):
                    throw ClusterError.aborted(reason)
                case .log(let level, let text):
                    logger.log(level: level.loggerLevel, "eval batch \(batches): \(text)")
                }
            }
            return nil
        }
        if let done = try perform(.start) { return done }
        while true {
            if stop?.isSet == true, let done = try perform(.stop) { return done }
            if let current = socket {
                if try ZMQPoller.poll([current], timeoutMs: 50)[0] {
                    // Read until drained, or the session closed this connection (a resubmission) or ended the batch.
                    while socket === current, let frames = try current.receive() {
                        if let done = try perform(.received(frames)) { return done }
                    }
                }
            } else {
                usleep(20_000)
            }
            if let done = try perform(.tick) { return done }
        }
    }
}
