import Foundation
import MetaLearning
import Wire

/// Workers joining, staying alive, misbehaving and leaving: what happens to the work they held.
extension Scheduler {
    // MARK: - Registration and liveness

    mutating func register(_ peer: Peer, _ hello: Hello, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        if let known = workers[peer] {
            // A repeated hello on a live connection ("unknown worker" replies crossed a hello): same worker, id and
            // number. A welcome empties the worker's θ cache (`WorkerSession`), so the record here holds no θ version
            // either (issue 39, defect 5: θ was assumed held, and every assignment cost a `parametersMissing` round
            // trip). Its attempts stay its own: they are running (a worker never holds more jobs than threads, so a
            // welcome's flush of jobs not started finds none unless its threads are stuck, which the deadline handles).
            workers[peer]!.lastHeard = now
            workers[peer]!.knownVersions = []
            out.append(.send(peer, .welcome(workerID: known.id)))
            return
        }
        guard admitNumerics(peer, hello, &out) else { return }
        if !hello.previousWorkerID.isEmpty,
           let old = workers.byPeer.first(where: { $0.value.id == hello.previousWorkerID })?.key {
            out.append(.log(.info, "worker \(hello.previousWorkerID) re-registered from a new connection"))
            drop(old, &out)
        }
        let number = nextWorkerNumber
        nextWorkerNumber += 1
        counters.workersRegistered += 1
        var worker = WorkerRecord(id: "\(settings.incarnation)-w\(number)", number: number, threads: hello.threads, lastHeard: now,
                            lastSent: now, envStepsMovedAt: now)
        worker.host = hello.host
        workers[peer] = worker
        out.append(.send(peer, .welcome(workerID: worker.id)))
        let (kernel, fingerprint) = hello.numerics.effective(under: numerics.policy, environment: settings.holdsEnvironment)
        out.append(.log(.info, "worker \(worker.id) joined from \(hello.host) with \(hello.threads) thread(s); \(workers.count) alive; numerics \(fingerprint) (kernel \(kernel), CPU \(hello.numerics.cpu))"))
        if isDone { out.append(.send(peer, .goodbye("run finished"))) }
    }

    /// Holds a registering worker to the run's numerics policy: under `strict` and `portable` a worker whose
    /// fingerprint differs from the run's is refused with both fingerprints named (its slots would give other
    /// bits, and θ would depend on which worker ran what); the first worker sets the run's fingerprint.
    /// Under `any` every worker is accepted and a difference is logged. Returns false when refused.
    mutating func admitNumerics(_ peer: Peer, _ hello: Hello, _ out: inout [SchedulerCommand<Payload>]) -> Bool {
        let (kernel, fingerprint) = hello.numerics.effective(under: numerics.policy, environment: settings.holdsEnvironment)
        guard let expected = numerics.fingerprint else {
            numerics.fingerprint = fingerprint
            numerics.kernel = kernel
            numerics.cpu = hello.numerics.cpu
            out.append(.log(.info, "run numerics (\(numerics.policy.rawValue)): fingerprint \(fingerprint), kernel \(kernel), CPU \(hello.numerics.cpu), set by the first worker"
                + (numerics.policy == .any ? "; numerics: any, so the run is not bit-reproducible" : "")))
            return true
        }
        guard expected != fingerprint else { return true }
        let theirs = "fingerprint \(fingerprint) (kernel \(kernel), CPU \(hello.numerics.cpu))"
        let run = "the run's \(expected) (kernel \(numerics.kernel), CPU \(numerics.cpu))"
        if numerics.policy == .any {
            out.append(.log(.warning, "worker from \(hello.host) computes other bits: \(theirs), not \(run); numerics: any, so the run is not bit-reproducible"))
            return true
        }
        let environmentDiffers = settings.holdsEnvironment && !expected.hasSuffix("+env \(hello.numerics.environment)")
        let advice = environmentDiffers
            ? "its environment servers differ from the run's: give it a Python with the same versions of Python, gymnasium, numpy and the allowed modules (--python), or start the run with `numerics: any`"
            : numerics.policy == .strict
            ? "start the run with `numerics: portable` (every x86-64 CPU computes the same bits), run this worker with METATRAIN_KERNEL=\(numerics.kernel) if its CPU has that kernel, or resume with --force-numerics to adopt the first worker's"
            : "a difference outside the kernels (libm, compiler or build): run workers from the same build and system libraries"
        out.append(.send(peer, .error(ErrorReply(code: .numericsMismatch,
                                                 message: "numerics \(numerics.policy.rawValue): this worker's \(theirs) differs from \(run); \(advice)"))))
        out.append(.log(.warning, "refused a worker from \(hello.host): \(theirs) differs from \(run) (numerics: \(numerics.policy.rawValue))"))
        return false
    }

