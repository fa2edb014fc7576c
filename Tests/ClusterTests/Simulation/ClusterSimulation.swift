import Cluster
import Foundation
import MetaLearning
import NeuralNet
import Wire

/// One seeded schedule of an unreliable cluster: the real Scheduler, real worker and eval-client sessions, and
/// simulated sockets, compute threads, clock and faults (joins, kills, pauses, delays, reorders, duplicates,
/// coordinator restarts from checkpoints). `run()` plays it to the end and returns what broke, if anything.
///
/// Every message between the roles goes through the wire codec, θ as head + shared field as the coordinator sends
/// it, and the coordinator's own message → event mapping (`SchedulerEvent.inbound`). The invariants are checked
/// as the commands come out (`carryOut`) and at the end.
final class ClusterSimulation {
    typealias Payload = UInt64

    enum Envelope {
        case toCoordinator([UInt8], from: Peer, epoch: Int)
        case toWorker(Int, [[UInt8]], peer: Peer)
        case toClient([UInt8], peer: Peer)
    }

    /// A worker process: the real session, and the simulated threads, transport and faults around it.
    struct SimWorker {
        var session: WorkerSession
        /// The current connection's routing id at the coordinator.
        var peer = Peer([])
        var connected = false
        /// A straggler: computes 10× slower (the backup-task rule must cope).
        var slow = false
        var alive = true
        var pausedUntil: Tick = -1
        var stopped = false
        var killedAt: Tick? = nil
        /// Registers, takes work, heartbeats, never computes: its env-step count never moves.
        var blackHole = false
        var queue: [(WorkerJob, Tick)] = []  // computing: finishes at Tick
        /// The env-step total its heartbeats report: moves while it computes.
        var envSteps: UInt64 = 0
    }

    struct Outcome {
        var finished = false
        /// The eval request was accepted while training ran, and every outcome reached the client.
        var evalServed = false
        var failures: [String] = []
    }

    static let traceSeed = ProcessInfo.processInfo.environment["SIM_TRACE_SEED"].flatMap { UInt64($0) }
    let interval = 100, liveness = 3
    let maxDelay: Tick = 40
    let end: Tick = 120_000

    let seed: UInt64
    let restarts: Bool
    var rng: SeededRNG
    let iterations: Int, metaBatch: Int
    var settings: SchedulerSettings
    var scheduler: Scheduler<Payload>
    var outcome = Outcome()
    var now: Tick = 0

    // The run: the reference trajectory θ_t for t = 0...iterations, and what the shell applied and checkpointed.
    var reference: [UInt64] = [0]
    var theta: UInt64 = 0, applied = 0
    /// The current iteration's payloads folded so far, in slot order.
    var folded: [UInt64] = []
    var checkpoint: (iteration: Int, theta: UInt64) = (0, 0)
    var epoch = 0

    // The transport: messages in flight, routing ids, per-connection FIFO order.
    var inFlight: [(Tick, Envelope)] = []
    var nextPeer = 1
    var channelClock: [String: Tick] = [:]
    var workers: [SimWorker] = []
    var workerOf: [Peer: Int] = [:]
    var registrationOf: [Peer: String] = [:]
    var welcomes: [Peer: Int] = [:]
    /// θ sends per registration and version, and θ-missing replies per registration (invariant 7).
    var transfers: [String: [Int: Int]] = [:], missing: [String: Int] = [:]

    // The eval client: `jobs`, submitted at `submitAt` by a real EvalClientSession.
    let jobs: [AdaptationJob]
    let submitAt: Tick
    var client: EvalClientSession?
    var clientPeer = Peer([]), clientConnected = false, clientPeers: Set<Peer> = []
    var clientDone = false, accepted = false, evalLost = false
    // The coordinator shell's side of eval requests: the jobs of each numbered request, the outcomes it holds.
    var requests: [Int: [Int: AdaptationJob]] = [:]
    var forwarded: Set<[Int]> = [], forwardedJobs: Set<Int> = []
    /// The first eval request number of the next Scheduler (one after a restart starts 1,000 later).
    var nextRequest = 1_001

