import Foundation
@testable import MetaLearning
import Testing

@Suite struct ProgressTests {
    @Test func linesSayHowFarAndHowLongLeftAndTheLastOneAlwaysComes() {
        let lines = Lines()
        let p = JobProgress(total: 4, label: "eval batch 1", interval: 3600, sink: { lines.add($0) })
        #expect(p.line(done: 1, now: p.start.addingTimeInterval(30)) == "eval batch 1: 1 of 4 jobs done (25%), 30s elapsed, ETA 1m30s")
        #expect(p.line(done: 4, now: p.start.addingTimeInterval(125)) == "eval batch 1: 4 of 4 jobs done (100%), 2m05s elapsed")
        for _ in 0..<3 { p.completed() }
        #expect(lines.all.isEmpty)               // within the interval: quiet
        p.completed()
        #expect(lines.all.count == 1 && lines.all[0].hasPrefix("eval batch 1: 4 of 4 jobs done (100%)"))
        #expect(formatDuration(3725) == "1h02m" && formatDuration(12.4) == "12s" && formatDuration(.nan) == "?")
    }

    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func add(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
        var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    }
}
