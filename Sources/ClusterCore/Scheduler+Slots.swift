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
        guard let round = round(key.iteration), version == settings.baseVersion(of: key.iteration) else {
            release(peer, key, requeue: true)
            counters.staleDropped += 1
            out.append(.log(.debug, "dropped stale result for \(key) (θ version \(version)); running iteration \(iteration)"))
            return
        }
        release(peer, key, requeue: false)
        guard round.slots[key.slot] != nil else {
            strike(peer, "result names slot \(key.slot); iterations have \(settings.metaBatch) slots", now: workers[peer]?.lastHeard ?? 0, &out)
            return
        }
        // How long computing a slot takes: this attempt's own time, from its hand-out to its result (time lost
        // to dead or stuck holders before it would inflate the median, and every deadline with it).
        let took = heldSince.flatMap { started in workers[peer].map { $0.lastHeard - started } }
        guard withRound(key.iteration, { $0.slots.complete(key.slot, payload, took: took) }) == true else {
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
        while nextFold < settings.metaBatch, let payload = current.slots.takeResult(nextFold) {
            out.append(.fold(iteration: iteration, slot: nextFold, payload: payload))
            nextFold += 1
        }
    }

    /// Applies the current iteration once every slot of it is folded, and moves on to the next: a pipelined run's
    /// next iteration, with whatever of it is done already (which may complete it too), or a fresh batch.
    mutating func completeIterationIfDone(_ out: inout [SchedulerCommand<Payload>]) {
        while current.slots.remaining == 0, nextFold == settings.metaBatch {
            out.append(.applyMetaUpdate(iteration: iteration))
            iteration += 1
            nextFold = 0
            let last = iteration >= settings.iterations
            if last || iteration % settings.checkpointInterval == 0 { out.append(.writeCheckpoint(iteration: iteration)) }
            // The finished round's tracker (its attempt times kept) starts the iteration after next, or this one.
            var done = current.slots
            done.restart(Array(0..<settings.metaBatch))
            if let next = ahead {
                current = next
                ahead = iteration + 1 < settings.iterations ? Round(slots: done) : nil
            } else {
                current = Round(slots: done)
            }
            if last {
                isFinished = true
                if settings.serve {
                    out.append(.log(.info, "training finished: serving eval requests until stopped"))
                } else if !evalRequests.isEmpty {
                    out.append(.log(.info, "training finished: finishing \(evalRequests.count) eval request(s) first"))
                }
                finishIfDone(&out)
                return
            }
            foldCompletedPrefix(&out)
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
        for (slot, ranFor, median) in current.slots.stragglers(now: now, multiple: multiple, minimumSamples: settings.backupMinimumSamples) {
            let busy = current.slots.holders(of: slot)
            // No candidate for this straggler (its holders are the only free ones) does not mean none for the next.
            guard let peer = workers.availableInJoinOrder.first(where: { !busy.contains($0) }) else { continue }
            current.slots.noteBackup(slot)
            counters.backupsSent += 1
            out.append(.log(.info, "slot \(slot) has run \(ranFor) ms (median \(median) ms): backup copy to \(workers[peer]!.id)"))
            out.append(dispatch(iteration, slot, to: peer, now: now))
        }
    }

    /// Records a new attempt of slot `slot` of `iteration` on `peer` and returns the command that sends it (with θ
    /// when the worker does not hold the version the slot adapts).
    mutating func dispatch(_ iteration: Int, _ slot: Int, to peer: Peer, now: Tick) -> SchedulerCommand<Payload> {
        let attempt = withRound(iteration) { $0.slots.start(slot, holder: peer, now: now) }!
        let key = SlotKey(iteration: iteration, slot: slot, attempt: attempt)
        let base = settings.baseVersion(of: iteration)
        var worker = workers[peer]!
        let includeParameters = !worker.knownVersions.contains(base)
        if includeParameters { worker.received(base) }
        worker.running[key] = now
        worker.lastSent = now
        workers[peer] = worker
        counters.assignmentsSent += 1
        if includeParameters { counters.parameterTransfers += 1 }
        return .send(peer, .assign(key, includeParameters: includeParameters))
    }

    /// Training slots first (the run's progress: the current iteration's in slot order, then a pipelined run's next
    /// iteration's), then backups of stragglers, then eval jobs on the threads left over: evaluation never delays a
    /// meta-iteration by more than the eval jobs already running, and once training is over it has every thread.
    mutating func assign(now: Tick, _ out: inout [SchedulerCommand<Payload>]) {
        if !isFinished {
            // Slots being recomputed by the shell (a divergence report) are not handed out meanwhile. Only as many
            // pending slots are looked at as there are free threads, and only the workers that can take work are
            // visited (`WorkerTable`), so an event's cost grows with neither the batch nor the cluster.
            // The current iteration's pending slots, then the next one's: the first `ofCurrent` are the current one's.
            var pending: ArraySlice<Int> = []
            var ofCurrent = 0
            if current.slots.hasPending || ahead?.slots.hasPending == true {
                let free = workers.freeThreads
                if free == 0 { return }
                var found = current.slots.pending(first: free, skipping: current.confirming)
                ofCurrent = found.count
                if found.count < free, let ahead {
                    found += ahead.slots.pending(first: free - found.count, skipping: ahead.confirming)
                }
                pending = found[...]
            }
            if pending.isEmpty {
                assignBackups(now: now, &out)
            } else {
                for peer in workers.availableInJoinOrder {
                    while let slot = pending.first, let worker = workers[peer], worker.canTakeWork {
                        pending.removeFirst()
                        out.append(dispatch(ofCurrent > 0 ? iteration : iteration + 1, slot, to: peer, now: now))
                        ofCurrent -= 1
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
        guard let median = current.slots.median else { return settings.slotTimeoutMs }
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
                if round(key.iteration) != nil { missed.append("slot \(key.slot) of iteration \(key.iteration) (held \(now - since) ms, deadline \(slotLimit) ms)") }
            }
            // Eval jobs of one request differ in length (probes, curves), so their median says little about any one
            // of them: an eval job comes back when its holder's env-step count has stalled for the stall window
            // (it is not computing), or past the ceiling. Stragglers that compute get assignEval's one backup.
            let stallLimit = max(slotLimit, settings.minimumStallMs)
            let stalled = now - worker.envStepsMovedAt > stallLimit
            for (key, since) in worker.evalRunning.sorted(by: { $0.key < $1.key }) {
                guard evalRequests[key.request] != nil else { releaseEval(peer, key, requeue: false); continue }
                guard now - since > settings.evalTimeoutMs || (stalled && now - since > stallLimit) else { continue }
                releaseEval(peer, key, requeue: true)
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

    /// The slots being run (the current iteration's, and a pipelined run's next iteration's) that are neither done,
    /// pending, nor held by a live worker: always empty (the fault simulation checks it after every step; a refused
    /// result must never strand a slot).
    public var strandedSlots: [SlotKey] {
        guard !isFinished else { return [] }
        return [(iteration, current), (iteration + 1, ahead)].flatMap { (iteration: Int, round: Round?) -> [SlotKey] in
            guard let slots = round?.slots else { return [] }
            // Found by scanning the workers, not from the tracker's holders: the check is that the two agree.
            let held = Set(workers.values.flatMap { $0.running.keys.filter { $0.iteration == iteration }.map(\.slot) })
            return slots.order.filter { slots.isRunning($0) && (!held.contains($0) || slots.holders(of: $0).isEmpty) }
                .map { SlotKey(iteration: iteration, slot: $0, attempt: slots[$0]?.attempts ?? 0) }
        }
    }
}
