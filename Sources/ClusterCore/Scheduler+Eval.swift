import Foundation
import MetaLearning
import Wire

/// Eval jobs of eval clients: run on threads no slot waits for, requeued and backed up like slots.
extension Scheduler {
    // MARK: - Eval jobs

    /// Decides an eval request: refused (a worker's, an empty one or one naming a job twice, one too many), or numbered
    /// and accepted — then, and only then, the shell is told to hold its jobs (`holdEvalRequest`).
    mutating func submit(_ peer: Peer, _ submitted: EvalRequest, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        let jobs = submitted.jobs.map(\.index)
        if workers[peer] != nil {
            strike(peer, "a worker must not send eval requests", now: now, &out)
            return
        }
        guard !jobs.isEmpty, Set(jobs).count == jobs.count else {
            out.append(.send(peer, .error(ErrorReply(code: .malformed, message: "an eval request needs at least one job, each named once"))))
            return
        }
        guard evalRequests.count < settings.limits.maxEvalRequests,
              (clients[peer]?.requests.count ?? 0) < settings.limits.maxEvalRequestsPerClient else {
            out.append(.send(peer, .error(ErrorReply(code: .rejected, message: "too many eval requests outstanding (at most \(settings.limits.maxEvalRequests), \(settings.limits.maxEvalRequestsPerClient) per client): try again later"))))
            out.append(.log(.warning, "refused an eval request from \(peer): too many outstanding"))
            return
        }
        let request = nextEvalRequest
        nextEvalRequest += 1
        out.append(.holdEvalRequest(request, client: peer, submitted))
        var client = clients[peer] ?? Client(lastHeard: now, lastSent: now)
        client.lastHeard = now
        client.requests.insert(request)
        clients[peer] = client
        evalRequests[request] = EvalRequestState(client: peer, jobs: AttemptTracker(jobs))
        out.append(.send(peer, .welcome(workerID: "eval-\(settings.incarnation)-\(request)")))
        out.append(.log(.info, "eval request \(submitted.requestID) numbered \(request), from \(peer): \(jobs.count) job(s); \(workers.count) worker(s) alive"))
    }

    mutating func acceptEval(_ peer: Peer, _ outcome: EvalOutcome, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        let key = outcome.key
        // As for slots: the time of this attempt, from its hand-out to its outcome.
        let heldSince = workers[peer]?.evalRunning[key]
        releaseEval(peer, key, requeue: false)
        workers[peer]?.timeouts = 0
        guard var request = evalRequests[key.request], request.jobs.complete(key.job, (), took: heldSince.map { now - $0 }) else {
            counters.evalDuplicatesDropped += 1
            out.append(.log(.debug, "dropped an outcome for \(key): already in, or its request is gone"))
            return
        }
        counters.evalOutcomesForwarded += 1
        out.append(.forwardEvalOutcome(client: request.client, outcome))
        if request.jobs.remaining == 0 {
            evalRequests[key.request] = nil
            clients[request.client]?.requests.remove(key.request)
            counters.evalRequestsCompleted += 1
            out.append(.forgetEvalRequest(key.request))
            out.append(.log(.info, "eval request \(key.request) complete"))
            finishIfDone(&out)
        } else {
            evalRequests[key.request] = request
        }
    }

    mutating func failEval(_ peer: Peer, _ key: EvalKey, _ reason: String, _ out: inout [SchedulerCommand<Payload>]) {
        releaseEval(peer, key, requeue: false)
        workers[peer]?.timeouts = 0
        guard let request = evalRequests[key.request], request.jobs[key.job] != nil, !request.jobs.isDone(key.job) else { return }
        out.append(.log(.error, "worker \(workers[peer]?.id ?? "\(peer)") failed \(key): \(reason)"))
        let failures = evalRequests[key.request]!.jobs.fail(key.job)
        if failures >= settings.limits.evalGiveUpAttempts {
            // A job that fails everywhere fails deterministically: tell the client instead of retrying forever.
            out.append(.send(request.client, .error(ErrorReply(
                code: .taskFailed, message: "eval job \(key.job) failed \(failures) times; last: \(reason)"))))
            abandon(key.request, &out)
            return
        }
        requeueEval(key)
    }

