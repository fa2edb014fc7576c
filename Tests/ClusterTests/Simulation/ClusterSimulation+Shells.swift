import Cluster
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Wire

/// What the process shells do around the pure cores: the Worker and ClusterAdaptationRunner shells carry out their
/// sessions' actions, the Coordinator shell turns messages into scheduler events and commands into messages.
extension ClusterSimulation {
    func addWorker() {
        var s = WorkerSession.Settings(hello: Hello(host: "sim", cores: 1, threads: 1 + rng.nextInt(below: 2)), kernel: .selected)
        s.heartbeatIntervalMs = interval; s.liveness = liveness
        s.initialBackoffMs = 100; s.maxBackoffMs = 800; s.giveUpAfterMs = nil
        workers.append(SimWorker(session: WorkerSession(settings: s), slow: rng.nextInt(below: 4) == 0,
                                 blackHole: workers.count > 0 && rng.nextInt(below: 6) == 0))
        feed(workers.count - 1, .start)
    }

    /// A message on worker `w`'s current connection, to the coordinator.
    func up(_ w: Int, _ bytes: [UInt8]) {
        guard workers[w].connected else { return }
        let peer = workers[w].peer
        inFlight.append((deliveryTime("up\(peer)"), .toCoordinator(bytes, from: peer, epoch: epoch)))
    }

    /// Hands an event to worker `w`'s session and carries out its actions as the Worker shell would.
    func feed(_ w: Int, _ event: WorkerSession.Event) {
        for action in workers[w].session.handle(event, now: now) {
            switch action {
            case .connect:
                let p = newPeer()
                workers[w].peer = p; workers[w].connected = true; workerOf[p] = w
            case .disconnect:
                workers[w].connected = false
            case .send(let message):
                up(w, WireCodec.encode(message))
            case .transmit(let bytes):
                up(w, bytes.bytes)
                if rng.nextInt(below: 50) == 0 { up(w, bytes.bytes) }  // a duplicate on the wire
            case .compute(let job):
                guard !workers[w].blackHole else { break }
                let compute = 50 + Tick(rng.nextInt(below: 300))
                workers[w].queue.append((job, now + (workers[w].slow ? 10 * compute : compute)))
            case .dropQueuedJobs:
                break   // a simulated worker starts every job at once: none waits in a queue
            case .log(_, let text):
                trace("worker \(w): \(text)")
            case .finish:
                workers[w].stopped = true
            case .giveUp, .refused:
                fail("worker \(w) ended with \(action)")
                workers[w].stopped = true
            }
        }
    }

    /// Hands an event to the eval client's session and carries out its actions as ClusterAdaptationRunner would.
    func feedClient(_ event: EvalClientSession.Event) {
        guard var session = client else { return }
        let actions = session.handle(event, now: now)
        client = session
        for action in actions {
            switch action {
            case .connect:
                clientPeer = newPeer(); clientConnected = true; clientPeers.insert(clientPeer)
            case .disconnect:
                clientConnected = false
            case .send(let message):
                if clientConnected {
                    inFlight.append((deliveryTime("up\(clientPeer)"), .toCoordinator(WireCodec.encode(message), from: clientPeer, epoch: epoch)))
                }
            case .completed:
                break
            case .finished(let outcomes):
                clientDone = true
                let own = jobs.indices.map { SchedulerSimulationTests.evalResult(EvalJobMessage(key: EvalKey(request: 0, job: $0, attempt: 0), job: jobs[$0])) }
                if outcomes != own { fail("the eval client's outcomes are not its jobs' own") }
            case .failed(let reason):
                clientDone = true
                if !evalLost { fail("eval client failed: \(reason)") }
            case .log(_, let text):
                trace("client: \(text)")
            }
        }
    }

    /// The coordinator shell's reading of a message, through the coordinator's own mapping.
    func inbound(_ peer: Peer, _ bytes: [UInt8]) -> SchedulerEvent<Payload> {
        let message: Message
        do { message = try WireCodec.decode(bytes) } catch {
            return .malformed(peer, "\(error)", code: .malformed)
        }
        if case .error(let e) = message, e.code == .parametersMissing, let registration = registrationOf[peer] {
            missing[registration, default: 0] += 1
        }
        return .inbound(peer, message, result: { r in
            let u = r.update.values
            guard u.count == 3, Int(u[0]) == r.key.iteration, Int(u[1]) == r.key.slot else {
                return .invalidResult(peer, r.key, "not this slot's update")
            }
            // The worker's session must hand its compute thread the θ version the assignment names.
            if Int(u[2]) != r.parameterVersion { fail("slot \(r.key) computed on θ version \(Int(u[2])), assigned \(r.parameterVersion)") }
            return .result(peer, runID: r.runID, key: r.key, parameterVersion: r.parameterVersion,
                           payload: SchedulerSimulationTests.work(r.key.iteration, r.key.slot, base: r.parameterVersion))
        }, evalRequest: { r in
            // As the coordinator's shell: nothing is numbered or kept until the Scheduler says `holdEvalRequest`.
            .evalRequest(peer, r)
        }, evalOutcome: { o in
            // As the coordinator's shell: checked against its job, then carried by the event (no copy kept here).
            if let job = requests[o.key.request]?[o.key.job], let problem = job.mismatch(o.outcome) {
                return .evalFailed(peer, o.key, problem)
            }
            return .evalOutcome(peer, o)
        }, note: { _ in })
    }

