import MetaLearning
import Wire

/// Hellos in these tests carry one fixed numerics report (all workers "compute alike"); the numerics
/// policy itself is tested with real kernels in NumericsProcessTests and SchedulerTests.
extension NumericsReport {
    static let fixture = NumericsReport(kernel: "avx2-fma", fingerprint: "0123456789abcdef", portableKernel: "avx",
                                        portableFingerprint: "fedcba9876543210", cpu: "test CPU")
}

extension Hello {
    init(host: String, cores: Int, threads: Int, previousWorkerID: String = "") {
        self.init(host: host, cores: cores, threads: threads, previousWorkerID: previousWorkerID, numerics: .fixture)
    }
}
