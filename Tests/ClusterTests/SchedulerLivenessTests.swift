import Cluster
import Testing
import Wire

/// Liveness of work: a worker that heartbeats but never delivers cannot stall a run, and no refused result
/// strands a slot.
@Suite struct SchedulerLivenessTests {
    var settings: SchedulerSettings {
        var s = SchedulerSettings(runID: "run-1", iterations: 2, metaBatch: 4, heartbeatIntervalMs: 100, liveness: 3,
                                  checkpointInterval: 1)
        s.slotTimeoutMs = 10_000
        return s
    }
    let honest = Peer([1]), hole = Peer([2]), other = Peer([3])

    func assignments(_ commands: [SchedulerCommand<Int>], to peer: Peer) -> [SlotKey] {
        commands.compactMap { if case let .send(p, .assign(k, _)) = $0, p == peer { return k } else { return nil } }
    }

    /// The scenario: one honest thread next to a peer with 2 threads that accepts slots, heartbeats and
    /// never answers. Its slots come back after the deadline, it gets nothing new, and the run goes on.
    @Test func aWorkerThatHeartbeatsButNeverDeliversCannotStallTheRun() throws {
        var s = try Scheduler<Int>(settings: settings)
        var out = s.handle(.hello(honest, Hello(host: "honest", cores: 1, threads: 1)), now: 0)
        var mine = assignments(out, to: honest)
        out = s.handle(.hello(hole, Hello(host: "hole", cores: 1, threads: 2)), now: 0)
        #expect(assignments(out, to: hole).count == 2)
        var now: Tick = 0
        var applied = 0, taken = false
        while applied < 2 && now < 60_000 {
            now += 50
            // The hole heartbeats with an env-step count that never moves; the honest worker takes 200 ms a slot.
            out = s.handle(.heartbeat(hole, envSteps: 0), now: now)
            out += s.handle(.heartbeat(honest, envSteps: UInt64(now)), now: now)
            if let key = mine.first, now % 200 == 0 {
                mine.removeFirst()
                out += s.handle(.result(honest, runID: "run-1", key: key, parameterVersion: key.iteration, payload: key.slot), now: now)
            }
            out += s.handle(.tick, now: now)
            #expect(s.strandedSlots.isEmpty)
            mine += assignments(out, to: honest)
            #expect(assignments(out, to: hole).isEmpty || !taken, "a suspected worker got new work")
            for c in out {
                if case .applyMetaUpdate = c { applied += 1 }
                if case let .log(.warning, m) = c, m.contains("past the deadline") { taken = true; #expect(m.contains("looks stuck")) }
            }
        }
        #expect(applied == 2, "the run finished (at \(now) ms)")
        #expect(taken && s.counters.attemptsTimedOut >= 2)
        // Deadline 4 × the 200 ms median, at least 1 s: the first iteration is not held for the 10 s ceiling.
        #expect(now < 10_000, "finished at \(now) ms")
    }

    @Test func aStuckWorkerIsDisconnectedAndASlowOneIsNot() throws {
        var s = try Scheduler<Int>(settings: settings)
        _ = s.handle(.hello(honest, Hello(host: "honest", cores: 1, threads: 1)), now: 0)
        _ = s.handle(.hello(hole, Hello(host: "hole", cores: 1, threads: 1)), now: 0)
        _ = s.handle(.hello(other, Hello(host: "slow", cores: 1, threads: 1)), now: 0)
        // A completion sets the deadline at 1 s (4 × 100 ms is below the 1 s floor).
        _ = s.handle(.result(honest, runID: "run-1", key: SlotKey(iteration: 0, slot: 0, attempt: 0), parameterVersion: 0, payload: 0), now: 100)
        var forgotten: [Peer] = []
        for now in stride(from: Tick(150), through: 6_000, by: 50) {
            _ = s.handle(.heartbeat(hole, envSteps: 0), now: now)
            _ = s.handle(.heartbeat(other, envSteps: UInt64(now)), now: now)   // computing, just slowly
            _ = s.handle(.heartbeat(honest, envSteps: UInt64(now)), now: now)
            for c in s.handle(.tick, now: now) { if case .forget(let p) = c { forgotten.append(p) } }
        }
        #expect(forgotten == [hole], "only the worker whose env steps never moved is disconnected")
        #expect(s.counters.workersDisconnected == 1)
    }

    /// A result the coordinator refuses (θ version or run id) for a slot its sender holds: the slot is pending
    /// again at once, so the sender dying afterwards strands nothing.
    @Test(arguments: ["version", "run"])
    func aRefusedResultLeavesTheSlotAccountedFor(_ wrong: String) throws {
        var s = try Scheduler<Int>(settings: settings)
        let out = s.handle(.hello(hole, Hello(host: "h", cores: 1, threads: 4)), now: 0)
        let held = assignments(out, to: hole)
        #expect(held.count == 4)
        let key = held[1]
        _ = wrong == "version"
            ? s.handle(.result(hole, runID: "run-1", key: key, parameterVersion: 5, payload: 1), now: 10)
            : s.handle(.result(hole, runID: "another-run", key: key, parameterVersion: 0, payload: 1), now: 10)
        #expect(s.strandedSlots.isEmpty)
        // The sender dies; a newcomer must get every unfinished slot, the refused one included.
        _ = s.handle(.tick, now: 10_000)
        #expect(s.workerCount == 0)
        let fresh = assignments(s.handle(.hello(honest, Hello(host: "h", cores: 1, threads: 4)), now: 10_001), to: honest)
        #expect(Set(fresh.map(\.slot)) == [0, 1, 2, 3])
    }

    /// w1 (2 threads) runs straggling slot 0 and has a free thread; w2 (1 thread) runs straggling slot 2. Slot 0
    /// has no candidate (its only free thread is its own holder's), which must not stop slot 2 from getting one.
    @Test func backupsGoOnPastAStragglerWithoutACandidate() throws {
        var config = settings
        config.metaBatch = 3
        config.backupMinimumSamples = 1
        var s = try Scheduler<Int>(settings: config)
        let w1 = Peer([11]), w2 = Peer([12])
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 2)), now: 0)   // slots 0, 1
        _ = s.handle(.hello(w2, Hello(host: "h", cores: 1, threads: 1)), now: 0)   // slot 2
        _ = s.handle(.result(w1, runID: "run-1", key: SlotKey(iteration: 0, slot: 1, attempt: 0), parameterVersion: 0, payload: 1), now: 100)
        let out = s.handle(.tick, now: 400)
        let sent = out.compactMap { if case let .send(p, .assign(k, _)) = $0 { return (p, k.slot) } else { return nil } }
        #expect(sent.count == 1 && sent.first?.0 == w1 && sent.first?.1 == 2, "slot 2's backup on w1: \(sent)")
    }
}