    /// Frees `peer`'s capacity for eval attempt `key`; with `requeue`, the job is pending again unless it is done or
    /// another worker still runs it (nothing for a request no longer outstanding).
    mutating func releaseEval(_ peer: Peer, _ key: EvalKey, requeue: Bool) {
        workers[peer]?.evalRunning[key] = nil
        if evalRequests[key.request]?.jobs.release(key.job, holder: peer, requeue: requeue) == true { counters.evalRequeued += 1 }
    }

    /// Makes an eval job pending again unless it is done or a worker still runs it.
    mutating func requeueEval(_ key: EvalKey) {
        if evalRequests[key.request]?.jobs.requeueIfUnheld(key.job) == true { counters.evalRequeued += 1 }
    }

    /// Drops a request whose client is gone or whose job cannot succeed; running attempts finish and are dropped.
    mutating func abandon(_ request: Int, _ out: inout [SchedulerCommand<Payload>]) {
        guard let state = evalRequests.removeValue(forKey: request) else { return }
        clients[state.client]?.requests.remove(request)
        counters.evalRequestsAbandoned += 1
        out.append(.forgetEvalRequest(request))
        finishIfDone(&out)
    }

    mutating func dropClient(_ peer: Peer, reason: String, _ out: inout [SchedulerCommand<Payload>]) {
        guard let client = clients.removeValue(forKey: peer) else { return }
        for request in client.requests.sorted() {
            out.append(.log(.info, "eval request \(request) abandoned: \(reason)"))
            abandon(request, &out)
        }
    }

    /// Gives pending eval jobs, oldest request first, to workers with free threads, in the order they
    /// joined; then, on threads still free, a backup of each job running far longer than its request's
    /// median (`evalBackupAfterMedianMultiple`), on a worker not already running it.
    mutating func assignEval(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard !evalRequests.isEmpty else { return }
        var free = workers.availableInJoinOrder
        guard !free.isEmpty else { return }
        let numbers = evalRequests.keys.sorted()
        for number in numbers {
            for index in evalRequests[number]!.jobs.pending {
                guard let peer = free.first else { return }
                dispatchEval(number, index, to: peer, now: now, &out)
                if workers[peer]!.load >= workers[peer]!.threads { free.removeFirst() }
            }
        }
        guard let multiple = settings.evalBackupAfterMedianMultiple else { return }
        for number in numbers {
            let stragglers = evalRequests[number]!.jobs.stragglers(now: now, multiple: multiple, minimumSamples: settings.backupMinimumSamples)
            for (index, ranFor, median) in stragglers {
                let holders = evalRequests[number]!.jobs.holders(of: index)
                guard let at = free.firstIndex(where: { !holders.contains($0) }) else { continue }
                let peer = free[at]
                evalRequests[number]!.jobs.noteBackup(index)
                out.append(.log(.info, "eval request \(number) job \(index) has run \(ranFor) ms (median \(median) ms): backup copy to \(workers[peer]!.id)"))
                dispatchEval(number, index, to: peer, now: now, &out)
                if workers[peer]!.load >= workers[peer]!.threads { free.remove(at: at) }
                if free.isEmpty { return }
            }
        }
    }

    mutating func dispatchEval(_ number: Int, _ index: Int, to peer: Peer, now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        let key = EvalKey(request: number, job: index, attempt: evalRequests[number]!.jobs.start(index, holder: peer, now: now))
        workers[peer]!.evalRunning[key] = now
        workers[peer]!.lastSent = now
        counters.evalJobsSent += 1
        out.append(.send(peer, .evalJob(key)))
    }
}
