@testable import Cluster
@testable import ClusterCore
import NeuralNet
import Testing

/// The one tracker both kinds of work (training slots, eval jobs) go through.
@Suite struct AttemptTrackerTests {
    /// The indexes that keep an event's cost independent of the batch (issue 15) always say what a scan of every
    /// item would: random starts, completions, requeues and restarts, checked after each step — with a clock that
    /// only moves forward (the straggler check's early exit) and with one that sometimes steps back (its fallback).
    @Test(arguments: [false, true]) func theIndexesAgreeWithAScanOfEveryItem(clockStepsBack: Bool) {
        var rng = SeededRNG(seed: 17)
        var t = AttemptTracker<Int, Int, Int>(Array((0..<40).reversed()), durationCap: 64)
        var now: Tick = 1_000
        for step in 0..<4_000 {
            now += Tick(rng.nextInt(below: 30)) - (clockStepsBack && rng.nextInt(below: 20) == 0 ? 200 : 0)
            let key = t.order[rng.nextInt(below: t.order.count)]
            switch rng.nextInt(below: 10) {
            case 0...3: if !t.isDone(key) { _ = t.start(key, holder: rng.nextInt(below: 3), now: now) }
            case 4...5: _ = t.complete(key, step, took: Tick(rng.nextInt(below: 100)))
            case 6...7: _ = t.release(key, holder: rng.nextInt(below: 3), requeue: true)
            case 8: if t.isRunning(key) { t.noteBackup(key) }
            default: if rng.nextInt(below: 50) == 0 { t.restart((0..<(1 + rng.nextInt(below: 60))).map { ($0 * 7) % 61 }) }
            }
            #expect(t.pending == t.order.filter(t.isPending), "step \(step)")
            #expect(t.pending.allSatisfy { t.holders(of: $0).isEmpty }, "a pending item is held by nobody")
            #expect(t.remaining == t.order.filter { !t.isDone($0) }.count)
            #expect(t.hasPending == !t.pending.isEmpty)
            #expect(t.pending(first: 3, skipping: [key]) == Array(t.order.filter { t.isPending($0) && $0 != key }.prefix(3)))
            #expect(t.median == (t.durations.isEmpty ? nil : t.durations.sorted()[t.durations.count / 2]) && t.durations.count <= 64)
            let scanned = t.order.filter { k in
                guard let item = t[k], t.isRunning(k), item.backups == 0, let started = item.startedAt,
                      let median = t.median, t.durations.count >= 2 else { return false }
                return now - started > Tick(Double(max(median, 1)) * 2)
            }
            #expect(t.stragglers(now: now, multiple: 2, minimumSamples: 2).map(\.key) == scanned, "step \(step)")
        }
    }

    @Test func attemptsResultsDuplicatesAndRequeues() {
        var t = AttemptTracker<Int, String, Int>([2, 0, 1])
        #expect(t.pending == [2, 0, 1] && t.remaining == 3 && t.takeResult(2) == nil && t.median == nil)
        let first = t.start(0, holder: 7, now: 10), backup = t.start(0, holder: 8, now: 15)
        #expect(first == 0 && backup == 1)                               // a backup is attempt 1
        #expect(t.isRunning(0) && t[0]?.startedAt == 10 && t.pending == [2, 1] && t.holders(of: 0) == [7, 8])
        // A lost attempt while another still runs the item changes nothing; the last one lost makes it pending.
        let stranger = t.release(0, holder: 9, requeue: true)
        #expect(!stranger && t.holders(of: 0) == [7, 8])                  // one who holds nothing releases nothing
        let held = t.release(0, holder: 7, requeue: true)
        #expect(!held && t.isRunning(0) && t.holders(of: 0) == [8])
        let lost = t.release(0, holder: 8, requeue: true)
        #expect(lost && t.isPending(0) && t[0]?.startedAt == nil && t.pending == [2, 0, 1] && t.holders(of: 0).isEmpty)
        let again = t.requeueIfUnheld(0)
        #expect(!again)                                                  // only a running item goes back
        let third = t.start(0, holder: 7, now: 40)
        #expect(third == 2 && t[0]?.startedAt == 40)
        let applied = t.complete(0, "zero", took: 7), duplicate = t.complete(0, "again", took: 1), unknown = t.complete(9, "x", took: 1)
        #expect(applied && !duplicate && !unknown)
        #expect(t.durations == [7] && t.median == 7 && t.remaining == 2)
        for k in [2, 1] { _ = t.start(k, holder: 7, now: 50); let done = t.complete(k, "\(k)", took: nil); #expect(done) }
        #expect(t.order.map { t.takeResult($0) } == ["2", "zero", "1"])  // in hand-out order
        #expect(t.takeResult(0) == nil)                                  // taken once; the item stays done
        #expect(t.isDone(0) && t.remaining == 0)
        let late = t.complete(0, "late", took: nil)
        #expect(!late)                                                   // a later result is still a duplicate
        t.restart([0, 1])
        #expect(t.pending == [0, 1] && t.durations == [7])              // attempt times outlive the batch
    }

    @Test func stragglersNeedSamplesAndGetOneBackup() {
        var t = AttemptTracker<Int, Void, Int>(Array(0..<4), durationCap: 3)
        for k in 0..<4 { _ = t.start(k, holder: k, now: 0) }
        #expect(t.stragglers(now: 1_000, multiple: 2, minimumSamples: 1).isEmpty)   // no median yet
        for (k, took) in [(0, 10), (1, 20)] { let done = t.complete(k, (), took: Tick(took)); #expect(done) }
        // Median (upper) 20, so running longer than 40 straggles: both remaining items at now = 41.
        #expect(t.stragglers(now: 40, multiple: 2, minimumSamples: 2).isEmpty)
        let late = t.stragglers(now: 41, multiple: 2, minimumSamples: 2)
        #expect(late.map(\.key) == [2, 3] && late.allSatisfy { $0.ranFor == 41 && $0.median == 20 })
        #expect(t.stragglers(now: 41, multiple: 2, minimumSamples: 3).isEmpty)
        t.noteBackup(2)
        #expect(t.stragglers(now: 500, multiple: 2, minimumSamples: 2).map(\.key) == [3])
        let failures = [t.fail(3), t.fail(3)], losses = [t.lose(3), t.lose(0)]
        #expect(failures == [1, 2] && losses == [1, 0])                  // a done item loses nothing
        for took in [30, 40, 50] { t.restart([0]); _ = t.start(0, holder: 0, now: 0); let done = t.complete(0, (), took: Tick(took)); #expect(done) }
        #expect(t.durations == [30, 40, 50])                             // capped at the newest 3
    }
}