extension SchedulerLivenessTests {
    /// The same for eval jobs: a job held past its deadline by a worker that heartbeats but never answers runs
    /// on another worker, and its outcome reaches the client.
    @Test func anEvalJobHeldPastItsDeadlineRunsElsewhere() throws {
        var config = settings
        config.evalTimeoutMs = 2_000
        config.iterations = 0   // training is over: eval jobs have every thread
        config.serve = true
        var s = try Scheduler<Int>(settings: config)
        let client = Peer([9])
        _ = s.handle(.hello(hole, Hello(host: "hole", cores: 1, threads: 1)), now: 0)
        var out = s.handle(.request(client, jobs: [0]), now: 0)
        #expect(out.contains { if case let .send(p, .evalJob) = $0 { return p == hole } else { return false } })
        _ = s.handle(.hello(honest, Hello(host: "honest", cores: 1, threads: 1)), now: 100)
        var moved: EvalKey?
        for now in stride(from: Tick(200), through: 3_000, by: 100) {
            _ = s.handle(.heartbeat(hole, envSteps: 0), now: now)
            _ = s.handle(.heartbeat(honest, envSteps: 0), now: now)
            _ = s.handle(.heartbeat(client), now: now)
            out = s.handle(.tick, now: now)
            if let key = out.compactMap({ if case let .send(p, .evalJob(k)) = $0, p == honest { return k } else { return nil } }).first {
                moved = key
                break
            }
        }
        let key = try #require(moved, "the job was not taken back from the silent holder")
        out = s.handle(.outcome(honest, key), now: 3_100)
        #expect(out.contains { if case .forwardEvalOutcome(client, _) = $0 { return true } else { return false } })
        #expect(s.counters.attemptsTimedOut == 1)
    }
}

// Divergence reports, checks and their outcomes read as transcripts: Scenarios/06–08 and 12.
