import Cluster
import Foundation
import NeuralNet
import Testing
import Wire

/// The scheduler driven by a seeded simulation of an unreliable cluster: joins, kills, pauses,
/// message delays, reorders and duplicates, coordinator restarts from checkpoints. Thousands of
/// schedules; DESIGN.md's invariants 1-4 and 7 are checked on every one, and after every step that no slot
/// is stranded (each unfinished slot is pending or held by a live worker). Some workers are black holes: they
/// register, accept work and heartbeat, and never deliver nor progress; the run must finish all the same. An eval client submits a
/// request of meta-evaluation jobs during training: every job's outcome must reach it exactly once,
/// and the eval jobs must not change the meta-parameter trajectory.
@Suite struct SchedulerSimulationTests {
    typealias Payload = UInt64

    /// The deterministic "result" of a slot: what any worker computes for it.
    static func work(_ iteration: Int, _ slot: Int) -> Payload {
        SplitMix64.mix(UInt64(iteration) &* 1_000_003 &+ UInt64(slot))
    }

    /// θ after one meta-update: depends on the payloads and on their order.
    static func update(_ theta: UInt64, _ payloads: [Payload]) -> UInt64 {
        payloads.reduce(theta) { SplitMix64.mix($0 ^ $1) }
    }

    enum ToWorker { case welcome(String), heartbeat, assign(SlotKey, Bool), evalJob(EvalKey), error(ErrorReply), goodbye }
    enum Work { case slot(SlotKey), eval(EvalKey) }
    enum Envelope {
        case toCoordinator(SchedulerEvent<Payload>, sentBy: Int, epoch: Int)
        case toWorker(Int, ToWorker, peer: Peer)
    }

    struct SimWorker {
        let index: Int
        var peer: Peer
        var threads: Int
        /// A straggler: computes 10× slower (the backup-task rule must cope).
        var slow = false
        var alive = true
        var pausedUntil: Tick = -1
        var registered = false
        var workerID = ""
        var heldVersion: Int? = nil
        var queue: [(Work, Tick)] = []  // computing: finishes at Tick
        var lastSent: Tick = 0
        var lastHeard: Tick = 0
        var stopped = false
        var killedAt: Tick? = nil
        /// Registers, takes work, heartbeats, never computes: its env-step count never moves.
        var blackHole = false
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