    /// `pipelined`: the next iteration's slots run while the current one's finish, each adapting the θ version
    /// before its iteration's (`SchedulerSettings.pipelined`).
    init(seed: UInt64, restarts: Bool, pipelined: Bool = false) throws {
        self.seed = seed
        self.restarts = restarts
        rng = SeededRNG(seed: seed)
        iterations = 3 + rng.nextInt(below: 5)
        metaBatch = 1 + rng.nextInt(below: 6)
        settings = SchedulerSettings(runID: "sim", iterations: iterations, metaBatch: metaBatch,
                                     heartbeatIntervalMs: interval, liveness: liveness,
                                     checkpointInterval: 1 + rng.nextInt(below: 3))
        // The chaos here kills or pauses a worker every 2 s among a handful: an eval job can meet 5 dying workers
        // in a row by chance, which the give-up rule for jobs that kill workers (tested in SchedulerEvalTests)
        // would take for a poison job. Give it more room here.
        settings.limits.evalGiveUpAttempts = 12
        settings.pipelined = pipelined
        scheduler = try Scheduler<Payload>(settings: settings)
        jobs = (0..<(1 + rng.nextInt(below: 12))).map(SchedulerSimulationTests.evalJob)
        submitAt = Tick(10 * (1 + rng.nextInt(below: 150)))
        for t in 0..<iterations {
            let base = settings.baseVersion(of: t)
            reference.append(SchedulerSimulationTests.update(reference[t], (0..<metaBatch).map { SchedulerSimulationTests.work(t, $0, base: base) }))
        }
    }

    func fail(_ s: String) { if outcome.failures.count < 5 { outcome.failures.append("seed \(seed): \(s)") } }
    func trace(_ s: @autoclosure () -> String) { if Self.traceSeed == seed { print("\(now) \(s())") } }
    func delay() -> Tick { Tick(rng.nextInt(below: Int(maxDelay) + 1)) }
    /// One connection is FIFO (TCP + ZeroMQ); messages of different connections interleave freely.
    func deliveryTime(_ channel: String) -> Tick {
        let t = max(now + delay(), channelClock[channel] ?? 0)
        channelClock[channel] = t
        return t
    }
    func newPeer() -> Peer { defer { nextPeer += 1 }; return Peer([UInt8(nextPeer & 255), UInt8(nextPeer >> 8)]) }

    /// Plays the schedule to its end (the run finished, or 120 simulated seconds passed) and checks the end state.
    func run() throws -> Outcome {
        addWorker()
        while now < end && !outcome.finished {
            now += 10
            try chaos()
            deliver()
            for w in workers.indices where workers[w].alive && !workers[w].stopped && now >= workers[w].pausedUntil {
                compute(w)
                feed(w, .tick(envSteps: workers[w].envSteps))
            }
            // The eval client: submit once, then its session keeps the request alive until every outcome is in.
            if client == nil && now >= submitAt {
                var s = EvalClientSession.Settings()
                s.heartbeatIntervalMs = interval; s.liveness = liveness
                s.initialBackoffMs = 100; s.maxBackoffMs = 800
                client = EvalClientSession(jobs: jobs, settings: s)
                feedClient(.start)
            } else if !clientDone {
                feedClient(.tick)
            }
            if now % 50 == 0 {
                carryOut(scheduler.handle(.tick, now: now))
                if !scheduler.strandedSlots.isEmpty { fail("slots \(scheduler.strandedSlots) stranded after a tick at \(now) ms") }
            }
        }
        let allForwarded = forwardedJobs.count == jobs.count
        if outcome.finished && accepted && !evalLost && !allForwarded {
            fail("the run finished with eval jobs \(jobs.indices.filter { !forwardedJobs.contains($0) }) never forwarded")
        }
        outcome.evalServed = accepted && allForwarded
        if !outcome.finished { fail("run did not finish by \(end) ms: \(applied)/\(iterations) applied") }
        if outcome.finished && theta != reference[iterations] { fail("final θ differs from the reference") }
        // Invariant 7: θ travels once per welcome per version.
        for (registration, versions) in transfers {
            for (version, count) in versions where count > 1 + (missing[registration] ?? 0) {
                fail("θ version \(version) sent \(count) times to \(registration)")
            }
        }
        return outcome
    }

