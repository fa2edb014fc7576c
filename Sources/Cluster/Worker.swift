import ClusterCore
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// A total several threads add to: env steps the compute threads have taken (for heartbeats: the coordinator
/// tells a slow worker, whose count moves, from a stuck one), jobs started.
final class SharedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total: UInt64 = 0
    func add(_ steps: Int) { lock.lock(); total &+= UInt64(max(steps, 0)); lock.unlock() }
    var value: UInt64 { lock.lock(); defer { lock.unlock() }; return total }
}

/// No coordinator ever welcomed this worker within `--give-up-after`.
public struct WorkerGaveUp: Error, CustomStringConvertible {
    public let endpoint: String
    public let seconds: Double
    /// It had a coordinator, lost it, and found none again (`--give-up-after-lost`).
    public var lost = false
    public var description: String {
        if lost {
            return "lost the coordinator at \(endpoint) and none answered for \(Int(seconds)) s (--give-up-after-lost): the run is over or its coordinator is gone for good\(unresolvableHost(endpoint).map { " (\($0))" } ?? "")"
        }
        if let why = unresolvableHost(endpoint) {
            return "no coordinator answered at \(endpoint) in \(Int(seconds)) s (--give-up-after): \(why)"
        }
        return "no coordinator answered at \(endpoint) in \(Int(seconds)) s (--give-up-after): is it running, is the address right (a stale coordinator.endpoint?), is its port reachable?"
    }
}

/// The coordinator refused this worker for good (its numerics are not the run's): retrying cannot help.
public struct WorkerRefused: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "the coordinator refused this worker: \(reason)" }
}

/// A blocking queue of jobs between the socket thread and the compute threads, holding at most `capacity` jobs
/// queued or running (twice the threads).
///
/// Why bounded: an honest coordinator gives a worker no more jobs than it has threads (its record of the worker's load
/// frees a thread only when the result arrives, after the compute thread let go of the job). A worker registered anew
/// (its coordinator restarted, or it was disconnected) may still be finishing its earlier jobs, so up to as many again
/// wait behind them; past that its threads are stuck — a worker disconnected for stalling registers again with its full
/// thread count — and each queued job holds a θ copy. A job over the bound is dropped: the coordinator's deadline takes
/// it back and suspects this worker, which is what a worker that cannot start it should get (issue 39, defect 6).
final class JobQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [WorkerJob] = []
    private var running = 0
    private var closed = false
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Queues `job`; false (and not queued) when `capacity` jobs are already queued or running.
    func put(_ job: WorkerJob) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard jobs.count + running < capacity else { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// The next job, or nil once the queue is closed; the caller calls `finished()` when it is done with it.
    func take() -> WorkerJob? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty && !closed { condition.wait() }
        if closed { return nil }
        running += 1
        return jobs.removeFirst()
    }

    /// A job taken is done (its reply is about to be handed back).
    func finished() {
        condition.lock(); running -= 1; condition.unlock()
    }

    /// Drops the jobs not started and returns how many there were.
    func dropQueued() -> Int {
        condition.lock(); defer { condition.unlock() }
        let count = jobs.count
        jobs = []
        return count
    }

    /// Jobs queued and running.
    var load: (queued: Int, running: Int) {
        condition.lock(); defer { condition.unlock() }
        return (jobs.count, running)
    }

    func close() {
        condition.lock(); closed = true; condition.broadcast(); condition.unlock()
    }
}

/// Encoded replies the compute threads hand to the socket thread (each followed by an empty doorbell frame on the
/// inproc PUSH/PULL pair, so the socket thread's poll wakes for it).
///
/// Why not the frames themselves: a θ-sized reply sent over inproc is copied into libzmq's message and copied out
/// again; through this queue it reaches the coordinator's socket as the bytes its compute thread packed.
final class ReplyQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var replies: [EncodedMessage] = []

    func put(_ reply: EncodedMessage) { lock.lock(); replies.append(reply); lock.unlock() }

    /// Every reply queued so far, oldest first.
    func takeAll() -> [EncodedMessage] {
        lock.lock(); defer { lock.unlock() }
        let all = replies
        replies = []
        return all
    }
}

