import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// Work for a compute thread: a training slot with the θ it starts from, or a meta-evaluation job.
/// Each carries the kernel its run computes on (the portable one under `numerics: portable`).
enum Job: @unchecked Sendable {
    case slot(Assignment, theta: ParameterVector, kernel: GEMMBackend)
    case eval(EvalJobMessage, kernel: GEMMBackend)
}

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
    public var description: String {
        "no coordinator answered at \(endpoint) in \(Int(seconds)) s (--give-up-after): is it running, is the address right (a stale coordinator.endpoint?), is its port reachable?"
    }
}

/// The coordinator refused this worker for good (its numerics are not the run's): retrying cannot help.
public struct WorkerRefused: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "the coordinator refused this worker: \(reason)" }
}

/// A blocking queue of jobs between the socket thread and the compute threads.
final class JobQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var closed = false

    func put(_ job: Job) {
        condition.lock(); jobs.append(job); condition.signal(); condition.unlock()
    }

    /// The next job, or nil once the queue is closed.
    func take() -> Job? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty && !closed { condition.wait() }
        return closed ? nil : jobs.removeFirst()
    }

    func close() {
        condition.lock(); closed = true; condition.broadcast(); condition.unlock()
    }
}

/// The worker process: registers with the coordinator, runs assigned slots on compute threads,
/// returns results, and keeps the connection alive (Paranoid Pirate: heartbeats both ways, any
/// message counts, reconnect with backoff 1 s doubling to 32 s when the coordinator goes silent).
///
/// The socket thread never computes, so heartbeats keep flowing during long inner loops. Compute
/// threads hand encoded results back over an inproc PUSH/PULL pair: no socket is shared.
public final class Worker {
    public struct Options: Sendable {
        public var endpoint: String
        public var threads = 1
        public var host = ProcessInfo.processInfo.hostName
        /// Used until the coordinator's welcome says otherwise.
        public var heartbeatIntervalMs = 1000
        public var liveness = 5
        public var maxMessageBytes = 256 * 1024 * 1024
        public var initialBackoffMs = 1000
        public var maxBackoffMs = 32_000
        /// CURVE: the coordinator's public key and this worker's key pair (both or neither).
        public var curve: (serverPublicKey: String, keys: CurveKeyPair)?
        /// Testing knob: after each slot, idle (factor − 1) × its compute time, to play a slow machine.
        public var slowdownFactor = 1.0
        /// Testing knob: after this many jobs, compute threads hang for good (a stuck driver, a deadlock) while
        /// the socket thread keeps heartbeating, to test that liveness of work does not rest on heartbeats.
        public var hangAfterJobs: Int?
        /// What slots compute: the inner loop, or an instant result for capacity measurements (`instantSlotOutcome`).
        public var compute = SlotCompute.train
        /// What this worker computes with (`NumericsReport.measure()`), sent in every hello.
        public var numerics: NumericsReport
        /// A file holding the coordinator's endpoint (the run folder's `coordinator.endpoint`), read again on every
        /// (re)connect so a resumed coordinator on another port is found; overrides `endpoint` when readable.
        public var endpointFile: String?
        /// A worker that has never been welcomed by any coordinator gives up after this long (nil: never).
        public var giveUpAfterMs: Int? = 300_000

        public init(endpoint: String, threads: Int = 1, numerics: NumericsReport) {
            self.endpoint = endpoint
            self.threads = threads
            self.numerics = numerics
        }
    }

    let options: Options
    let context: ZMQContext
    let stop: StopFlag
    let logger: Logger
    let jobs = JobQueue()
    let envSteps = SharedCounter()
    let jobsStarted = SharedCounter()
    let resultsEndpoint: String
    let clock = ContinuousClock()
    let started: ContinuousClock.Instant
    var dealer: ZMQSocket?
    var runID: String?
    var workerID = ""
    var cached: (version: Int, theta: ParameterVector)?
    /// The kernel this run's slots and eval jobs run on: the process's, or the portable one when the
    /// welcome says `numerics: portable`.
    var kernel = GEMMBackend.selected
    var heartbeatIntervalMs: Int
    var liveness: Int
    var lastHeard: Tick = 0
    var lastSent: Tick = 0
    var backoffMs: Int
    /// Whether any coordinator has welcomed this worker (a worker that never got through gives up eventually).
    var everWelcomed = false
    /// The endpoint of the current connection.
    var connectedTo = ""
    /// Slot outcomes (results or failures) handed back to the coordinator.
    public private(set) var slotsCompleted = 0

    public init(options: Options, context: ZMQContext, stop: StopFlag, logger: Logger) {
        self.options = options
        self.context = context
        self.stop = stop
        self.logger = logger
        heartbeatIntervalMs = options.heartbeatIntervalMs
        liveness = options.liveness
        backoffMs = options.initialBackoffMs
        resultsEndpoint = "inproc://metatrain-results-\(getpid())-\(UInt(bitPattern: ObjectIdentifier(jobs).hashValue))"
        started = clock.now
    }