    /// The frames of the message an outbound command means, built as the coordinator shell builds them.
    func frames(_ outbound: Outbound) -> [[UInt8]] {
        switch outbound {
        case .welcome(let id):
            return [WireCodec.encode(.welcome(Welcome(runID: "sim", workerID: id, heartbeatIntervalMs: interval,
                                                      liveness: liveness, numerics: .strict)))]
        case .heartbeat: return [WireCodec.encode(.heartbeat(envSteps: 0))]
        case .error(let e): return [WireCodec.encode(.error(e))]
        case .goodbye(let reason): return [WireCodec.encode(.goodbye(reason: reason, resumable: false))]
        case let .assign(key, includeParameters):
            let a = Assignment(runID: "sim", key: key, task: .cartPole(CartPoleParameters()),
                               innerLoop: InnerLoopSettings(budget: 10, querySteps: 1), algorithm: .reptile,
                               seed: UInt64(key.slot), parameterVersion: settings.baseVersion(of: key.iteration), parameters: nil)
            guard includeParameters else { return [WireCodec.encode(.assignment(a))] }
            let shared = SharedTensorField(ParameterVector([Float(a.parameterVersion)]), for: .assignment)
            return [WireCodec.encodeHead(.assignment(a), shared: shared), shared.bytes]
        case .evalJob(let key):
            guard let job = requests[key.request]?[key.job] else { return [] }
            let shared = SharedTensorField(job.initial, for: .evalJob)
            return [WireCodec.encodeHead(.evalJob(EvalJobMessage(key: key, job: job)), shared: shared), shared.bytes]
        }
    }

    /// Carries out the scheduler's commands and checks the invariants they touch.
    func carryOut(_ commands: [SchedulerCommand<Payload>]) {
        for command in commands {
            switch command {
            case let .send(peer, outbound) where clientPeers.contains(peer):
                if case .welcome = outbound { accepted = true }
                guard let bytes = frames(outbound).first else { continue }
                inFlight.append((deliveryTime("down\(peer)"), .toClient(bytes, peer: peer)))
            case let .send(peer, outbound):
                guard let w = workerOf[peer] else { fail("send to a peer no worker ever had"); continue }
                switch outbound {
                case .welcome(let id):
                    // Every welcome empties the worker's θ cache (a repeated hello on a live connection too), so θ
                    // travels once per version per welcome: each welcome starts a registration of its own here.
                    welcomes[peer, default: 0] += 1
                    registrationOf[peer] = "\(id)#\(welcomes[peer]!)"
                case let .assign(key, true): transfers[registrationOf[peer] ?? "?", default: [:]][settings.baseVersion(of: key.iteration), default: 0] += 1
                default: break
                }
                let message = frames(outbound)
                if message.isEmpty { fail("an eval job of a request the shell does not hold: \(outbound)"); continue }
                inFlight.append((deliveryTime("down\(peer)"), .toWorker(w, message, peer: peer)))
            case .forget(let peer):
                // Invariant 3 (no false deaths): only a killed, paused, stopped, disconnected or replaced worker
                // (or a black hole, whose work times out) is forgotten.
                if let w = workerOf[peer] {
                    let wk = workers[w]
                    let silent = !wk.alive || wk.stopped || wk.pausedUntil > now - Tick(interval * liveness) || wk.peer != peer
                        || !wk.connected || wk.blackHole
                    if !silent { fail("worker \(w) forgotten while alive and talking") }
                    if let killed = wk.killedAt, wk.peer == peer {
                        let bound = Tick(interval * liveness) + 50 + maxDelay + Tick(interval)  // ticks every 50 ms
                        if now - killed > bound { fail("death of worker \(w) detected after \(now - killed) ms > \(bound)") }
                    }
                }
            case let .fold(iteration, slot, payload):
                // Folds come in slot order, each slot once, for the iteration being run.
                if iteration != applied || slot != folded.count { fail("folded \(iteration)/\(slot) after \(folded.count) slots of iteration \(applied)") }
                folded.append(payload)
            case let .applyMetaUpdate(iteration):
                // Invariants 1 and 2: each iteration once, in order, with every slot's own result in slot order.
                let payloads = folded
                folded = []
                if iteration != applied { fail("applied iteration \(iteration), expected \(applied)") }
                if payloads != (0..<metaBatch).map({ SchedulerSimulationTests.work(iteration, $0, base: settings.baseVersion(of: iteration)) }) {
                    fail("iteration \(iteration) payloads wrong or out of order")
                }
                theta = SchedulerSimulationTests.update(theta, payloads)
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
                trace(m)
            case let .forwardEvalOutcome(client, outcome):
                // Exactly once per request and job, to the client that asked, for a job of that request, fitting it.
                let key = outcome.key
                if !clientPeers.contains(client) { fail("eval outcome forwarded to \(client)") }
                guard let job = requests[key.request]?[key.job], job.mismatch(outcome.outcome) == nil else {
                    fail("forwarded \(key), which is no job of a request the shell holds, or does not fit it"); continue
                }
                if !forwarded.insert([key.request, key.job]).inserted { fail("eval job \(key.job) of request \(key.request) forwarded twice") }
                forwardedJobs.insert(key.job)
                let bytes = WireCodec.encode(.evalOutcome(outcome))
                inFlight.append((deliveryTime("down\(client)"), .toClient(bytes, peer: client)))
            case let .holdEvalRequest(number, _, request):
                if requests[number] != nil { fail("request number \(number) given twice") }
                requests[number] = Dictionary(request.jobs.map { ($0.index, $0.job) }, uniquingKeysWith: { a, _ in a })
            case .forgetEvalRequest(let number):
                requests[number] = nil
            case .confirmDivergence:
                fail("no simulated slot diverges, yet a check was asked for")
            }
        }
    }
}
