import Cluster
import MetaLearning
import Testing
import Wire

/// A gymnasium run holds workers to the run's environment servers as to its kernels; other runs ignore them.
@Suite struct SchedulerEnvironmentNumericsTests {
    let a = Peer([1]), b = Peer([2]), c = Peer([3])

    func settings(gymnasium: Bool) -> SchedulerSettings {
        var s = SchedulerSettings(runID: "run-1", iterations: 2, metaBatch: 2, heartbeatIntervalMs: 100, liveness: 3, checkpointInterval: 1)
        s.holdsEnvironment = gymnasium
        return s
    }

    func hello(_ environment: String) -> Hello {
        Hello(host: "h", cores: 1, threads: 1, numerics: NumericsReport(
            kernel: "avx2-fma", fingerprint: "1111111111111111", portableKernel: "avx", portableFingerprint: "2222222222222222",
            cpu: "cpu", environment: environment))
    }

    func refusal(_ commands: [SchedulerCommand<Int>], to peer: Peer) -> String? {
        for case let .send(p, .error(e)) in commands where p == peer && e.code == .numericsMismatch { return e.message }
        return nil
    }

    static let ours = "00000000000000aa (python 3.11.7, gymnasium 1.4.0, numpy 2.4.6)"
    static let theirs = "00000000000000bb (python 3.12.1, gymnasium 1.2.2, numpy 2.4.6)"

    @Test func strictAndPortableRefuseAnotherEnvironmentInAGymnasiumRun() throws {
        for policy in [NumericsPolicy.strict, .portable] {
            var s = try Scheduler<Int>(settings: settings(gymnasium: true), numerics: RunNumerics(policy: policy))
            #expect(refusal(s.handle(.hello(a, hello(Self.ours)), now: 0), to: a) == nil)
            #expect(s.numerics.fingerprint?.hasSuffix("+env \(Self.ours)") == true)
            #expect(refusal(s.handle(.hello(b, hello(Self.ours)), now: 1), to: b) == nil)
            let reason = try #require(refusal(s.handle(.hello(c, hello(Self.theirs)), now: 2), to: c))
            #expect(reason.contains("gymnasium 1.2.2") && reason.contains("gymnasium 1.4.0") && reason.contains("environment servers differ"))
            // A worker that has no environment servers at all is refused too.
            #expect(refusal(s.handle(.hello(Peer([4]), hello("none")), now: 3), to: Peer([4])) != nil)
            #expect(s.workerCount == 2)
        }
    }

    @Test func anyAcceptsAndOtherRunsIgnoreTheEnvironment() throws {
        var any = try Scheduler<Int>(settings: settings(gymnasium: true), numerics: RunNumerics(policy: .any))
        _ = any.handle(.hello(a, hello(Self.ours)), now: 0)
        #expect(refusal(any.handle(.hello(b, hello(Self.theirs)), now: 1), to: b) == nil)
        var builtin = try Scheduler<Int>(settings: settings(gymnasium: false), numerics: RunNumerics(policy: .strict))
        _ = builtin.handle(.hello(a, hello(Self.ours)), now: 0)
        #expect(refusal(builtin.handle(.hello(b, hello("none")), now: 1), to: b) == nil)
        #expect(builtin.numerics.fingerprint == "1111111111111111")
    }
}