/// The worker process: the shell of a `WorkerSession`. It owns the DEALER socket to the coordinator, the compute
/// threads and the clock; the session decides what to send, when to reconnect and what to compute.
///
/// The socket thread never computes, so heartbeats keep flowing during long inner loops. Compute threads hand
/// encoded results back through a `ReplyQueue`, ringing an inproc PUSH/PULL pair: no socket is shared.
public final class Worker {
    public struct Options: Sendable {
        public var endpoint: String
        public var threads = 1
        public var host = ProcessInfo.processInfo.hostName
        /// Used until the coordinator's welcome says otherwise.
        public var heartbeatIntervalMs = 1000
        public var liveness = 5
        public var maxMessageBytes = ClusterLimits.maxMessageBytes
        public var initialBackoffMs = 1000
        public var maxBackoffMs = 32_000
        /// CURVE: the coordinator's public key and this worker's key pair (both or neither).
        public var curve: (serverPublicKey: String, keys: CurveKeyPair)?
        /// Testing knob: after each slot, idle (factor − 1) × its compute time, to play a slow machine.
        public var slowdownFactor = 1.0
        /// Testing knob: after this many jobs, compute threads hang for good (a stuck driver, a deadlock) while
        /// the socket thread keeps heartbeating, to test that liveness of work does not rest on heartbeats.
        public var hangAfterJobs: Int?
        /// Measurement knob: sample (monotonic time, this process's CPU) at every job queued and result sent
        /// (`cpuTimeline`), for `scripts/capacity.sh`; off in a real run, where the samples would grow without bound.
        public var recordsCPUTimeline = false
        /// What slots compute: the inner loop, or an instant result for capacity measurements (`instantSlotOutcome`).
        public var compute = SlotCompute.train
        /// What this worker computes with (`NumericsReport.measure()`), sent in every hello.
        public var numerics: NumericsReport
        /// A file holding the coordinator's endpoint (the run folder's `coordinator.endpoint`), read again on every
        /// (re)connect so a resumed coordinator on another port is found; overrides `endpoint` when readable.
        public var endpointFile: String?
        /// A worker that has never been welcomed by any coordinator gives up after this long (nil: never).
        public var giveUpAfterMs: Int? = 300_000
        public var giveUpAfterLostMs: Int? = 600_000
        /// `WorkerSession.Settings.waitForNextRun`.
        public var waitForNextRun = false

        public init(endpoint: String, threads: Int = 1, numerics: NumericsReport) {
            self.endpoint = endpoint
            self.threads = threads
            self.numerics = numerics
        }

        /// The session's settings from these options.
        var session: WorkerSession.Settings {
            var s = WorkerSession.Settings(
                hello: Hello(host: host, cores: ProcessInfo.processInfo.activeProcessorCount, threads: threads, numerics: numerics),
                kernel: .selected)
            s.heartbeatIntervalMs = heartbeatIntervalMs
            s.liveness = liveness
            s.initialBackoffMs = initialBackoffMs
            s.maxBackoffMs = maxBackoffMs
            s.giveUpAfterMs = giveUpAfterMs
            s.giveUpAfterLostMs = giveUpAfterLostMs
            s.waitForNextRun = waitForNextRun
            return s
        }
    }

    let options: Options
    let context: ZMQContext
    let stop: StopFlag
    let logger: Logger
    let jobs: JobQueue
    let replies = ReplyQueue()
    let envSteps = SharedCounter()
    let jobsStarted = SharedCounter()
    let resultsEndpoint: String
    /// The shell's clock: milliseconds since the worker started, the only time the session ever sees.
    let now: () -> Tick
    var session: WorkerSession
    var dealer: ZMQSocket?
    /// The endpoint of the current connection.
    var connectedTo = ""
    var finished = false
    /// This process's CPU seconds when the first job was queued (`cpuSinceFirstJob`).
    var cpuAtFirstJob: Double?
    /// (monotonic seconds, process CPU seconds) at every job queued and every message sent after the first job,
    /// when `Options.recordsCPUTimeline` is on.
    public private(set) var cpuTimeline: [(monotonic: Double, cpu: Double)] = []

    /// - Parameter clock: milliseconds on a monotonic clock (default: since this call, on `ContinuousClock`).
    public init(options: Options, context: ZMQContext, stop: StopFlag, logger: Logger, clock: (() -> Tick)? = nil) {
        self.options = options
        self.context = context
        self.stop = stop
        self.logger = logger
        session = WorkerSession(settings: options.session)
        jobs = JobQueue(capacity: 2 * max(1, options.threads))
        resultsEndpoint = "inproc://metatrain-results-\(getpid())-\(UInt(bitPattern: ObjectIdentifier(jobs).hashValue))"
        if let clock { now = clock } else {
            let continuous = ContinuousClock(), started = continuous.now
            now = { Tick((continuous.now - started) / .milliseconds(1)) }
        }
    }

