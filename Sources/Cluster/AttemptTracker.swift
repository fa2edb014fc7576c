import Foundation

/// The state of one batch of work handed out in attempts: which items are pending, running or done, how
/// often each was handed out, backed up and failed, and how long attempts took.
///
/// The Scheduler keeps one for the current iteration's training slots and one per eval request, so both kinds
/// of work follow the same rules: an item runs until some attempt delivers; a lost attempt makes it pending
/// again only if no other holder still runs it (holders live with the workers, so the caller says); a straggler —
/// running longer than `multiple` × the median attempt — gets one backup; the first result wins and later
/// ones are duplicates. Pure and value-typed, so the simulation and the transcript tests drive it directly.
struct AttemptTracker<Key: Hashable, Result> {
    enum Status {
        case pending
        case running
        case done(Result)
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
    let durationCap: Int

    init(_ keys: [Key], durationCap: Int = 256) {
        order = keys
        items = Dictionary(uniqueKeysWithValues: keys.map { ($0, Item()) })
        self.durationCap = durationCap
    }

    /// A fresh batch of items; the attempt times are kept (they describe the work, not the batch).
    mutating func restart(_ keys: [Key]) {
        order = keys
        items = Dictionary(uniqueKeysWithValues: keys.map { ($0, Item()) })
    }

    subscript(key: Key) -> Item? { items[key] }

    func isPending(_ key: Key) -> Bool { if case .pending? = items[key]?.status { return true } else { return false } }
    func isRunning(_ key: Key) -> Bool { if case .running? = items[key]?.status { return true } else { return false } }
    func isDone(_ key: Key) -> Bool { if case .done? = items[key]?.status { return true } else { return false } }

    /// Pending items in hand-out order.
    var pending: [Key] { order.filter(isPending) }
    /// Items not done yet.
    var remaining: Int { order.count - order.filter(isDone).count }
    /// Every item's result in order, once all are done; nil before.
    var results: [Result]? {
        var out: [Result] = []
        for key in order {
            guard case .done(let r)? = items[key]?.status else { return nil }
            out.append(r)
        }
        return out
    }

    /// The upper median of the attempt times; nil before any completed.
    var median: Tick? { durations.isEmpty ? nil : durations.sorted()[durations.count / 2] }

    /// Records a new attempt of `key` handed out at `now` and returns its number.
    mutating func start(_ key: Key, now: Tick) -> Int {
        var item = items[key]!
        let attempt = item.attempts
        item.attempts += 1
        item.status = .running
        if item.startedAt == nil { item.startedAt = now }
        items[key] = item
        return attempt
    }

    /// Records `key`'s result from an attempt that took `took` (nil: unknown); false when `key` is unknown or
    /// already done (the result is a duplicate and must be dropped).
    mutating func complete(_ key: Key, _ result: Result, took: Tick?) -> Bool {
        guard let item = items[key] else { return false }
        if case .done = item.status { return false }
        items[key]!.status = .done(result)
        if let took {
            durations.append(took)
            if durations.count > durationCap { durations.removeFirst(durations.count - durationCap) }
        }
        return true
    }

    /// An attempt of `key` was lost (timed out, refused, its worker gone): the item is pending again unless it
    /// is done or `stillHeld` (another attempt runs). True when it went back to pending.
    mutating func requeue(_ key: Key, stillHeld: Bool) -> Bool {
        guard isRunning(key), !stillHeld else { return false }
        items[key]!.status = .pending
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
    func stragglers(now: Tick, multiple: Double, minimumSamples: Int) -> [(key: Key, ranFor: Tick, median: Tick)] {
        guard durations.count >= minimumSamples, let median else { return [] }
        let limit = Tick(Double(max(median, 1)) * multiple)
        return order.compactMap { key in
            guard let item = items[key], case .running = item.status, item.backups == 0,
                  let started = item.startedAt, now - started > limit else { return nil }
            return (key, now - started, median)
        }
    }

    mutating func noteBackup(_ key: Key) { items[key]?.backups += 1 }
}
