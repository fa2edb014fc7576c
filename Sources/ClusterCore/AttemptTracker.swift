import Foundation

/// The state of one batch of work handed out in attempts: which items are pending, running or done, how
/// often each was handed out, backed up and failed, and how long attempts took.
///
/// The Scheduler keeps one for the current iteration's training slots and one per eval request, so both kinds
/// of work follow the same rules: an item runs until some attempt delivers; a lost attempt makes it pending
/// again only if no other holder still runs it; a straggler — running longer than `multiple` × the median
/// attempt — gets one backup, on a worker that does not hold it; the first result wins and later ones are
/// duplicates. The tracker owns who holds each item (`holders(of:)`), so no caller scans the workers to find out.
/// Pure and value-typed, so the simulation and the transcript tests drive it directly.
struct AttemptTracker<Key: Hashable, Result, Holder: Hashable> {
    enum Status {
        case pending
        case running
        /// Delivered; the result is nil once taken (`takeResult`): the item stays done.
        case done(Result?)
    }

    struct Item {
        var status: Status = .pending
        /// Times handed out (backups included): the next attempt's number.
        var attempts = 0
        /// When the current run of attempts began: the first hand-out since the item was last pending.
        var startedAt: Tick?
        var backups = 0
        /// Attempts a worker reported failed.
        var failures = 0
        /// Attempts lost because their worker died while running them.
        var losses = 0
    }

    /// Items in hand-out order.
    private(set) var order: [Key]
    private(set) var items: [Key: Item]
    /// The latest completed attempts' times from hand-out to result, at most `durationCap` of them.
    private(set) var durations: [Tick] = []
    /// The same times, ascending (kept with every change: the median is asked for on most events).
    private var sortedDurations: [Tick] = []
    let durationCap: Int
    // Indexes kept with every change, so each event costs the coordinator time independent of the batch's size
    // (scanning every item on every message cost 441 µs per slot at meta-batch 4,096: issue 15).
    /// Each key's place in `order`.
    private var position: [Key: Int] = [:]
    /// Places of the pending items, ascending.
    private var pendingPositions: [Int] = []
    private(set) var runningKeys: Set<Key> = []
    private var doneCount = 0
    /// Who holds an attempt of each item, one entry per attempt held (a holder may hold two attempts of one item).
    private var holding: [Key: [Holder]] = [:]
    /// When each run of attempts began, oldest first, with entries left by items that have since been delivered,
    /// backed up or requeued (dropped when they come to the front): the straggler check is over at once while the
    /// oldest item that could straggle is younger than the limit. Valid while hand-outs come in time order
    /// (`startsInOrder`; the Scheduler's clock only moves forward), else every check scans the running items.
    private var starts: [(startedAt: Tick, key: Key)] = []
    private var startsFront = 0
    private var startsInOrder = true

    init(_ keys: [Key], durationCap: Int = SchedulerLimits.attemptTimesKept) {
        order = []
        items = [:]
        self.durationCap = durationCap
        restart(keys)
    }

    /// A fresh batch of items; the attempt times are kept (they describe the work, not the batch).
    mutating func restart(_ keys: [Key]) {
        order = keys
        items = Dictionary(uniqueKeysWithValues: keys.map { ($0, Item()) })
        position = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        pendingPositions = Array(keys.indices)
        runningKeys = []
        doneCount = 0
        holding = [:]
        starts = []
        startsFront = 0
        startsInOrder = true
    }

    subscript(key: Key) -> Item? { items[key] }

    func isPending(_ key: Key) -> Bool { if case .pending? = items[key]?.status { return true } else { return false } }
    func isRunning(_ key: Key) -> Bool { if case .running? = items[key]?.status { return true } else { return false } }
    func isDone(_ key: Key) -> Bool { if case .done? = items[key]?.status { return true } else { return false } }

    /// Pending items in hand-out order.
    var pending: [Key] { pendingPositions.map { order[$0] } }
    /// The first `count` pending items in hand-out order that `skip` does not name.
    func pending(first count: Int, skipping skip: Set<Key> = []) -> [Key] {
        var out: [Key] = []
        for place in pendingPositions where out.count < count {
            if !skip.contains(order[place]) { out.append(order[place]) }
        }
        return out
    }
    var hasPending: Bool { !pendingPositions.isEmpty }
    /// Items not done yet.
    var remaining: Int { order.count - doneCount }
    /// The result of `key` if it is done and still holds one, which it no longer does: the item stays done, so
    /// a later result for it is still a duplicate. Why: the Scheduler hands each slot's update on as soon as every
    /// slot before it is done, and keeps no copy.
    mutating func takeResult(_ key: Key) -> Result? {
        guard case .done(let r)? = items[key]?.status, let r else { return nil }
        items[key]!.status = .done(nil)
        return r
    }

    /// Moves `key` between the pending, running and done indexes as its status changes.
    private mutating func setStatus(_ key: Key, _ status: Status) {
        guard let place = position[key], let old = items[key]?.status else { return }
        switch old {
        case .pending:
            if let i = pendingIndex(place), pendingPositions[i] == place { pendingPositions.remove(at: i) }
        case .running: runningKeys.remove(key)
        case .done: doneCount -= 1
        }
        switch status {
        case .pending: pendingPositions.insert(place, at: pendingIndex(place) ?? pendingPositions.count)
        case .running: runningKeys.insert(key)
        case .done: doneCount += 1
        }
        items[key]!.status = status
    }

    /// The first index of `pendingPositions` whose place is ≥ `place` (nil: past the end).
    private func pendingIndex(_ place: Int) -> Int? {
        var low = 0, high = pendingPositions.count
        while low < high {
            let mid = (low + high) / 2
            if pendingPositions[mid] < place { low = mid + 1 } else { high = mid }
        }
        return low < pendingPositions.count ? low : nil
    }