    /// Slot and eval replies handed back to the coordinator.
    public var slotsCompleted: Int { session.jobsCompleted }

    /// Runs until the coordinator says the run is over, or a stop signal arrives.
    ///
    /// Compute threads may still be inside a slot when this returns: end the process with `_exit`
    /// (as `metatrain worker` does) rather than running exit handlers under their feet.
    public func run() throws {
        let results = try context.socket(.pull)
        try results.bind(resultsEndpoint)
        for index in 0..<options.threads { startComputeThread(index) }
        defer {
            // Stop taking jobs and let libzmq flush the last message (a goodbye) before the caller exits.
            jobs.close()
            dealer?.close()
            usleep(250_000)
        }
        try perform(.start)
        while !finished {
            if stop.isSet { try perform(.stop); break }
            let sockets = [results] + (dealer.map { [$0] } ?? [])
            let ready = try ZMQPoller.poll(sockets, timeoutMs: dealer == nil ? 20 : session.pollTimeoutMs)
            if ready[0] {
                while try results.receiveFrames() != nil {}  // doorbells: the replies are in the queue
                for reply in replies.takeAll() { try perform(.computed(reply)) }
            }
            if ready.count > 1, ready[1], let socket = dealer {
                // Read until the socket is drained, or the session closed it (a reconnect) or the run ended.
                // A head and its θ frame are decoded where libzmq holds them: θ is copied out once, checked as it goes.
                while !finished, dealer === socket, let frames = try socket.receiveFrames() {
                    if frames.count == 2 {
                        let decoded = frames.withUnsafeBytes(0) { head in
                            frames.withUnsafeBytes(1) { field in
                                Result { () throws(WireError) in try WireCodec.decode(head: head, field: field) }
                            }
                        }
                        try perform(.decoded(decoded))
                    } else {
                        try perform(.received((0..<frames.count).map { frames.bytes($0) }))
                    }
                }
            }
            if !finished { try perform(.tick(envSteps: envSteps.value)) }
        }
    }

    /// CPU seconds this process (every thread) spent from its first job on, and the jobs its compute threads
    /// started: what its slots cost, without the start-up (numerics check, connection, registration) before them;
    /// (0, 0) for a worker that never got a job.
    public func cpuSinceFirstJob() -> (seconds: Double, jobs: Int) {
        (cpuAtFirstJob.map { ProcessUsage.now().cpuSeconds - $0 } ?? 0, Int(jobsStarted.value))
    }

    /// Hands one event to the session and carries out what it says, in order.
    func perform(_ event: WorkerSession.Event) throws {
        for action in session.handle(event, now: now()) {
            switch action {
            case .connect: try connect()
            case .disconnect:
                dealer?.close()
                dealer = nil
            case .send(let message): transmit(WireCodec.encodeMessage(message))
            case .transmit(let reply): transmit(reply)
            case .compute(let job):
                if cpuAtFirstJob == nil { cpuAtFirstJob = ProcessUsage.now().cpuSeconds }
                sampleCPU()
                if !jobs.put(job) {
                    let load = jobs.load
                    logger.warning("dropped a job: \(load.running) running and \(load.queued) queued already, on \(options.threads) thread(s) (compute threads stuck?); the coordinator takes it back at its deadline")
                }
            case .dropQueuedJobs:
                let dropped = jobs.dropQueued()
                if dropped > 0 { logger.info("dropped \(dropped) queued job(s) the coordinator no longer counts as this worker's") }
            case .log(let level, let text): logger.log(level: level.loggerLevel, "\(text)")
            case .finish: finished = true
            case let .giveUp(afterMs, lost): throw WorkerGaveUp(endpoint: connectedTo, seconds: Double(afterMs) / 1000, lost: lost)
            case .refused(let reason): throw WorkerRefused(reason: reason)
            }
        }
    }

    /// Where to connect now: the endpoint file's content when it names a tcp:// endpoint, else `options.endpoint`.
    var currentEndpoint: String {
        if let path = options.endpointFile,
           let text = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
           text.hasPrefix("tcp://") {
            return text
        }
        return options.endpoint
    }

    func connect() throws {
        let socket = try context.socket(.dealer)
        try socket.setMaxMessageSize(Int64(options.maxMessageBytes))
        if let curve = options.curve { try socket.makeCurveClient(serverPublicKey: curve.serverPublicKey, keys: curve.keys) }
        let endpoint = currentEndpoint
        if endpoint != connectedTo && !connectedTo.isEmpty { logger.info("coordinator endpoint is now \(endpoint) (was \(connectedTo))") }
        try socket.connect(endpoint)
        connectedTo = endpoint
        dealer = socket
    }

