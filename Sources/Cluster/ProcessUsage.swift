import Foundation

/// This process's CPU time (user + system) and peak resident set, from `getrusage`.
///
/// The coordinator stamps both into every metrics line; a worker reads its CPU at its first assignment and at its
/// exit, so what it spent on slots can be told apart from what it spent starting up (`scripts/capacity.sh`).
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
}