    /// The upper median of the attempt times; nil before any completed.
    var median: Tick? { sortedDurations.isEmpty ? nil : sortedDurations[sortedDurations.count / 2] }

    /// The holders of attempts of `key` (one entry per attempt held).
    func holders(of key: Key) -> [Holder] { holding[key] ?? [] }

    /// Records a new attempt of `key` handed to `holder` at `now` and returns its number.
    mutating func start(_ key: Key, holder: Holder, now: Tick) -> Int {
        setStatus(key, .running)
        holding[key, default: []].append(holder)
        var item = items[key]!
        let attempt = item.attempts
        item.attempts += 1
        if item.startedAt == nil {
            item.startedAt = now
            if let last = starts.last, last.startedAt > now { startsInOrder = false }
            starts.append((now, key))
        }
        items[key] = item
        return attempt
    }

    /// Records `key`'s result from an attempt that took `took` (nil: unknown); false when `key` is unknown or
    /// already done (the result is a duplicate and must be dropped).
    mutating func complete(_ key: Key, _ result: Result, took: Tick?) -> Bool {
        guard let item = items[key] else { return false }
        if case .done = item.status { return false }
        setStatus(key, .done(result))
        if let took {
            durations.append(took)
            sortedDurations.insert(took, at: Self.firstIndex(in: sortedDurations, notBelow: took))
            if durations.count > durationCap {
                for old in durations.prefix(durations.count - durationCap) {
                    sortedDurations.remove(at: Self.firstIndex(in: sortedDurations, notBelow: old))
                }
                durations.removeFirst(durations.count - durationCap)
            }
        }
        return true
    }

    /// `holder` no longer holds its attempt of `key` (it delivered, failed, timed out or is gone); with `requeue`,
    /// the item is pending again unless it is done or another attempt of it is still held. True when it went back
    /// to pending. A holder that held no attempt of `key` changes nothing but the requeue.
    mutating func release(_ key: Key, holder: Holder, requeue: Bool) -> Bool {
        if var held = holding[key], let i = held.firstIndex(of: holder) {
            held.remove(at: i)
            holding[key] = held.isEmpty ? nil : held
        }
        return requeue && requeueIfUnheld(key)
    }

    /// Makes a running item that nobody holds pending again; true when it did.
    mutating func requeueIfUnheld(_ key: Key) -> Bool {
        guard isRunning(key), holding[key] == nil else { return false }
        setStatus(key, .pending)
        items[key]!.startedAt = nil
        return true
    }

    /// Counts a reported failure of `key` and returns its failures so far.
    mutating func fail(_ key: Key) -> Int {
        guard items[key] != nil else { return 0 }
        items[key]!.failures += 1
        return items[key]!.failures
    }

    /// Counts an attempt of `key` lost with its worker and returns the losses so far.
    mutating func lose(_ key: Key) -> Int {
        guard isRunning(key) else { return items[key]?.losses ?? 0 }
        items[key]!.losses += 1
        return items[key]!.losses
    }

    /// Running items without a backup that have run longer than `multiple` × the median attempt time, in order,
    /// with how long they have run and that median; none until `minimumSamples` attempts completed.
    ///
    /// While hand-outs come in time order, only the runs of attempts older than the limit are visited, and entries
    /// left by items since delivered, backed up or requeued are dropped as they are passed: an event costs the
    /// stragglers it finds, not the batch (issue 39: a straggler no idle worker could back up made every event at an
    /// iteration's tail scan and sort every running item).
    mutating func stragglers(now: Tick, multiple: Double, minimumSamples: Int) -> [(key: Key, ranFor: Tick, median: Tick)] {
        guard durations.count >= minimumSamples, let median else { return [] }
        let limit = Tick(Double(max(median, 1)) * multiple)
        func straggles(_ key: Key, startedAt: Tick?) -> Bool {
            guard let item = items[key], case .running = item.status, item.backups == 0, let started = item.startedAt else { return false }
            return startedAt == nil || started == startedAt
        }
        var found: [(key: Key, ranFor: Tick, median: Tick)] = []
        if startsInOrder {
            var kept: [(startedAt: Tick, key: Key)] = []
            var seen = Set<Key>()   // a run requeued and started again at the same tick left two entries
            var i = startsFront
            while i < starts.count, now - starts[i].startedAt > limit {
                let (startedAt, key) = starts[i]
                if straggles(key, startedAt: startedAt), seen.insert(key).inserted {
                    kept.append(starts[i])
                    found.append((key, now - startedAt, median))
                }
                i += 1
            }
            // The stragglers found move up to just before the first entry not visited, in their order; the entries
            // they replace are stale or themselves.
            startsFront = i - kept.count
            for (j, entry) in kept.enumerated() { starts[startsFront + j] = entry }
            if startsFront > 1024, startsFront * 2 > starts.count {
                starts.removeFirst(startsFront)
                startsFront = 0
            }
        } else {
            for key in runningKeys where straggles(key, startedAt: nil) {
                let ranFor = now - items[key]!.startedAt!
                if ranFor > limit { found.append((key, ranFor, median)) }
            }
        }
        return found.sorted { position[$0.key]! < position[$1.key]! }
    }

    mutating func noteBackup(_ key: Key) { items[key]?.backups += 1 }

    /// The first index of ascending `values` whose value is ≥ `value` (its count: none).
    static func firstIndex(in values: [Tick], notBelow value: Tick) -> Int {
        var low = 0, high = values.count
        while low < high {
            let mid = (low + high) / 2
            if values[mid] < value { low = mid + 1 } else { high = mid }
        }
        return low
    }
}
