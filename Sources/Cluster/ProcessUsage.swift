import ClusterCore
import Foundation

/// This process's CPU time (user + system) and peak resident set, from `getrusage`.
///
/// The coordinator stamps both into every metrics line; a worker can sample its CPU at every assignment and result
/// (`Worker.Options.recordsCPUTimeline`), so what it spent on the slots of the iterations `scripts/capacity.sh` times
/// can be told apart from its start-up and from the iterations before.
public struct ProcessUsage: Sendable {
    public var cpuSeconds: Double
    public var maxRSSKilobytes: Int

    public static func now() -> ProcessUsage {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
        return ProcessUsage(cpuSeconds: cpu, maxRSSKilobytes: usage.ru_maxrss)
    }

    /// Seconds on the system-wide monotonic clock (`CLOCK_MONOTONIC`), the same in every process of this machine.
    ///
    /// Why: the coordinator stamps each update with it and a worker each of its CPU samples, so that
    /// `scripts/capacity.sh` can take the workers' CPU over exactly the iterations it times.
    public static func monotonicSeconds() -> Double {
        var time = timespec()
        guard clock_gettime(CLOCK_MONOTONIC, &time) == 0 else { return 0 }
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// The CPU time (user + system) of the calling thread alone.
    ///
    /// Why: the coordinator's process time is its loop thread's and libzmq's I/O thread's together, and the two run in
    /// parallel on two cores; the scaling model queues them apart, so metrics.jsonl carries the loop's own share.
    public static func threadCPUSeconds() -> Double {
        var time = timespec()
        guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time) == 0 else { return 0 }
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }
}