    func transmit(_ message: EncodedMessage) {
        guard let dealer else { return }
        do { try dealer.send(borrowing: message.start, count: message.count, owner: message) } catch {
            logger.debug("send failed: \(error)")
        }
        if cpuAtFirstJob != nil { sampleCPU() }
    }

    /// One `cpuTimeline` sample, when recording.
    func sampleCPU() {
        guard options.recordsCPUTimeline else { return }
        cpuTimeline.append((ProcessUsage.monotonicSeconds(), ProcessUsage.now().cpuSeconds))
    }

    /// Starts a compute thread; it owns its own PUSH socket (sockets never cross threads).
    func startComputeThread(_ index: Int) {
        let jobs = self.jobs, logger = self.logger, context = self.context, endpoint = resultsEndpoint
        let slowdown = options.slowdownFactor, hangAfter = options.hangAfterJobs, counter = envSteps, compute = options.compute
        let jobsStarted = self.jobsStarted, replies = self.replies
        let thread = Thread {
            let push: ZMQSocket
            do {
                push = try context.socket(.push)
                try push.setHighWaterMarks(send: 0, receive: 0)
                try push.connect(endpoint)
            } catch {
                logger.error("compute thread \(index) could not start: \(error)")
                return
            }
            while let job = jobs.take() {
                if let hangAfter, jobsStarted.value >= UInt64(hangAfter) {
                    logger.warning("test switch --test-hang-after \(hangAfter): compute thread \(index) hangs for good")
                    while true { sleep(3600) }
                }
                jobsStarted.add(1)
                let reply: Message
                let started = Date()
                var reported = 0
                let progress: (Int) -> Void = { step in counter.add(step - reported); reported = step }
                switch job {
                case let .slot(a, theta, kernel):
                    do {
                        let outcome = compute == .instant ? instantSlotOutcome(parameterCount: theta.count, seed: a.seed)
                            : try GEMMBackend.$current.withValue(kernel) {
                                try runSlot(theta: theta, task: a.task, algorithm: a.algorithm, settings: a.innerLoop, seed: a.seed,
                                            progress: progress)
                            }
                        if let problem = outcome.update.divergence {
                            // Deterministic: any worker computes the same, so this is the run's, not ours to retry.
                            logger.error("slot \(a.key) diverged: \(problem)")
                            reply = .error(ErrorReply(code: .diverged, message: problem, key: a.key))
                        } else {
                            reply = .result(SlotResult(runID: a.runID, key: a.key, parameterVersion: a.parameterVersion,
                                                       update: outcome.update, statistics: outcome.statistics))
                        }
                    } catch {
                        logger.error("slot \(a.key) failed: \(error)")
                        reply = .error(ErrorReply(code: .taskFailed, message: Worker.errorText(error), key: a.key))
                    }
                case let .eval(e, kernel):
                    reply = .evalOutcome(GEMMBackend.$current.withValue(kernel) { Self.runEval(e, logger: logger, progress: progress) })
                }
                if slowdown > 1 { usleep(UInt32(min(Date().timeIntervalSince(started) * (slowdown - 1), 3600) * 1e6)) }
                jobs.finished()
                replies.put(WireCodec.encodeMessage(reply))
                do { try push.send([[]], dontWait: false) } catch {
                    logger.error("compute thread could not wake the socket thread for a reply (it goes with the next one): \(error)")
                }
            }
            push.close()
        }
        thread.name = "metatrain-compute-\(index)"
        thread.start()
    }
}

extension Worker {
    /// Runs one eval job; a failure (a diverged adaptation included) comes back as an outcome with the
    /// error, for the coordinator to retry elsewhere.
    static func runEval(_ e: EvalJobMessage, logger: Logger, progress: ((Int) -> Void)? = nil) -> EvalOutcome {
        do {
            return EvalOutcome(key: e.key, outcome: try e.job.run(progress: progress))
        } catch {
            logger.error("\(e.key) failed: \(error)")
            return EvalOutcome(key: e.key, outcome: AdaptationOutcome(returns: [], final: nil), error: errorText(error))
        }
    }

    /// An error's text, cut to `ClusterLimits.maxErrorTextBytes` (a longer one would be refused as malformed).
    static func errorText(_ error: Error) -> String { ClusterLimits.errorText("\(error)") }
}
