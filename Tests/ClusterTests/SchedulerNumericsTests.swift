import Cluster
import MetaLearning
import Testing
import Wire

/// The numerics policy at hello, scripted: who is welcomed, who is refused and why.
@Suite struct SchedulerNumericsTests {
    let settings = SchedulerSettings(runID: "run-1", iterations: 2, metaBatch: 2, heartbeatIntervalMs: 100,
                                     liveness: 3, checkpointInterval: 1)
    let a = Peer([1]), b = Peer([2]), c = Peer([3])

    /// A worker whose default kernel is `kernel` (fingerprint `own`) and whose portable fingerprint is `portable`.
    func hello(_ kernel: String, _ own: String, portable: String = "aaaaaaaaaaaaaaaa") -> Hello {
        Hello(host: "h-\(kernel)", cores: 1, threads: 1, numerics: NumericsReport(
            kernel: kernel, fingerprint: own, portableKernel: "sse2", portableFingerprint: portable, cpu: "cpu-\(kernel)"))
    }

    func reply(_ commands: [SchedulerCommand<Int>], to peer: Peer) -> Outbound? {
        commands.compactMap { if case let .send(p, o) = $0, p == peer { return o } else { return nil } }.first
    }

    func refusal(_ commands: [SchedulerCommand<Int>], to peer: Peer) -> String? {
        if case .error(let e)? = reply(commands, to: peer), e.code == .numericsMismatch { return e.message }
        return nil
    }

    @Test func strictTakesTheFirstWorkersFingerprintAndRefusesOthers() throws {
        var s = try Scheduler<Int>(settings: settings, numerics: RunNumerics(policy: .strict))
        let first = s.handle(.hello(a, hello("avx512-fma", "1111111111111111")), now: 0)
        guard case .welcome? = reply(first, to: a) else { Issue.record("first worker not welcomed"); return }
        #expect(s.numerics.fingerprint == "1111111111111111" && s.numerics.kernel == "avx512-fma")
        let same = s.handle(.hello(b, hello("avx2-fma", "1111111111111111")), now: 1)
        guard case .welcome? = reply(same, to: b) else { Issue.record("a worker with the same bits was refused"); return }
        let other = s.handle(.hello(c, hello("sse2", "2222222222222222")), now: 2)
        let reason = try #require(refusal(other, to: c))
        #expect(reason.contains("2222222222222222") && reason.contains("1111111111111111"))
        #expect(reason.contains("kernel sse2") && reason.contains("kernel avx512-fma") && reason.contains("portable"))
        #expect(s.workerCount == 2, "the refused worker was not registered")
        // It gets no slots: every assignment went to a or b.
        #expect(!other.contains { if case let .send(p, .assign) = $0 { return p == c } else { return false } })
    }

    @Test func aCheckpointsFingerprintBindsFromTheStart() throws {
        let saved = RunNumerics(policy: .strict, fingerprint: "3333333333333333", kernel: "avx2-fma", cpu: "old")
        var s = try Scheduler<Int>(settings: settings, numerics: saved)
        #expect(refusal(s.handle(.hello(a, hello("avx512-fma", "1111111111111111")), now: 0), to: a) != nil)
        guard case .welcome? = reply(s.handle(.hello(b, hello("avx2-fma", "3333333333333333")), now: 1), to: b) else {
            Issue.record("the checkpoint's fingerprint was not accepted"); return
        }
    }

    @Test func portableComparesPortableFingerprints() throws {
        var s = try Scheduler<Int>(settings: settings, numerics: RunNumerics(policy: .portable))
        // Different default kernels, the same portable bits: both in.
        _ = s.handle(.hello(a, hello("avx512-fma", "1111111111111111", portable: "5555555555555555")), now: 0)
        guard case .welcome? = reply(s.handle(.hello(b, hello("sse2", "2222222222222222", portable: "5555555555555555")), now: 1), to: b) else {
            Issue.record("portable refused equal portable fingerprints"); return
        }
        #expect(s.numerics.fingerprint == "5555555555555555")
        // Portable bits that differ (e.g. another libm): refused even under portable.
        #expect(refusal(s.handle(.hello(c, hello("avx2-fma", "1111111111111111", portable: "6666666666666666")), now: 2), to: c) != nil)
    }

    @Test func anyWelcomesEveryoneAndSaysSo() throws {
        var s = try Scheduler<Int>(settings: settings, numerics: RunNumerics(policy: .any))
        _ = s.handle(.hello(a, hello("avx512-fma", "1111111111111111")), now: 0)
        let out = s.handle(.hello(b, hello("sse2", "2222222222222222")), now: 1)
        guard case .welcome? = reply(out, to: b) else { Issue.record("any refused a worker"); return }
        #expect(out.contains { if case let .log(.warning, m) = $0 { return m.contains("not bit-reproducible") } else { return false } })
        #expect(!s.numerics.isReproducible)
    }
}
