import MetaLearning
import Wire

/// Hellos built in these tests carry this process's real numerics report: a hand-made peer (the rogue and fuzz
/// tests) must be admitted next to real workers of the same machine under `numerics: strict`. The policy itself
/// is tested in NumericsProcessTests (real kernels) and SchedulerTests (made-up fingerprints).
extension NumericsReport {
    static let fixture: NumericsReport = {
        do { return try NumericsReport.measure() } catch { fatalError("numerics fingerprint workload failed: \(error)") }
    }()
}

extension Hello {
    init(host: String, cores: Int, threads: Int, previousWorkerID: String = "") {
        self.init(host: host, cores: cores, threads: threads, previousWorkerID: previousWorkerID, numerics: .fixture)
    }
}
