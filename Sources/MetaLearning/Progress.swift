import Foundation

/// Reports how far a batch of jobs has come: "k of n jobs done (p%), elapsed, ETA", at most every `interval`
/// seconds and once at the end, through `sink` (the command line writes it to stderr).
///
/// A long evaluation (thousands of adaptation jobs) otherwise prints nothing for many minutes. Thread-safe: the
/// local runner's threads and the cluster runner's socket loop both count completions here. The ETA assumes the
/// remaining jobs take as long as the finished ones did on average.
public final class JobProgress: @unchecked Sendable {
    let total: Int
    let label: String
    let interval: Double
    let sink: @Sendable (String) -> Void
    let start = Date()
    private let lock = NSLock()
    private var done = 0
    private var lastReport = Date()

    public init(total: Int, label: String, interval: Double = 10, sink: @escaping @Sendable (String) -> Void) {
        self.total = total; self.label = label; self.interval = interval; self.sink = sink
    }

    /// Counts `count` more finished jobs and reports if the interval has passed (or all are done).
    public func completed(_ count: Int = 1) {
        lock.lock()
        done = min(done + count, total)
        let now = Date()
        let due = done == total || now.timeIntervalSince(lastReport) >= interval
        if due { lastReport = now }
        let snapshot = done
        lock.unlock()
        if due { sink(line(done: snapshot, now: now)) }
    }

    /// The progress line for `done` finished jobs at `now`.
    func line(done: Int, now: Date) -> String {
        let elapsed = now.timeIntervalSince(start)
        let percent = total == 0 ? 100 : done * 100 / total
        var text = "\(label): \(done) of \(total) jobs done (\(percent)%), \(formatDuration(elapsed)) elapsed"
        if done > 0 && done < total { text += ", ETA \(formatDuration(elapsed / Double(done) * Double(total - done)))" }
        return text
    }
}

/// 3725 s → "1h02m", 185 s → "3m05s", 12.4 s → "12s".
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, s % 3600 / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
