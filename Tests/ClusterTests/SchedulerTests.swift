import Cluster
import Testing
import Wire

/// Direct, scripted checks of single scheduler behaviours.
@Suite struct SchedulerTests {
    let settings = SchedulerSettings(runID: "run-1", iterations: 2, metaBatch: 3, heartbeatIntervalMs: 100,
                                     liveness: 3, checkpointInterval: 1)
    let a = Peer([1]), b = Peer([2])

    func sends(_ commands: [SchedulerCommand<Int>]) -> [(Peer, Outbound)] {
        commands.compactMap { if case let .send(p, o) = $0 { return (p, o) } else { return nil } }
    }

    /// The payloads `out` folds, in order.
    static func folds(_ out: [SchedulerCommand<Int>]) -> [Int] {
        out.compactMap { if case let .fold(_, _, p) = $0 { return p } else { return nil } }
    }

    @Test func assignsSlotsInOrderWithParametersOncePerVersion() throws {
        var s = try Scheduler<Int>(settings: settings)
        var out = s.handle(.hello(a, Hello(host: "h", cores: 2, threads: 2)), now: 0)
        let assigned = sends(out).compactMap { if case let .assign(k, p) = $0.1 { return (k, p) } else { return nil } }
        #expect(assigned.map(\.0.slot) == [0, 1])
        #expect(assigned.map(\.1) == [true, false])
        out = s.handle(.result(a, runID: "run-1", key: assigned[0].0, parameterVersion: 0, payload: 10), now: 5)
        let next = sends(out).compactMap { if case let .assign(k, p) = $0.1 { return (k, p) } else { return nil } }
        #expect(next.count == 1 && next[0].0.slot == 2 && next[0].1 == false)
    }

