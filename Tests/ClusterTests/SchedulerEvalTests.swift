import Cluster
import Testing
import Wire

/// The scheduler's second kind of work: meta-evaluation jobs from eval clients, on the threads
/// training leaves free.
@Suite struct SchedulerEvalTests {
    let settings = SchedulerSettings(runID: "run-1", iterations: 1, metaBatch: 2, heartbeatIntervalMs: 100,
                                     liveness: 3, checkpointInterval: 1)
    let w1 = Peer([1]), w2 = Peer([2]), client = Peer([9])

    func sends(_ commands: [SchedulerCommand<Int>]) -> [(Peer, Outbound)] {
        commands.compactMap { if case let .send(p, o) = $0 { return (p, o) } else { return nil } }
    }
    func evalJobs(_ commands: [SchedulerCommand<Int>]) -> [(Peer, EvalKey)] {
        sends(commands).compactMap { if case .evalJob(let k) = $0.1 { return ($0.0, k) } else { return nil } }
    }
    func forwarded(_ commands: [SchedulerCommand<Int>]) -> [EvalKey] {
        commands.compactMap { if case let .forwardEvalOutcome(c, o) = $0, c == client { return o.key } else { return nil } }
    }

    @Test func evalJobsTakeOnlyTheThreadsTrainingLeavesFree() throws {
        var s = try Scheduler<Int>(settings: settings)
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 1)), now: 0)
        _ = s.handle(.hello(w2, Hello(host: "h", cores: 1, threads: 2)), now: 0)
        // Both slots are out (w1 one, w2 one): one thread of w2 is free.
        let out = s.handle(.request(client, jobs: [0, 1, 2]), now: 1)
        #expect(sends(out).contains { $0.0 == client && { if case .welcome = $0 { return true } else { return false } }($0.1) })
        #expect(evalJobs(out).map(\.0) == [w2] && evalJobs(out).map(\.1.job) == [0])
        // The slot w1 finishes frees its thread for the next eval job, not for a slot (none pending).
        let after = s.handle(.result(w1, runID: "run-1", key: SlotKey(iteration: 0, slot: 0, attempt: 0), parameterVersion: 0, payload: 1), now: 2)
        #expect(evalJobs(after).map(\.0) == [w1] && evalJobs(after).map(\.1.job) == [1])
    }

    @Test func outcomesAreForwardedOnceAndTheRequestCompletes() throws {
        var s = try Scheduler<Int>(settings: settings)
        _ = s.handle(.request(client, jobs: [3, 5]), now: 0)
        // Training takes both threads first; no eval job goes out until it is over.
        let joined = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 2)), now: 0)
        #expect(evalJobs(joined).isEmpty)
        for slot in 0..<2 {
            _ = s.handle(.result(w1, runID: "run-1", key: SlotKey(iteration: 0, slot: slot, attempt: 0), parameterVersion: 0, payload: slot), now: 1)
        }
        #expect(s.isFinished && !s.isDone, "training over, but request 1 keeps the run up")
        let first = EvalKey(request: 1, job: 3, attempt: 0), second = EvalKey(request: 1, job: 5, attempt: 0)
        #expect(s.counters.evalJobsSent == 2)
        #expect(forwarded(s.handle(.outcome(w1, first), now: 2)) == [first])
        #expect(forwarded(s.handle(.outcome(w1, first), now: 3)).isEmpty, "a duplicate is not forwarded")
        let last = s.handle(.outcome(w1, second), now: 4)
        #expect(forwarded(last) == [second])
        #expect(last.contains { if case .forgetEvalRequest(1) = $0 { return true } else { return false } })
        #expect(last.contains { if case .finished = $0 { return true } else { return false } })
        #expect(s.isDone && s.counters.evalDuplicatesDropped == 1 && s.counters.evalRequestsCompleted == 1)
    }

    @Test func aDeadWorkersEvalJobsRunElsewhereAndLateOutcomesAreDropped() throws {
        var s = try Scheduler<Int>(settings: SchedulerSettings(runID: "run-1", iterations: 0, metaBatch: 1, heartbeatIntervalMs: 100,
                                                               liveness: 3, checkpointInterval: 1))
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 1)), now: 0)
        let out = s.handle(.request(client, jobs: [0]), now: 0)
        #expect(evalJobs(out).map(\.0) == [w1])
        _ = s.handle(.hello(w2, Hello(host: "h", cores: 1, threads: 1)), now: 250)
        _ = s.handle(.heartbeat(client), now: 250)
        let expired = s.handle(.tick, now: 301)
        #expect(expired.contains { if case .forget(let p) = $0 { return p == w1 } else { return false } })
        #expect(evalJobs(expired).map(\.0) == [w2] && evalJobs(expired).map(\.1.attempt) == [1])
        #expect(s.counters.evalRequeued == 1)
        let done = s.handle(.outcome(w2, EvalKey(request: 1, job: 0, attempt: 1)), now: 310)
        #expect(forwarded(done).count == 1)
        // w1 was only slow: its answer, after a new hello, changes nothing.
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 1)), now: 320)
        #expect(forwarded(s.handle(.outcome(w1, EvalKey(request: 1, job: 0, attempt: 0)), now: 321)).isEmpty)
    }

    @Test func aSilentClientsRequestIsAbandonedAndAFailingJobFailsTheRequest() throws {
        var s = try Scheduler<Int>(settings: SchedulerSettings(runID: "run-1", iterations: 0, metaBatch: 1, heartbeatIntervalMs: 100,
                                                               liveness: 3, checkpointInterval: 1))
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 1)), now: 0)
        _ = s.handle(.request(client, jobs: [0, 1]), now: 0)
        _ = s.handle(.heartbeat(w1), now: 300)
        let gone = s.handle(.tick, now: 301)
        #expect(gone.contains { if case .forgetEvalRequest(1) = $0 { return true } else { return false } })
        #expect(s.outstandingEvalRequests == 0 && s.counters.evalRequestsAbandoned == 1)
        // The abandoned job's outcome is dropped; the next request gets the worker.
        #expect(forwarded(s.handle(.outcome(w1, EvalKey(request: 1, job: 0, attempt: 0)), now: 302)).isEmpty)

        _ = s.handle(.request(client, jobs: [0]), now: 302)
        var failure: [SchedulerCommand<Int>] = []
        for attempt in 0..<settings.limits.evalGiveUpAttempts {
            failure = s.handle(.evalFailed(w1, EvalKey(request: 2, job: 0, attempt: attempt), "diverged"), now: 303 + Int64(attempt))
        }
        #expect(sends(failure).contains { $0.0 == client && { if case .error(let e) = $0 { return e.code == .taskFailed } else { return false } }($0.1) })
        #expect(s.outstandingEvalRequests == 0)
    }

    @Test func aWorkerMayNotSubmitEvalRequests() throws {
        var s = try Scheduler<Int>(settings: settings)
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 1)), now: 0)
        let out = s.handle(.request(w1, jobs: [0]), now: 1)
        #expect(!out.contains { if case .holdEvalRequest = $0 { return true } else { return false } }, "nothing to hold: refused")
        #expect(s.outstandingEvalRequests == 0)
        #expect(sends(out).contains { if case .error(let e) = $0.1 { return e.code == .malformed } else { return false } })
    }

    @Test func outstandingRequestsAreBoundedPerClientAndInAll() throws {
        var limited = settings
        limited.limits.maxEvalRequests = 3
        limited.limits.maxEvalRequestsPerClient = 2
        var s = try Scheduler<Int>(settings: limited)
        let other = Peer([8]), third = Peer([7])
        func refused(_ out: [SchedulerCommand<Int>]) -> Bool {
            sends(out).contains { if case .error(let e) = $0.1 { return e.code == .rejected } else { return false } }
                && !out.contains { if case .holdEvalRequest = $0 { return true } else { return false } }
        }
        #expect(!refused(s.handle(.request(client, jobs: [0]), now: 0)))
        #expect(!refused(s.handle(.request(client, jobs: [0]), now: 0)))
        #expect(refused(s.handle(.request(client, jobs: [0]), now: 0)), "a third from one client")
        #expect(!refused(s.handle(.request(other, jobs: [0]), now: 0)))
        #expect(refused(s.handle(.request(third, jobs: [0]), now: 0)), "a fourth in all")
        #expect(s.outstandingEvalRequests == 3)
    }

    @Test func aJobThatKeepsKillingWorkersIsGivenUpNotRetriedForever() throws {
        var s = try Scheduler<Int>(settings: SchedulerSettings(runID: "run-1", iterations: 0, metaBatch: 1, heartbeatIntervalMs: 100,
                                                               liveness: 3, checkpointInterval: 1))
        var now: Tick = 0
        _ = s.handle(.request(client, jobs: [0]), now: now)
        var last: [SchedulerCommand<Int>] = []
        for n in 0..<settings.limits.evalGiveUpAttempts {
            // A fresh worker takes the job, then goes silent (OOM-killed by it) and is declared dead.
            let peer = Peer([UInt8(20 + n)])
            _ = s.handle(.heartbeat(client), now: now)
            #expect(evalJobs(s.handle(.hello(peer, Hello(host: "h", cores: 1, threads: 1)), now: now)).count == 1)
            now += 301
            _ = s.handle(.heartbeat(client), now: now)
            last = s.handle(.tick, now: now)
        }
        #expect(sends(last).contains { $0.0 == client && { if case .error(let e) = $0 { return e.code == .taskFailed && e.message.contains("died") } else { return false } }($0.1) })
        #expect(s.outstandingEvalRequests == 0 && s.counters.evalRequestsAbandoned == 1)
    }

    @Test func failuresNotLossesDecideWhenAJobIsGivenUp() throws {
        var s = try Scheduler<Int>(settings: SchedulerSettings(runID: "run-1", iterations: 0, metaBatch: 1, heartbeatIntervalMs: 100,
                                                               liveness: 3, checkpointInterval: 1))
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 1)), now: 0)
        _ = s.handle(.request(client, jobs: [0]), now: 0)
        // Four failures, each answered by a retry; the fifth gives up.
        for attempt in 0..<(settings.limits.evalGiveUpAttempts - 1) {
            let out = s.handle(.evalFailed(w1, EvalKey(request: 1, job: 0, attempt: attempt), "flaky"), now: 1)
            #expect(evalJobs(out).map(\.1.attempt) == [attempt + 1])
        }
        #expect(s.outstandingEvalRequests == 1)
        _ = s.handle(.evalFailed(w1, EvalKey(request: 1, job: 0, attempt: settings.limits.evalGiveUpAttempts - 1), "flaky"), now: 2)
        #expect(s.outstandingEvalRequests == 0)
    }

    @Test func aStragglingEvalJobGetsABackupAndTheFirstOutcomeWins() throws {
        var s = try Scheduler<Int>(settings: SchedulerSettings(runID: "run-1", iterations: 0, metaBatch: 1, heartbeatIntervalMs: 1000,
                                                               liveness: 100, checkpointInterval: 1))
        _ = s.handle(.hello(w1, Hello(host: "h", cores: 1, threads: 4)), now: 0)
        let out = s.handle(.request(client, jobs: [0, 1, 2, 3]), now: 0)
        #expect(evalJobs(out).count == 4)
        for job in 0..<3 { _ = s.handle(.outcome(w1, EvalKey(request: 1, job: job, attempt: 0)), now: 100) }
        // Job 3 runs on; past 4 × the 100 ms median, an idle worker gets a copy, and w1 does not get a second.
        #expect(evalJobs(s.handle(.tick, now: 399)).isEmpty)
        #expect(evalJobs(s.handle(.tick, now: 401)).isEmpty, "w1 already runs it")
        let backup = s.handle(.hello(w2, Hello(host: "h", cores: 1, threads: 1)), now: 402)
        #expect(evalJobs(backup).map(\.0) == [w2] && evalJobs(backup).map(\.1.attempt) == [1])
        #expect(forwarded(s.handle(.outcome(w2, EvalKey(request: 1, job: 3, attempt: 1)), now: 450)).count == 1)
        #expect(forwarded(s.handle(.outcome(w1, EvalKey(request: 1, job: 3, attempt: 0)), now: 460)).isEmpty)
        #expect(s.outstandingEvalRequests == 0 && s.counters.evalDuplicatesDropped == 1)
    }
}