    var now: Tick { Tick((clock.now - started) / .milliseconds(1)) }

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
        try connect()
        while true {
            if stop.isSet {
                logger.info("stopping: saying goodbye (the coordinator requeues this worker's slots)")
                send(.goodbye(reason: "worker stopping"))
                return
            }
            guard let socket = dealer else { return }
            let ready = try ZMQPoller.poll([socket, results], timeoutMs: max(5, min(100, heartbeatIntervalMs / 4)))
            if ready[1] {
                while let frames = try results.receive() {
                    if let bytes = frames.first { forward(bytes); slotsCompleted += 1 }
                }
            }
            if ready[0] {
                while let frames = try socket.receive() {
                    if try !handle(frames) { return }
                }
            }
            if now - lastSent >= Tick(heartbeatIntervalMs) { send(.heartbeat(envSteps: envSteps.value)) }
            if now - lastHeard > Tick(heartbeatIntervalMs * liveness) {
                try giveUpIfNeverWelcomed()
                logger.warning("coordinator at \(connectedTo) silent for \(now - lastHeard) ms: reconnecting in \(backoffMs) ms")
                try reconnect()
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

    /// Throws when no coordinator has ever welcomed this worker within `giveUpAfterMs`: a stale endpoint, a wrong
    /// address or a coordinator that never came must end in a clear error, not a worker retrying forever.
    func giveUpIfNeverWelcomed() throws {
        guard !everWelcomed, let limit = options.giveUpAfterMs, now > Tick(limit) else { return }
        throw WorkerGaveUp(endpoint: connectedTo, seconds: Double(now) / 1000)
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
        lastHeard = now
        send(.hello(hello))
    }

    var hello: Hello {
        Hello(host: options.host, cores: ProcessInfo.processInfo.activeProcessorCount, threads: options.threads,
              previousWorkerID: workerID, numerics: options.numerics)
    }

    /// Closes the connection, waits the backoff (doubling up to the maximum), and registers again.
    func reconnect() throws {
        dealer?.close()
        dealer = nil
        let deadline = now + Tick(backoffMs)
        while now < deadline && !stop.isSet { usleep(20_000) }
        try giveUpIfNeverWelcomed()
        backoffMs = min(backoffMs * 2, options.maxBackoffMs)
        try connect()
    }

    func send(_ message: Message) {
        forward(WireCodec.encode(message))
    }

    func forward(_ bytes: [UInt8]) {
        guard let dealer else { return }
        do {
            try dealer.send([bytes])
            lastSent = now
        } catch {
            logger.debug("send failed: \(error)")
        }
    }

    /// Handles one inbound message; returns false when the worker should exit.
    func handle(_ frames: [[UInt8]]) throws -> Bool {
        lastHeard = now
        // One frame, or a head and the θ frame shared by every worker it goes to (protocol 5).
        guard frames.count == 1 || frames.count == 2 else {
            logger.warning("dropped a \(frames.count)-frame message from the coordinator")
            return true
        }
        let message: Message
        do { message = try WireCodec.decode(frames: frames) } catch {
            logger.warning("dropped an invalid message from the coordinator: \(error)")
            send(.error(ErrorReply(code: error.isVersionMismatch ? .protocolVersion : .malformed, message: "\(error)")))
            return true
        }
        switch message {
        case .welcome(let w):
            if runID != w.runID {
                if runID != nil { logger.info("joined run \(w.runID) (was \(runID!)): dropping cached θ") }
                cached = nil
            }
            runID = w.runID
            workerID = w.workerID
            heartbeatIntervalMs = w.heartbeatIntervalMs
            liveness = w.liveness
            backoffMs = options.initialBackoffMs
            everWelcomed = true
            kernel = w.numerics == .portable ? .portable : .selected
            logger.info("registered as \(w.workerID) in run \(w.runID); numerics \(w.numerics.rawValue), computing on kernel \(kernel.rawValue)")
        case .heartbeat:
            break
        case .assignment(let a):
            accept(a)
        case .evalJob(let j):
            jobs.put(.eval(j, kernel: kernel))
        case .error(let e):
            switch e.code {
            case .unknownWorker:
                logger.info("coordinator does not know this worker (restarted?): registering again")
                send(.hello(hello))
            case .numericsMismatch:
                logger.error("coordinator refused this worker: \(e.message)")
                throw WorkerRefused(reason: e.message)
            case .rejected:
                logger.error("coordinator disconnected this worker: \(e.message)")
                try reconnect()
            default:
                logger.warning("coordinator error (\(e.code)): \(e.message)")
            }
        case .goodbye(let reason):
            logger.info("coordinator said goodbye: \(reason)")
            return false
        case .hello, .result, .evalRequest, .evalOutcome, .statusRequest, .statusReply:
            send(.error(ErrorReply(code: .malformed, message: "a coordinator must not send \(message.kind)")))
        }
        return true
    }

    func accept(_ a: Assignment) {
        guard a.runID == runID else {
            send(.error(ErrorReply(code: .wrongRun, message: "this worker is registered in \(runID ?? "no run"), not \(a.runID)", key: a.key)))
            return
        }
        if let theta = a.parameters { cached = (a.parameterVersion, theta) }
        guard let cached, cached.version == a.parameterVersion else {
            send(.error(ErrorReply(code: .parametersMissing, message: "θ version \(a.parameterVersion) is not cached here", key: a.key)))
            return
        }
        jobs.put(.slot(a, theta: cached.theta, kernel: kernel))
    }

    /// Starts a compute thread; it owns its own PUSH socket (sockets never cross threads).
    func startComputeThread(_ index: Int) {
        let jobs = self.jobs, logger = self.logger, context = self.context, endpoint = resultsEndpoint
        let slowdown = options.slowdownFactor, hangAfter = options.hangAfterJobs, counter = envSteps, compute = options.compute
        let jobsStarted = self.jobsStarted
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
                do { try push.send([WireCodec.encode(reply)], dontWait: false) } catch {
                    logger.error("compute thread could not hand back a result: \(error)")
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

    /// An error's text, cut to fit the wire's string limit (a longer one would be refused as malformed).
    static func errorText(_ error: Error) -> String {
        let text = "\(error)"
        return text.utf8.count <= 1000 ? text : String(text.prefix(900)) + "… (cut)"
    }
}

extension WireError {
    var isVersionMismatch: Bool { if case .protocolVersion = self { return true } else { return false } }
}
