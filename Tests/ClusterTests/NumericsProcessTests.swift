import Cluster
import Foundation
import MetaLearning
import NeuralNet
import Testing

/// `numerics: strict | portable | any` with real processes whose kernels are forced apart by METATRAIN_KERNEL:
/// one worker on this CPU's best kernel (fused multiply-add), one on sse2 (separate multiply and add), which
/// round differently, so their numerics fingerprints differ.
@Suite(.serialized) struct NumericsProcessTests {
    static let fused = ["METATRAIN_KERNEL": "best"]
    static let plain = ["METATRAIN_KERNEL": "sse2"]

    static func config(_ policy: String) -> String { Harness.configText + "\nnumerics: \(policy)\n" }

    /// The two kernels must really differ here, or the tests below would prove nothing.
    static var kernelsDiffer: Bool { GEMMBackend.best.arithmetic == .fma }

    @Test func strictRefusesAWorkerWithAnotherFingerprint() throws {
        try #require(Self.kernelsDiffer, "this CPU has no FMA kernel: cannot force two fingerprints apart")
        let folder = Harness.folder("numerics-strict")
        let config = Harness.writeConfig(folder, Self.config("strict"))
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        // Paced, so the run outlasts the second worker's start-up (its numerics check, then its hello) on any machine.
        let first = try Harness.worker(folder, endpoint: endpoint, index: 0, extra: ["--slowdown", "4"], environment: Self.fused)
        #expect(Harness.waitFor(seconds: 60) { coordinator.output.contains("set by the first worker") })
        let second = try Harness.worker(folder, endpoint: endpoint, index: 1, environment: Self.plain)
        // Refused at hello, for good: it exits with status 3 and says why, naming both fingerprints.
        #expect(second.wait(seconds: 60) == 3, "\(second.output.suffix(2000))")
        #expect(second.output.contains("refused this worker") && second.output.contains("kernel sse2"))
        #expect(coordinator.output.contains("refused a worker"))
        #expect(coordinator.wait(seconds: 120) == 0, "\(coordinator.output.suffix(2000))")
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA, "the run went on with the first worker alone")
        let inspected = try Harness.inspect(folder)
        #expect(inspected["numerics_policy"] as? String == "strict")
        #expect(inspected["numerics_kernel"] as? String == GEMMBackend.best.rawValue)
        #expect(inspected["reproducible"] as? Bool == true)
        first.wait(seconds: 10)
    }

    @Test func portableGivesOneWorkersThetaOnMixedKernels() throws {
        try #require(Self.kernelsDiffer, "this CPU has no FMA kernel: cannot force two fingerprints apart")
        let folder = Harness.folder("numerics-portable")
        let text = Self.config("portable")
        let config = Harness.writeConfig(folder, text)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        // Best kernel's worker computes on the widest mul-add kernel (avx512 or avx), the other on sse2.
        let workers = [try Harness.worker(folder, endpoint: endpoint, index: 0, environment: Self.fused),
                       try Harness.worker(folder, endpoint: endpoint, index: 1, environment: Self.plain)]
        #expect(coordinator.wait(seconds: 120) == 0, "\(coordinator.output.suffix(2000))")
        #expect(!coordinator.output.contains("refused"), "\(coordinator.output.suffix(2000))")
        for w in workers { #expect(w.wait(seconds: 10) == 0, "\(w.output.suffix(1000))") }
        #expect(workers[1].output.contains("computing on kernel sse2"))
        // Both workers were in the run, and θ is what one process computes serially on a portable kernel.
        #expect(Harness.metrics(folder).contains { $0["workers"] as? Int == 2 })
        let portableReference = GEMMBackend.$current.withValue(.portable) { Harness.reference(text) }
        #expect(try Harness.finalSHA(folder) == portableReference)
        #expect(portableReference != Harness.referenceSHA, "the portable kernel rounds unlike the fused one")
        let inspected = try Harness.inspect(folder)
        #expect(inspected["numerics_policy"] as? String == "portable")
        #expect(inspected["reproducible"] as? Bool == true)
    }

    @Test func anyAcceptsEveryWorkerAndMarksTheRun() throws {
        try #require(Self.kernelsDiffer, "this CPU has no FMA kernel: cannot force two fingerprints apart")
        let folder = Harness.folder("numerics-any")
        let config = Harness.writeConfig(folder, Self.config("any"))
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        // Paced, so the run outlasts the second worker's start-up (its numerics check, then its hello) on any machine.
        let first = try Harness.worker(folder, endpoint: endpoint, index: 0, extra: ["--slowdown", "4"], environment: Self.fused)
        #expect(Harness.waitFor(seconds: 60) { coordinator.output.contains("set by the first worker") })
        let second = try Harness.worker(folder, endpoint: endpoint, index: 1, environment: Self.plain)
        #expect(coordinator.wait(seconds: 120) == 0, "\(coordinator.output.suffix(2000))")
        #expect(coordinator.output.contains("computes other bits"), "the difference is logged")
        #expect(coordinator.output.contains("not bit-reproducible"))
        for w in [first, second] { #expect(w.wait(seconds: 10) == 0, "\(w.output.suffix(1000))") }
        let inspected = try Harness.inspect(folder)
        #expect(inspected["numerics_policy"] as? String == "any")
        #expect(inspected["reproducible"] as? Bool == false)
        let text = try Harness.Child(["checkpoint", "inspect", folder], log: folder + "/inspect-text.log")
        text.wait(seconds: 30)
        #expect(text.output.contains("NOT REPRODUCIBLE"))
    }

    @Test func strictResumeRefusesAnotherFingerprintUnlessForced() throws {
        try #require(Self.kernelsDiffer, "this CPU has no FMA kernel: cannot force two fingerprints apart")
        let folder = Harness.folder("numerics-resume")
        let config = Harness.writeConfig(folder, Self.config("strict"))
        let (first, endpoint) = try Harness.startCoordinator(folder, config: config)
        let plainWorker = try Harness.worker(folder, endpoint: endpoint, index: 0, environment: Self.plain)
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 3 })
        first.signal(SIGINT)   // final checkpoint, then goodbye to the worker
        #expect(first.wait(seconds: 30) == 0, "\(first.output.suffix(2000))")
        plainWorker.wait(seconds: 10)
        let saved = try Harness.inspect(folder)
        #expect(saved["numerics_kernel"] as? String == "sse2")

        // Resumed, the run holds workers to the checkpoint's fingerprint: the best-kernel worker is refused.
        let second = try Harness.coordinator(folder, config: config, extra: ["--resume", folder, "--bind", endpoint])
        #expect(Harness.waitFor(seconds: 20) { second.output.contains("holding workers to the checkpoint's numerics") })
        let refused = try Harness.worker(folder, endpoint: endpoint, index: 1, environment: Self.fused)
        #expect(refused.wait(seconds: 60) == 3, "\(refused.output.suffix(2000))")
        #expect(refused.output.contains("kernel sse2"), "the reason names the run's kernel")
        second.signal(SIGINT)
        #expect(second.wait(seconds: 30) == 0)

        // --force-numerics: the first worker sets the fingerprint anew and the run finishes.
        let third = try Harness.coordinator(folder, config: config, extra: ["--resume", folder, "--bind", endpoint, "--force-numerics"])
        let accepted = try Harness.worker(folder, endpoint: endpoint, index: 2, environment: Self.fused)
        #expect(third.wait(seconds: 120) == 0, "\(third.output.suffix(2000))")
        #expect(third.output.contains("--force-numerics"))
        #expect(accepted.wait(seconds: 10) == 0)
        let final = try Harness.inspect(folder)
        #expect(final["iteration"] as? Int == 10)
        #expect(final["numerics_kernel"] as? String == GEMMBackend.best.rawValue)
    }
}