    static func simulate(seed: UInt64, restarts: Bool) throws -> Outcome {
        var rng = SeededRNG(seed: seed)
        let interval = 100, liveness = 3
        let iterations = 3 + rng.nextInt(below: 5), metaBatch = 1 + rng.nextInt(below: 6)
        var settings = SchedulerSettings(runID: "sim", iterations: iterations, metaBatch: metaBatch,
                                         heartbeatIntervalMs: interval, liveness: liveness,
                                         checkpointInterval: 1 + rng.nextInt(below: 3))
        // The chaos here kills or pauses a worker every 2 s among a handful: an eval job can meet 5 dying workers
        // in a row by chance, which the give-up rule for jobs that kill workers (tested in SchedulerEvalTests)
        // would take for a poison job. Give it more room here.
        settings.failedAttemptsWarning = 12
        var scheduler = try Scheduler<Payload>(settings: settings)
        var registrationOf: [Peer: String] = [:]
        var outcome = Outcome()
        func fail(_ s: String) { if outcome.failures.count < 5 { outcome.failures.append("seed \(seed): \(s)") } }

        // The reference trajectory: θ_t for t = 0...iterations.
        var reference: [UInt64] = [0]
        for t in 0..<iterations { reference.append(update(reference[t], (0..<metaBatch).map { work(t, $0) })) }

        var theta: UInt64 = 0, applied = 0
        // The eval client: `evalJobs` jobs, submitted at `submitAt`; after a coordinator restart forgets the
        // request, the client's heartbeat is refused and it submits the jobs still missing under a new number.
        let clientPeer = Peer([0xEE, 0xEE])
        let evalJobs = 1 + rng.nextInt(below: 12), submitAt = Tick(10 * (1 + rng.nextInt(below: 150)))
        var received = [Int](repeating: 0, count: evalJobs)
        var requestJobs: [Int: Set<Int>] = [:]
        var nextRequest = 1, clientLastSent: Tick = 0, submitted = false, clientDone = false, evalLost = false, accepted = false
        var checkpoint: (iteration: Int, theta: UInt64) = (0, 0)
        var epoch = 0
        var inFlight: [(Tick, Envelope)] = []
        var workers: [SimWorker] = []
        var nextPeer = 1
        var transfers: [String: [Int: Int]] = [:], missing: [String: Int] = [:]
        var workerOf: [Peer: Int] = [:]
        let maxDelay: Tick = 40
        func delay() -> Tick { Tick(rng.nextInt(below: Int(maxDelay) + 1)) }
        // One connection is FIFO (TCP + ZeroMQ); messages of different connections interleave freely.
        var channelClock: [String: Tick] = [:]
        func deliveryTime(_ channel: String, _ now: Tick) -> Tick {
            let t = max(now + delay(), channelClock[channel] ?? 0)
            channelClock[channel] = t
            return t
        }
        func newPeer() -> Peer { defer { nextPeer += 1 }; return Peer([UInt8(nextPeer & 255), UInt8(nextPeer >> 8)]) }
        func addWorker(_ now: Tick) {
            let peer = newPeer()
            workers.append(SimWorker(index: workers.count, peer: peer, threads: 1 + rng.nextInt(below: 2),
                                     slow: rng.nextInt(below: 4) == 0, lastSent: now, lastHeard: now,
                                     blackHole: workers.count > 0 && rng.nextInt(below: 6) == 0))
            workerOf[peer] = workers.count - 1
            inFlight.append((deliveryTime("up\(peer)", now), .toCoordinator(.hello(peer, Hello(host: "sim", cores: 1, threads: workers.last!.threads)), sentBy: workers.count - 1, epoch: epoch)))
        }
        func send(_ w: Int, _ event: SchedulerEvent<Payload>, _ now: Tick) {
            inFlight.append((deliveryTime("up\(workers[w].peer)", now), .toCoordinator(event, sentBy: w, epoch: epoch)))
            workers[w].lastSent = now
        }

        /// Carries out the scheduler's commands and checks the invariants they touch.
        func carryOut(_ commands: [SchedulerCommand<Payload>], now: Tick) {
            for command in commands {
                switch command {
                case let .send(peer, outbound) where peer == clientPeer:
                    switch outbound {
                    case .welcome: accepted = true
                    case .heartbeat: break
                    case .error(let e) where e.code == .unknownWorker:
                        // The coordinator restarted: submit the missing jobs again.
                        let missingJobs = (0..<evalJobs).filter { received[$0] == 0 }
                        if !missingJobs.isEmpty && !clientDone {
                            requestJobs[nextRequest] = Set(missingJobs)
                            inFlight.append((deliveryTime("upclient", now), .toCoordinator(.evalRequest(clientPeer, request: nextRequest, jobs: missingJobs), sentBy: -1, epoch: epoch)))
                            nextRequest += 1
                        }
                    case .goodbye: clientDone = true
                    default: fail("eval client got \(outbound)")
                    }
                case let .send(peer, outbound):
                    guard let w = workerOf[peer] else { fail("send to a peer no worker ever had"); continue }
                    let message: ToWorker
                    switch outbound {
                    case .welcome(let id): message = .welcome(id); registrationOf[peer] = id
                    case .heartbeat: message = .heartbeat
                    case let .assign(key, p):
                        message = .assign(key, p)
                        if p { transfers[registrationOf[peer]!, default: [:]][key.iteration, default: 0] += 1 }
                    case .error(let e): message = .error(e)
                    case .goodbye: message = .goodbye
                    case .evalJob(let key): message = .evalJob(key)
                    }
                    inFlight.append((deliveryTime("down\(peer)", now), .toWorker(w, message, peer: peer)))
                case .forget(let peer):
                    // Invariant 3 (no false deaths): only a killed, paused, stopped or replaced worker is forgotten.
                    if let w = workerOf[peer] {
                        let wk = workers[w]
                        let silent = !wk.alive || wk.stopped || wk.pausedUntil > now - Tick(interval * liveness) || wk.peer != peer
                            || wk.blackHole
                        if !silent { fail("worker \(w) forgotten while alive and talking") }
                        if let killed = wk.killedAt, wk.peer == peer {
                            let bound = Tick(interval * liveness) + 50 + maxDelay + Tick(interval)  // ticks every 50 ms
                            if now - killed > bound { fail("death of worker \(w) detected after \(now - killed) ms > \(bound)") }
                        }
                    }
                case let .applyMetaUpdate(iteration, payloads):
                    // Invariants 1 and 2: each iteration once, in order, with every slot's own result in slot order.
                    if iteration != applied { fail("applied iteration \(iteration), expected \(applied)") }
                    if payloads != (0..<metaBatch).map({ work(iteration, $0) }) { fail("iteration \(iteration) payloads wrong or out of order") }
                    theta = update(theta, payloads)
                    applied += 1
                    if theta != reference[applied] { fail("θ after \(applied) updates differs from the reference") }
                case .writeCheckpoint(let iteration):
                    if iteration != applied { fail("checkpoint of iteration \(iteration) while \(applied) applied") }
                    checkpoint = (iteration, theta)
                case .finished:
                    outcome.finished = true
                case .abort(let reason):
                    fail("aborted: \(reason)")
                case .log(_, let m):
                    if traceSeed == seed { print("\(now) \(m)") }
                case let .forwardEvalOutcome(client, key):
                    // Exactly once, to the client that asked, for a job of that request.
                    if client != clientPeer { fail("eval outcome forwarded to \(client)") }
                    if requestJobs[key.request]?.contains(key.job) != true { fail("forwarded \(key), which request \(key.request) does not hold") }
                    else if received[key.job] > 0 { fail("eval job \(key.job) forwarded twice") }
                    else { received[key.job] += 1 }
                case .forgetEvalRequest:
                    break
                case .confirmDivergence:
                    fail("no simulated slot diverges, yet a check was asked for")
                }
            }
        }

        addWorker(0)
        var now: Tick = 0
        let end: Tick = 120_000
        while now < end && !outcome.finished {
            now += 10
            // Chaos, at most one event per 10 ms.
            let roll = rng.nextInt(below: 1000)
            let living = workers.indices.filter { workers[$0].alive && !workers[$0].stopped }
            if roll < 6 || living.isEmpty { addWorker(now) }
            else if roll < 9, let victim = living.randomElement(using: &rng), living.count > 1 {
                workers[victim].alive = false; workers[victim].killedAt = now
            } else if roll < 11, let victim = living.randomElement(using: &rng) {
                workers[victim].pausedUntil = now + Tick(interval * liveness) + 200 + Tick(rng.nextInt(below: 300))
            } else if restarts && roll < 13 {
                // Coordinator killed and resumed from its last checkpoint; its ROUTER forgets every peer.
                epoch += 1
                settings.incarnation = "c\(epoch)"
                scheduler = try Scheduler<Payload>(settings: settings, startIteration: checkpoint.iteration)
                // Resumed after the last iteration, the coordinator ends at once (no --serve): the client's
                // remaining jobs are lost with it, which it reports, rather than a fault of the scheduler.
                if scheduler.isDone { evalLost = true; outcome.finished = true }
                theta = checkpoint.theta; applied = checkpoint.iteration
                inFlight.removeAll { if case .toCoordinator = $0.1 { return true } else { return false } }
                for i in workers.indices {
                    let p = newPeer()
                    workers[i].peer = p
                    workerOf[p] = i
                }
            }

            // Deliver what is due, in delivery order (ties in send order).
            let due = inFlight.enumerated().filter { $0.element.0 <= now }.sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }
            inFlight = inFlight.filter { $0.0 > now }
            var commands: [SchedulerCommand<Payload>] = []
            for (_, (_, envelope)) in due {
                switch envelope {
                case let .toCoordinator(event, sender, sentEpoch):
                    guard sentEpoch == epoch else { continue }
                    // A killed worker's messages already on the wire still arrive; the peer id is the connection's.
                    _ = sender
                    commands += scheduler.handle(event, now: now)
                    if !scheduler.strandedSlots.isEmpty { fail("slots \(scheduler.strandedSlots) stranded after \(event) at \(now) ms") }
                case let .toWorker(w, message, peer):
                    var worker = workers[w]
                    guard worker.alive, !worker.stopped, worker.peer == peer else { continue }
                    if now < worker.pausedUntil {  // SIGSTOPped: the message waits in the socket
                        inFlight.append((worker.pausedUntil, envelope))
                        continue
                    }
                    worker.lastHeard = now
                    switch message {
                    case .welcome(let id): worker.registered = true; worker.workerID = id
                    case .heartbeat: break
                    case .goodbye: worker.stopped = true
                    case .error(let e):
                        if e.code == .rejected {
                            // Disconnected: like the real worker, reconnect (a new connection) and register again.
                            let p = newPeer()
                            worker.peer = p; workerOf[p] = w
                            workers[w] = worker
                            send(w, .hello(p, Hello(host: "sim", cores: 1, threads: worker.threads, previousWorkerID: worker.workerID)), now)
                            worker = workers[w]
                        } else if e.code == .unknownWorker {
                            workers[w] = worker
                            send(w, .hello(worker.peer, Hello(host: "sim", cores: 1, threads: worker.threads, previousWorkerID: worker.workerID)), now)
                            worker = workers[w]
                        }
                    case .evalJob where worker.blackHole, .assign where worker.blackHole:
                        break
                    case .evalJob(let key):
                        let compute = 50 + Tick(rng.nextInt(below: 300))
                        worker.queue.append((.eval(key), now + (worker.slow ? 10 * compute : compute)))
                    case let .assign(key, withParameters):
                        if withParameters { worker.heldVersion = key.iteration }
                        if worker.heldVersion != key.iteration {
                            workers[w] = worker
                            missing[worker.workerID, default: 0] += 1
                            send(w, .parametersMissing(worker.peer, key), now)
                            worker = workers[w]
                        } else {
                            let compute = 50 + Tick(rng.nextInt(below: 300))
                            worker.queue.append((.slot(key), now + (worker.slow ? 10 * compute : compute)))
                        }
                    }
                    workers[w] = worker
                }
            }

            carryOut(commands, now: now)

            // Workers: finish computations, heartbeat.
            for w in workers.indices where workers[w].alive && !workers[w].stopped && now >= workers[w].pausedUntil {
                let done = workers[w].queue.filter { $0.1 <= now }
                workers[w].queue.removeAll { $0.1 <= now }
                for (work, _) in done {
                    let result: SchedulerEvent<Payload>
                    switch work {
                    case .slot(let key):
                        result = .result(workers[w].peer, runID: "sim", key: key, parameterVersion: key.iteration,
                                         payload: Self.work(key.iteration, key.slot))
                    case .eval(let key):
                        result = .evalOutcome(workers[w].peer, key)
                    }
                    send(w, result, now)
                    if rng.nextInt(below: 50) == 0 { send(w, result, now) }  // a duplicate on the wire
                }
                if !workers[w].queue.isEmpty { workers[w].envSteps += 10 }
                if now - workers[w].lastSent >= Tick(interval) {
                    send(w, .heartbeat(workers[w].peer, envSteps: workers[w].envSteps), now)
                }
                // A worker that hears nothing for the liveness window reconnects (new connection, new peer id).
                if now - workers[w].lastHeard > Tick(interval * liveness) * 2 {
                    let p = newPeer()
                    workers[w].peer = p; workerOf[p] = w; workers[w].lastHeard = now
                    send(w, .hello(p, Hello(host: "sim", cores: 1, threads: workers[w].threads, previousWorkerID: workers[w].workerID)), now)
                }
            }
            // The eval client: submit once, then heartbeat until every outcome is in.
            if !submitted && now >= submitAt {
                submitted = true
                requestJobs[nextRequest] = Set(0..<evalJobs)
                inFlight.append((deliveryTime("upclient", now), .toCoordinator(.evalRequest(clientPeer, request: nextRequest, jobs: Array(0..<evalJobs)), sentBy: -1, epoch: epoch)))
                nextRequest += 1
                clientLastSent = now
            }
            if submitted && !clientDone && received.contains(0) && now - clientLastSent >= Tick(interval) {
                inFlight.append((deliveryTime("upclient", now), .toCoordinator(.heartbeat(clientPeer), sentBy: -1, epoch: epoch)))
                clientLastSent = now
            }
            if now % 50 == 0 {
                carryOut(scheduler.handle(.tick, now: now), now: now)
                if !scheduler.strandedSlots.isEmpty { fail("slots \(scheduler.strandedSlots) stranded after a tick at \(now) ms") }
            }
        }
        if outcome.finished && accepted && !evalLost && received.contains(0) {
            fail("the run finished with eval jobs \((0..<evalJobs).filter { received[$0] == 0 }) never forwarded")
        }
        outcome.evalServed = accepted && !received.contains(0)
        if !outcome.finished { fail("run did not finish by \(end) ms: \(applied)/\(iterations) applied") }
        if outcome.finished && theta != reference[iterations] { fail("final θ differs from the reference") }
        // Invariant 7: θ travels once per connection per version.
        for (registration, versions) in transfers {
            for (version, count) in versions where count > 1 + (missing[registration] ?? 0) {
                fail("θ version \(version) sent \(count) times to \(registration)")
            }
        }
        return outcome
    }

    @Test func thousandsOfFaultySchedulesKeepTheInvariants() throws {
        var failures: [String] = []
        var served = 0
        for seed in 0..<1500 {
            let outcome = try Self.simulate(seed: UInt64(seed), restarts: false)
            failures += outcome.failures
            if outcome.evalServed { served += 1 }
            if failures.count > 10 { break }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        // The eval client must have competed with training in a good share of the schedules.
        #expect(served >= 1200, "eval requests served in only \(served) of 1500 schedules")
    }

    @Test func coordinatorRestartsFromCheckpointsGiveTheSameTrajectory() throws {
        var failures: [String] = []
        var served = 0
        for seed in 10_000..<10_800 {
            let outcome = try Self.simulate(seed: UInt64(seed), restarts: true)
            failures += outcome.failures
            if outcome.evalServed { served += 1 }
            if failures.count > 10 { break }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(served >= 600, "eval requests served in only \(served) of 800 schedules")
    }
}
