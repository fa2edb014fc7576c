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
        public var maxMessageBytes = 256 * 1024 * 1024
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
    let clock = ContinuousClock()
    var batches = 0

    public init(options: Options, context: ZMQContext, stop: StopFlag? = nil, logger: Logger) {
        self.options = options; self.context = context; self.stop = stop; self.logger = logger
    }

    /// Waits `backoffMs` (cut short by a stop signal) and doubles it, up to the maximum.
    func backOff(_ backoffMs: inout Int) {
        let deadline = clock.now + .milliseconds(backoffMs)
        while clock.now < deadline && stop?.isSet != true { usleep(20_000) }
        backoffMs = min(backoffMs * 2, options.maxBackoffMs)
    }

    public func run(_ jobs: [AdaptationJob]) throws -> [AdaptationOutcome] {
        guard !jobs.isEmpty else { return [] }
        batches += 1
        var outcomes = [AdaptationOutcome?](repeating: nil, count: jobs.count)
        let reporter = progress.map { JobProgress(total: jobs.count, label: "eval batch \(batches) on the cluster", sink: $0) }
        var missing = jobs.count
        var backoffMs = options.initialBackoffMs
        var submissions = 0
        var lastAnswer = clock.now
        let start = clock.now
        func ms(_ d: Duration) -> Int64 { Int64(d / .milliseconds(1)) }
        while true {
            submissions += 1
            let socket = try context.socket(.dealer)
            defer { socket.close() }
            try socket.setMaxMessageSize(Int64(options.maxMessageBytes))
            if let curve = options.curve { try socket.makeCurveClient(serverPublicKey: curve.serverPublicKey, keys: curve.keys) }
            try socket.connect(options.endpoint)
            let requestID = "eval-\(getpid())-b\(batches)-s\(submissions)"
            let pending = outcomes.indices.filter { outcomes[$0] == nil }.map { (index: $0, job: jobs[$0]) }
            try socket.send([WireCodec.encode(.evalRequest(EvalRequest(requestID: requestID, jobs: pending)))], dontWait: false)
            logger.info("submitted \(requestID): \(pending.count) job(s) to \(options.endpoint)")
            var heartbeatMs = Int64(options.heartbeatIntervalMs), liveness = Int64(options.liveness)
            var lastHeard = clock.now, lastSent = clock.now, lastReport = clock.now, lastOutcome = clock.now
            var resubmit = false
            while !resubmit {
                if stop?.isSet == true {
                    try? socket.send([WireCodec.encode(.goodbye(reason: "eval client stopping"))])
                    throw ClusterError.aborted("stopped by a signal with \(missing) of \(jobs.count) eval jobs missing")
                }
                let ready = try ZMQPoller.poll([socket], timeoutMs: 50)
                if ready[0] {
                    while let frames = try socket.receive() {
                        lastHeard = clock.now
                        lastAnswer = lastHeard
                        guard frames.count == 1 else { continue }
                        let message: Message
                        do { message = try WireCodec.decode(frames[0]) } catch {
                            logger.warning("dropped an invalid message from the coordinator: \(error)")
                            continue
                        }
                        switch message {
                        case .welcome(let w):
                            heartbeatMs = Int64(w.heartbeatIntervalMs); liveness = Int64(w.liveness)
                            backoffMs = options.initialBackoffMs
                            logger.info("coordinator of run \(w.runID) accepted \(requestID) as \(w.workerID)")
                        case .heartbeat:
                            break
                        case .evalOutcome(let o):
                            let i = o.key.job
                            guard i >= 0 && i < jobs.count, outcomes[i] == nil, o.error == nil else { continue }
                            if let problem = jobs[i].mismatch(o.outcome) {
                                throw ClusterError.aborted("the coordinator forwarded an outcome for job \(i) that does not fit it: \(problem)")
                            }
                            outcomes[i] = o.outcome
                            missing -= 1
                            reporter?.completed()
                            lastOutcome = clock.now
                            if missing == 0 {
                                try? socket.send([WireCodec.encode(.goodbye(reason: "eval batch complete"))])
                                logger.info("eval batch \(batches): \(jobs.count) job(s) done in \(String(format: "%.1f", Double(ms(clock.now - start)) / 1000)) s")
                                return outcomes.map { $0! }
                            }
                        case .error(let e):
                            switch e.code {
                            case .unknownWorker:
                                // The coordinator restarted and does not know the request any more.
                                logger.warning("the coordinator no longer knows \(requestID): submitting the \(missing) missing job(s) again")
                                resubmit = true
                            case .taskFailed:
                                throw ClusterError.aborted("an eval job failed on the workers: \(e.message)")
                            case .rejected:
                                // The coordinator holds as many requests as it takes: wait, then try again.
                                logger.warning("the coordinator refused \(requestID) (\(e.message)): submitting again in \(backoffMs) ms")
                                backOff(&backoffMs)
                                resubmit = true
                            default:
                                throw ClusterError.aborted("the coordinator refused the eval request (\(e.code)): \(e.message)")
                            }
                        case .goodbye(let reason):
                            throw ClusterError.aborted("the coordinator ended (\(reason)) with \(missing) of \(jobs.count) eval jobs missing")
                        case .hello, .assignment, .result, .evalRequest, .evalJob, .statusRequest, .statusReply:
                            logger.warning("ignored a \(message.kind) from the coordinator")
                        }
                        if resubmit { break }
                    }
                }
                let now = clock.now
                if ms(now - lastAnswer) > Int64(options.unreachableTimeoutMs) {
                    throw ClusterError.aborted("no coordinator answered at \(options.endpoint) for \(options.unreachableTimeoutMs / 1000) s, with \(missing) of \(jobs.count) eval jobs missing")
                }
                if ms(now - lastSent) >= heartbeatMs {
                    try? socket.send([WireCodec.encode(.heartbeat(envSteps: 0))])
                    lastSent = now
                }
                if ms(now - lastReport) >= 30_000 {
                    logger.info("eval batch \(batches): \(jobs.count - missing) of \(jobs.count) job(s) done\(ms(now - lastOutcome) > 30_000 ? "; no outcome for \(ms(now - lastOutcome) / 1000) s (does the coordinator have workers?)" : "")")
                    lastReport = now
                }
                if ms(now - lastHeard) > heartbeatMs * liveness {
                    logger.warning("coordinator silent for \(ms(now - lastHeard)) ms: reconnecting in \(backoffMs) ms and submitting the \(missing) missing job(s) again")
                    backOff(&backoffMs)
                    resubmit = true
                }
            }
        }
    }
}