    /// Records that `peer` spoke (any message is a heartbeat). Unknown peers are told to say hello.
    mutating func touch(_ peer: Peer, now: Tick, _ out: inout [SchedulerCommand<Payload>]) -> Bool {
        guard workers[peer] != nil else {
            out.append(.send(peer, .error(ErrorReply(code: .unknownWorker, message: "unknown worker: send hello first"))))
            return false
        }
        workers[peer]!.lastHeard = now
        return true
    }

    mutating func expire(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        for (peer, worker) in workers.inJoinOrder
        where now - worker.lastHeard > settings.deadAfterMs {
            out.append(.log(.warning, "worker \(worker.id) silent for \(now - worker.lastHeard) ms: declared dead, \(worker.running.count) slot(s) and \(worker.evalRunning.count) eval job(s) requeued"))
            counters.workersDeclaredDead += 1
            drop(peer, died: true, &out)
        }
        for (peer, client) in clients.sorted(by: { $0.key.id.lexicographicallyPrecedes($1.key.id) })
        where now - client.lastHeard > settings.deadAfterMs {
            out.append(.log(.warning, "eval client \(peer) silent for \(now - client.lastHeard) ms: its \(client.requests.count) request(s) abandoned"))
            dropClient(peer, reason: "the client went silent", &out)
        }
    }

    mutating func heartbeat(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        for (peer, worker) in workers.inJoinOrder
        where now - worker.lastSent >= Int64(settings.heartbeatIntervalMs) {
            out.append(.send(peer, .heartbeat))
            workers[peer]!.lastSent = now
        }
        for (peer, client) in clients.sorted(by: { $0.key.id.lexicographicallyPrecedes($1.key.id) })
        where now - client.lastSent >= Int64(settings.heartbeatIntervalMs) {
            out.append(.send(peer, .heartbeat))
            clients[peer]!.lastSent = now
        }
    }

    mutating func strike(_ peer: Peer, _ reason: String, code: ErrorCode = .malformed, now: Tick,
                                 _ out: inout [SchedulerCommand<Payload>]) {
        out.append(.send(peer, .error(ErrorReply(code: code, message: reason))))
        guard var worker = workers[peer] else {
            out.append(.log(.warning, "bad message from unregistered peer \(peer): \(reason)"))
            return
        }
        worker.strikes += 1
        worker.lastHeard = now
        workers[peer] = worker
        out.append(.log(.warning, "bad message from worker \(worker.id) (\(worker.strikes)/\(settings.limits.maxStrikes)): \(reason)"))
        if worker.strikes >= settings.limits.maxStrikes {
            out.append(.send(peer, .error(ErrorReply(code: .rejected, message: "too many bad messages: disconnected"))))
            out.append(.log(.warning, "worker \(worker.id) disconnected after \(worker.strikes) bad messages"))
            counters.workersDisconnected += 1
            drop(peer, &out)
        }
    }

    /// Forgets a worker and requeues the slots and eval jobs only it was running; `died` counts the
    /// loss against each eval job it held.
    mutating func drop(_ peer: Peer, died: Bool = false, _ out: inout [SchedulerCommand<Payload>]) {
        guard let worker = workers[peer] else { return }
        for key in worker.evalRunning.keys.sorted() {
            if died, evalRequests[key.request]?.jobs.isRunning(key.job) == true {
                let losses = evalRequests[key.request]!.jobs.lose(key.job)
                if losses >= settings.limits.evalGiveUpAttempts {
                    let client = evalRequests[key.request]!.client
                    out.append(.send(client, .error(ErrorReply(
                        code: .taskFailed, message: "eval job \(key.job) was running on \(losses) workers that died: it is not retried again"))))
                    out.append(.log(.error, "eval request \(key.request) abandoned: job \(key.job) was running on \(losses) workers that died"))
                    abandon(key.request, &out)
                }
            }
        }
        releaseAll(peer, requeue: true)
        workers.removeValue(forKey: peer)
        out.append(.forget(peer))
    }

    /// Releases every slot and eval job attempt `peer` holds (in key order); with `requeue`, each that nobody else
    /// holds is pending again.
    mutating func releaseAll(_ peer: Peer, requeue: Bool) {
        guard let worker = workers[peer] else { return }
        for key in worker.running.keys.sorted() { release(peer, key, requeue: requeue) }
        for key in worker.evalRunning.keys.sorted() { releaseEval(peer, key, requeue: requeue) }
    }

    /// Frees `peer`'s capacity for `key`; with `requeue`, the slot is pending again unless done or held elsewhere.
    mutating func release(_ peer: Peer, _ key: SlotKey, requeue: Bool) {
        workers[peer]?.running[key] = nil
        if withRound(key.iteration, { $0.slots.release(key.slot, holder: peer, requeue: requeue) }) == true { counters.requeued += 1 }
    }
}