    /// At most one fault per 10 ms: a worker joins, dies, or pauses; or (with restarts) the coordinator restarts.
    func chaos() throws {
        let roll = rng.nextInt(below: 1000)
        let living = workers.indices.filter { workers[$0].alive && !workers[$0].stopped }
        if roll < 6 || living.isEmpty { addWorker() }
        else if roll < 9, let victim = living.randomElement(using: &rng), living.count > 1 {
            workers[victim].alive = false; workers[victim].killedAt = now
        } else if roll < 11, let victim = living.randomElement(using: &rng) {
            workers[victim].pausedUntil = now + Tick(interval * liveness) + 200 + Tick(rng.nextInt(below: 300))
        } else if restarts && roll < 13 {
            // Coordinator killed and resumed from its last checkpoint; its ROUTER forgets every peer, and each
            // connection that reconnects (the sessions do not notice) gets a new routing id.
            epoch += 1
            settings.incarnation = "c\(epoch)"
            // As the coordinator does from its clock: a restarted Scheduler never reuses a request number.
            settings.firstEvalRequest = nextRequest
            nextRequest += 1_000
            scheduler = try Scheduler<Payload>(settings: settings, startIteration: checkpoint.iteration)
            // Resumed after the last iteration, the coordinator ends at once (no --serve): the client's
            // remaining jobs are lost with it, which it reports, rather than a fault of the scheduler.
            if scheduler.isDone { evalLost = true; outcome.finished = true }
            theta = checkpoint.theta; applied = checkpoint.iteration; folded = []
            requests = [:]
            inFlight.removeAll { if case .toCoordinator = $0.1 { return true } else { return false } }
            for i in workers.indices where workers[i].connected {
                let p = newPeer()
                workers[i].peer = p
                workerOf[p] = i
            }
            if clientConnected { clientPeer = newPeer(); clientPeers.insert(clientPeer) }
        }
    }

    /// Delivers what is due, in delivery order (ties in send order), then carries out the scheduler's commands.
    func deliver() {
        let due = inFlight.enumerated().filter { $0.element.0 <= now }.sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }
        inFlight = inFlight.filter { $0.0 > now }
        var commands: [SchedulerCommand<Payload>] = []
        for (_, (_, envelope)) in due {
            switch envelope {
            case let .toCoordinator(bytes, peer, sentEpoch):
                guard sentEpoch == epoch else { continue }
                // A killed worker's messages already on the wire still arrive; the peer id is the connection's.
                let event = inbound(peer, bytes)
                commands += scheduler.handle(event, now: now)
                if !scheduler.strandedSlots.isEmpty { fail("slots \(scheduler.strandedSlots) stranded after \(event) at \(now) ms") }
            case let .toWorker(w, message, peer):
                let worker = workers[w]
                guard worker.alive, !worker.stopped, worker.connected, worker.peer == peer else { continue }
                if now < worker.pausedUntil {  // SIGSTOPped: the message waits in the socket
                    inFlight.append((worker.pausedUntil, envelope))
                    continue
                }
                feed(w, .received(message))
            case let .toClient(bytes, peer):
                guard clientConnected, peer == clientPeer else { continue }
                feedClient(.received([bytes]))
            }
        }
        carryOut(commands)
    }

    /// Worker `w`'s computations that are due hand their replies to its session.
    func compute(_ w: Int) {
        let done = workers[w].queue.filter { $0.1 <= now }
        workers[w].queue.removeAll { $0.1 <= now }
        for (job, _) in done {
            let reply: Message
            switch job {
            case let .slot(a, theta, _):
                // The update names its slot and the θ version it was computed on (the shell checks both).
                reply = .result(SlotResult(runID: a.runID, key: a.key, parameterVersion: a.parameterVersion,
                                           update: ParameterVector([Float(a.key.iteration), Float(a.key.slot), theta.values[0]]),
                                           statistics: SlotStatistics()))
            case .eval(let message, _):
                reply = .evalOutcome(EvalOutcome(key: message.key, outcome: SchedulerSimulationTests.evalResult(message)))
            }
            feed(w, .computed(WireCodec.encodeMessage(reply)))
        }
        if !workers[w].queue.isEmpty { workers[w].envSteps += 10 }
    }
}
