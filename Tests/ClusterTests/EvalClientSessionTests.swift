import Cluster
import DQN
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Wire

/// The eval client's protocol logic in simulated time: submit, collect each outcome once, resubmit only the missing
/// jobs after a restart or a silence, give up on an unreachable coordinator. No socket, no sleep.
@Suite struct EvalClientSessionTests {
    static let jobs = (0..<3).map(SchedulerSimulationTests.evalJob)

    static func session() -> EvalClientSession {
        var s = EvalClientSession.Settings()
        s.heartbeatIntervalMs = 100
        s.liveness = 3
        s.initialBackoffMs = 500
        s.maxBackoffMs = 1000
        s.unreachableTimeoutMs = 5000
        s.endpoint = "tcp://coordinator:5555"
        s.requestPrefix = "eval-t"
        return EvalClientSession(jobs: jobs, settings: s)
    }

    static func outcome(_ job: Int, request: Int = 1) -> [[UInt8]] {
        let message = EvalJobMessage(key: EvalKey(request: request, job: job, attempt: 0), job: jobs[job])
        return [WireCodec.encode(.evalOutcome(EvalOutcome(key: message.key, outcome: SchedulerSimulationTests.evalResult(message))))]
    }

    static func frames(_ message: Message) -> [[UInt8]] { [WireCodec.encode(message)] }

    /// The job indices of the eval request among `actions`, if one was sent.
    static func submitted(_ actions: [EvalClientSession.Action]) -> [Int]? {
        for case .send(.evalRequest(let r)) in actions { return r.jobs.map(\.index) }
        return nil
    }

    @Test func collectsEachOutcomeOnceInJobOrder() {
        var s = Self.session()
        let start = s.handle(.start, now: 0)
        #expect(start.first == .connect && Self.submitted(start) == [0, 1, 2] && s.requestID == "eval-t-s1")
        #expect(s.handle(.received(Self.outcome(2)), now: 10) == [.completed(index: 2)])
        #expect(s.handle(.received(Self.outcome(2)), now: 11) == [])        // a backup's late copy
        _ = s.handle(.received(Self.outcome(0)), now: 12)
        let done = s.handle(.received(Self.outcome(1)), now: 13)
        let expected = Self.jobs.indices.map { i in
            SchedulerSimulationTests.evalResult(EvalJobMessage(key: EvalKey(request: 1, job: i, attempt: 0), job: Self.jobs[i]))
        }
        #expect(done == [.completed(index: 1), .send(.goodbye(reason: "eval batch complete")), .disconnect, .finished(expected)])
        #expect(s.connection == .ended)
    }

    @Test func resubmitsOnlyTheMissingJobs() {
        var s = Self.session()
        _ = s.handle(.start, now: 0)
        _ = s.handle(.received(Self.outcome(1)), now: 10)
        // The coordinator restarted and forgot the request: at once, under a new id.
        let restarted = s.handle(.received(Self.frames(.error(ErrorReply(code: .unknownWorker, message: "?")))), now: 20)
        let moves = restarted.filter { if case .log = $0 { return false } else { return true } }
        #expect(moves.prefix(2) == [.disconnect, .connect] && Self.submitted(restarted) == [0, 2] && s.requestID == "eval-t-s2")
        // Silence past liveness × heartbeat: back off 500 ms, then submit again; the backoff doubles to its maximum.
        #expect(s.handle(.tick, now: 119) == [])
        #expect(s.handle(.tick, now: 120) == [.send(.heartbeat(envSteps: 0))])
        _ = s.handle(.tick, now: 321)
        #expect(s.connection == .backingOff(until: 821))
        #expect(Self.submitted(s.handle(.tick, now: 821)) == [0, 2])
        _ = s.handle(.tick, now: 1122)
        #expect(s.connection == .backingOff(until: 2122))
        _ = s.handle(.tick, now: 2122)
        _ = s.handle(.tick, now: 2423)
        #expect(s.connection == .backingOff(until: 3423))
    }

    @Test func givesUpOnAnUnreachableCoordinator() {
        var s = Self.session()
        _ = s.handle(.start, now: 0)
        var failure: String?
        var t: Tick = 0
        while failure == nil && t < 10_000 {
            t += 50
            for case .failed(let reason) in s.handle(.tick, now: t) { failure = reason }
        }
        #expect(t == 5050)
        #expect(failure?.contains("no coordinator answered at tcp://coordinator:5555") == true, "\(failure ?? "none")")
    }

    @Test func endsWithAClearErrorWhenTheBatchCannotComplete() {
        for (message, text) in [(Message.goodbye(reason: "run finished"), "the coordinator ended (run finished) with 3 of 3"),
                                (.error(ErrorReply(code: .taskFailed, message: "job 1 failed on 5 workers")), "an eval job failed on the workers"),
                                (.error(ErrorReply(code: .malformed, message: "bad job")), "refused the eval request")] {
            var s = Self.session()
            _ = s.handle(.start, now: 0)
            let actions = s.handle(.received(Self.frames(message)), now: 1)
            #expect(actions.contains { if case .failed(let r) = $0 { return r.contains(text) } else { return false } }, "\(actions)")
            #expect(s.connection == .ended)
        }
        // An outcome that does not fit its job (too few points) is not taken.
        var s = Self.session()
        _ = s.handle(.start, now: 0)
        let misfit = EvalOutcome(key: EvalKey(request: 1, job: 0, attempt: 0), outcome: AdaptationOutcome(returns: [1], final: nil))
        let actions = s.handle(.received(Self.frames(.evalOutcome(misfit))), now: 1)
        #expect(actions.contains { if case .failed(let r) = $0 { return r.contains("does not fit") } else { return false } })
        // A full coordinator refuses the request: wait, then try again.
        var full = Self.session()
        _ = full.handle(.start, now: 0)
        _ = full.handle(.received(Self.frames(.error(ErrorReply(code: .rejected, message: "64 requests held")))), now: 1)
        #expect(full.connection == .backingOff(until: 501))
        #expect(Self.submitted(full.handle(.tick, now: 501)) == [0, 1, 2])
        // A stop signal says goodbye.
        var stopped = Self.session()
        _ = stopped.handle(.start, now: 0)
        #expect(stopped.handle(.stop, now: 1).first == .send(.goodbye(reason: "eval client stopping")))
    }
}
