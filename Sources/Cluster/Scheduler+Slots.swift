import Foundation
import MetaLearning
import Wire

/// Training slots: results, iterations, hand-out, backups of stragglers and deadlines.
extension Scheduler {
    // MARK: - Results

    mutating func accept(_ peer: Peer, runID: String, key: SlotKey, version: Int, payload: Payload,
                                 _ out: inout [SchedulerCommand<Payload>]) {
        let heldSince = workers[peer]?.running[key]
        // Every refusal below leaves the slot held elsewhere or pending again (release with requeue), never
        // nowhere: a sender that loses its claim to a slot it held must not strand it.
        guard runID == settings.runID else {
            out.append(.send(peer, .error(ErrorReply(code: .wrongRun, message: "this coordinator runs \(settings.runID), not \(runID)", key: key))))
            release(peer, key, requeue: true)
            return
        }
        workers[peer]?.timeouts = 0
        guard key.iteration == iteration, version == iteration, !isFinished else {
            release(peer, key, requeue: true)
            counters.staleDropped += 1
            out.append(.log(.debug, "dropped stale result for \(key) (θ version \(version)); running iteration \(iteration)"))
            return
        }
        release(peer, key, requeue: false)
        guard slots[key.slot] != nil else {
            strike(peer, "result names slot \(key.slot); iterations have \(slots.order.count) slots", now: workers[peer]?.lastHeard ?? 0, &out)
            return
        }
        // How long computing a slot takes: this attempt's own time, from its hand-out to its result (time lost
        // to dead or stuck holders before it would inflate the median, and every deadline with it).
        let took = heldSince.flatMap { started in workers[peer].map { $0.lastHeard - started } }
        guard slots.complete(key.slot, payload, took: took) else {
            counters.duplicatesDropped += 1
            out.append(.log(.debug, "dropped duplicate result for \(key)"))
            return
        }
        counters.slotsApplied += 1
        workers[peer]?.slotsDone += 1
        foldCompletedPrefix(&out)
        completeIterationIfDone(&out)
    }

    /// Hands on, in slot order, every payload whose slot and all slots before it are done, and keeps none of them.
    mutating func foldCompletedPrefix(_ out: inout [SchedulerCommand<Payload>]) {
        while nextFold < settings.metaBatch, let payload = slots.takeResult(nextFold) {
            out.append(.fold(iteration: iteration, slot: nextFold, payload: payload))
            nextFold += 1
        }
    }

    mutating func completeIterationIfDone(_ out: inout [SchedulerCommand<Payload>]) {
        guard slots.remaining == 0, nextFold == settings.metaBatch else { return }
        out.append(.applyMetaUpdate(iteration: iteration))
        iteration += 1
        nextFold = 0
        let last = iteration >= settings.iterations
        if last || iteration % settings.checkpointInterval == 0 { out.append(.writeCheckpoint(iteration: iteration)) }
        slots.restart(Array(0..<settings.metaBatch))
        confirming = []
        refuted = []
        if last {
            isFinished = true
            if settings.serve {
                out.append(.log(.info, "training finished: serving eval requests until stopped"))
            } else if !evalRequests.isEmpty {
                out.append(.log(.info, "training finished: finishing \(evalRequests.count) eval request(s) first"))
            }
            finishIfDone(&out)
        }
    }

    /// Announces the end of the run once training is over and nothing else keeps it up.
    mutating func finishIfDone(_ out: inout [SchedulerCommand<Payload>]) {
        guard isDone, !finishAnnounced else { return }
        finishAnnounced = true
        out.append(.finished)
        for (peer, _) in workers.inJoinOrder {
            out.append(.send(peer, .goodbye("run finished")))
        }
    }

    // MARK: - Assignment

    /// Gives pending slots, in slot order, to workers with free threads, in the order they joined.
    /// Gives a straggling slot (running longer than the backup multiple of the median slot time) to an
    /// idle worker as well; at most one backup per slot. Results are identical by determinism, so the
    /// first to arrive is applied and the other dropped as a duplicate.
    mutating func assignBackups(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        guard let multiple = settings.backupAfterMedianMultiple else { return }
        for (slot, ranFor, median) in slots.stragglers(now: now, multiple: multiple, minimumSamples: settings.backupMinimumSamples) {
            let busy = Set(workers.byPeer.filter { $0.value.running.keys.contains { $0.iteration == iteration && $0.slot == slot } }.map(\.key))
            // No candidate for this straggler (its holders are the only free ones) does not mean none for the next.
            guard let peer = workers.availableInJoinOrder.first(where: { !busy.contains($0) }) else { continue }
            slots.noteBackup(slot)
            counters.backupsSent += 1
            out.append(.log(.info, "slot \(slot) has run \(ranFor) ms (median \(median) ms): backup copy to \(workers[peer]!.id)"))
            out.append(dispatch(slot, to: peer, now: now))
        }
    }

    /// Records a new attempt of `slot` on `peer` and returns the command that sends it (with θ when
    /// the worker does not hold this version yet).
    mutating func dispatch(_ slot: Int, to peer: Peer, now: Tick) -> SchedulerCommand<Payload> {
        let key = SlotKey(iteration: iteration, slot: slot, attempt: slots.start(slot, now: now))
        var worker = workers[peer]!
        let includeParameters = worker.knownVersion != iteration
        worker.knownVersion = iteration
        worker.running[key] = now
        worker.lastSent = now
        workers[peer] = worker
        counters.assignmentsSent += 1
        if includeParameters { counters.parameterTransfers += 1 }
        return .send(peer, .assign(key, includeParameters: includeParameters))
    }