    /// Pipelined: the next iteration's slots go to threads the current one leaves free, adapting the θ version the
    /// current one will be added to; their results wait, and are folded (done ones at once) when it becomes current.
    @Test func pipelinedRunsHandOutTheNextIterationOnTheCurrentTheta() throws {
        var settings = SchedulerSettings(runID: "run-1", iterations: 3, metaBatch: 2, heartbeatIntervalMs: 100,
                                         liveness: 3, checkpointInterval: 1)
        settings.pipelined = true
        var s = try Scheduler<Int>(settings: settings)
        func assigned(_ out: [SchedulerCommand<Int>]) -> [(SlotKey, Bool)] {
            sends(out).compactMap { if case let .assign(k, p) = $0.1 { return (k, p) } else { return nil } }
        }
        // Four threads: iteration 0's two slots, then iteration 1's; both adapt θ_0, sent once.
        var out = s.handle(.hello(a, Hello(host: "h", cores: 4, threads: 4)), now: 0)
        #expect(assigned(out).map { [$0.0.iteration, $0.0.slot] } == [[0, 0], [0, 1], [1, 0], [1, 1]])
        #expect(assigned(out).map(\.1) == [true, false, false, false])
        // Iteration 1's results come first and wait; a result computed on another version than its base is stale.
        out = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 1, slot: 1, attempt: 0), parameterVersion: 1, payload: 99), now: 1)
        #expect(s.counters.staleDropped == 1 && Self.folds(out).isEmpty)
        out = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 1, slot: 1, attempt: 1), parameterVersion: 0, payload: 11), now: 2)
        #expect(Self.folds(out).isEmpty)
        out = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 1, slot: 0, attempt: 0), parameterVersion: 0, payload: 10), now: 3)
        #expect(Self.folds(out).isEmpty && s.iteration == 0)
        out = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 0, slot: 0, attempt: 0), parameterVersion: 0, payload: 0), now: 4)
        #expect(Self.folds(out) == [0])
        // Iteration 0 completes: applied, then iteration 1's waiting results are folded and applied too, and the last
        // iteration's slots, which adapt θ_1, go out with it.
        out = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 0, slot: 1, attempt: 0), parameterVersion: 0, payload: 1), now: 5)
        let applied = out.compactMap { if case .applyMetaUpdate(let i) = $0 { return i } else { return nil } }
        #expect(applied == [0, 1] && Self.folds(out) == [1, 10, 11] && s.iteration == 2)
        #expect(assigned(out).map { [$0.0.iteration, $0.0.slot] } == [[2, 0], [2, 1]])
        #expect(assigned(out).map(\.1) == [true, false])
        #expect(settings.baseVersion(of: 2) == 1)
        // The last iteration has nothing ahead of it.
        _ = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 2, slot: 0, attempt: 0), parameterVersion: 1, payload: 20), now: 6)
        out = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 2, slot: 1, attempt: 0), parameterVersion: 1, payload: 21), now: 7)
        #expect(s.isFinished && assigned(out).isEmpty)
    }


    @Test func silentWorkersAreDeclaredDeadAndTheirSlotsRequeued() throws {
        var s = try Scheduler<Int>(settings: settings)
        _ = s.handle(.hello(a, Hello(host: "h", cores: 1, threads: 3)), now: 0)
        _ = s.handle(.hello(b, Hello(host: "h", cores: 1, threads: 3)), now: 0)
        _ = s.handle(.heartbeat(b), now: 250)
        #expect(!s.handle(.tick, now: 300).contains { if case .forget = $0 { return true } else { return false } })
        let out = s.handle(.tick, now: 301)
        #expect(out.contains { if case .forget(let p) = $0 { return p == a } else { return false } })
        let reassigned = sends(out).filter { if case .assign = $0.1 { return $0.0 == b } else { return false } }
        #expect(reassigned.count == 3)
        #expect(s.counters.workersDeclaredDead == 1 && s.counters.requeued == 3)
    }


    @Test func aStragglingSlotGetsABackupAndTheFirstResultWins() throws {
        var s = try Scheduler<Int>(settings: SchedulerSettings(runID: "run-1", iterations: 3, metaBatch: 2, heartbeatIntervalMs: 100,
                                                           liveness: 100, checkpointInterval: 1))
        _ = s.handle(.hello(a, Hello(host: "fast", cores: 1, threads: 1)), now: 0)
        _ = s.handle(.hello(b, Hello(host: "slow", cores: 1, threads: 1)), now: 0)
        // Iteration 0: a and b each take 100 ms.
        _ = s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 0, slot: 0, attempt: 0), parameterVersion: 0, payload: 1), now: 100)
        _ = s.handle(.result(b, runID: "run-1", key: SlotKey(iteration: 0, slot: 1, attempt: 0), parameterVersion: 0, payload: 2), now: 100)
        // Iteration 1: a finishes in 100 ms; b's slot 1 straggles.
        #expect(Self.folds(s.handle(.result(a, runID: "run-1", key: SlotKey(iteration: 1, slot: 0, attempt: 0), parameterVersion: 1, payload: 3), now: 200)) == [3])
        #expect(sends(s.handle(.tick, now: 290)).allSatisfy { if case .assign = $0.1 { return false } else { return true } })
        let backup = sends(s.handle(.tick, now: 310)).compactMap { p, o -> SlotKey? in
            if case let .assign(k, _) = o, p == a { return k } else { return nil }
        }
        #expect(backup == [SlotKey(iteration: 1, slot: 1, attempt: 1)])
        let out = s.handle(.result(a, runID: "run-1", key: backup[0], parameterVersion: 1, payload: 4), now: 400)
        #expect(Self.folds(out) == [4] && out.contains { if case .applyMetaUpdate(1) = $0 { return true } else { return false } })
        _ = s.handle(.result(b, runID: "run-1", key: SlotKey(iteration: 1, slot: 1, attempt: 0), parameterVersion: 1, payload: 4), now: 1000)
        #expect(s.counters.backupsSent == 1 && s.counters.staleDropped == 1)
    }


    // Duplicate, stale and foreign results, garbage and unusable results read as transcripts: Scenarios/10–12.

    @Test func resumingAtTheLastIterationFinishesAtOnce() throws {
        let s = try Scheduler<Int>(settings: settings, startIteration: 2)
        #expect(s.isFinished)
    }
}