    /// Training slots first (the run's progress), then backups of stragglers, then eval jobs on the
    /// threads left over: evaluation never delays a meta-iteration by more than the eval jobs already
    /// running, and once training is over it has every thread.
    mutating func assign(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        if !isFinished {
            // Slots being recomputed by the shell (a divergence report) are not handed out meanwhile. Only as many
            // pending slots are looked at as there are free threads, and only the workers that can take work are
            // visited (`WorkerTable`), so an event's cost grows with neither the batch nor the cluster.
            var pending: ArraySlice<Int> = []
            if slots.hasPending {
                let free = workers.freeThreads
                pending = slots.pending(first: free, skipping: confirming)[...]
                if free == 0 { return }
            }
            if pending.isEmpty {
                assignBackups(now: now, &out)
            } else {
                for peer in workers.availableInJoinOrder {
                    while let slot = pending.first, let worker = workers[peer], worker.canTakeWork {
                        pending.removeFirst()
                        out.append(dispatch(slot, to: peer, now: now))
                    }
                    if pending.isEmpty { break }
                }
                return
            }
        }
        assignEval(now: now, &out)
    }

    // MARK: - Liveness of work

    /// How long a training slot attempt may be held: `timeoutMedianMultiple` × the median attempt time once there is
    /// one (the upper median, so one sample at iteration 0 is enough), never below `minimumTimeoutMs` and never above
    /// `slotTimeoutMs`; the ceiling alone before any attempt completed.
    public var slotDeadline: Tick {
        guard let median = slots.median else { return settings.slotTimeoutMs }
        return min(settings.slotTimeoutMs, max(settings.minimumTimeoutMs, Tick(Double(median) * settings.timeoutMedianMultiple)))
    }

    /// Takes back every attempt held past its deadline, however alive its holder's heartbeats are: the slot (or
    /// eval job) runs elsewhere, and the holder is suspected — no new work until it delivers something. A
    /// suspected worker whose env-step count (from its heartbeats) has not moved for `limits.maxTimeouts` deadlines is
    /// stuck, not slow, and is disconnected with the reason; a slow one that still computes is kept.
    mutating func reclaimOverdue(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        let slotLimit = slotDeadline
        for (peer, worker) in workers.inJoinOrder {
            var missed: [String] = []
            for (key, since) in worker.running.sorted(by: { $0.key < $1.key }) where now - since > slotLimit {
                release(peer, key, requeue: true)
                if key.iteration == iteration { missed.append("slot \(key.slot) of iteration \(key.iteration) (held \(now - since) ms, deadline \(slotLimit) ms)") }
            }
            // Eval jobs of one request differ in length (probes, curves), so their median says little about any one
            // of them: an eval job comes back when its holder's env-step count has stalled for the stall window
            // (it is not computing), or past the ceiling. Stragglers that compute get assignEval's one backup.
            let stallLimit = max(slotLimit, settings.minimumStallMs)
            let stalled = now - worker.envStepsMovedAt > stallLimit
            for (key, since) in worker.evalRunning.sorted(by: { $0.key < $1.key }) {
                guard evalRequests[key.request] != nil else { unholdEval(peer, key); continue }
                guard now - since > settings.evalTimeoutMs || (stalled && now - since > stallLimit) else { continue }
                unholdEval(peer, key)
                requeueEval(key)
                missed.append("eval job \(key.job) of request \(key.request) (held \(now - since) ms)")
            }
            if !missed.isEmpty {
                counters.attemptsTimedOut += missed.count
                workers[peer]!.timeouts += missed.count
                let still = now - worker.envStepsMovedAt
                let state = still > slotLimit
                    ? "looks stuck: its env-step count (\(worker.envSteps)) has not moved for \(still) ms"
                    : "is computing but slow: its env-step count moved \(still) ms ago (\(worker.envSteps))"
                out.append(.log(.warning, "worker \(worker.id) held \(missed.joined(separator: ", ")) past the deadline and \(state): taken back; it gets no new work until it delivers"))
            }
            let stuckFor = now - workers[peer]!.envStepsMovedAt
            if workers[peer]!.suspected, stuckFor > Tick(settings.limits.maxTimeouts) * slotLimit {
                let reason = "no result for work past its deadline and no progress (env steps) for \(stuckFor) ms: disconnected"
                out.append(.send(peer, .error(ErrorReply(code: .rejected, message: reason))))
                out.append(.log(.warning, "worker \(worker.id) \(reason)"))
                counters.workersDisconnected += 1
                drop(peer, &out)
            }
        }
    }

    /// Forgets that `peer` holds eval attempt `key` (it delivered, failed, or lost it).
    mutating func unholdEval(_ peer: Peer, _ key: EvalKey) {
        workers[peer]?.evalRunning[key] = nil
    }

    /// The current iteration's slots that are neither done, pending, nor held by a live worker: always
    /// empty (the fault simulation checks it after every step; a refused result must never strand a slot).
    public var strandedSlots: [Int] {
        guard !isFinished else { return [] }
        return slots.order.filter { slots.isRunning($0) && !isRunningElsewhere($0) }
    }
}
