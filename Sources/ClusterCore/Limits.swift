import Foundation
import Wire

/// The bounds the scheduler holds its peers to, in one place: how many bad messages or missed deadlines a worker
/// gets, how many eval requests the coordinator keeps. Why here and not inline: each is a decision about what one
/// peer may cost the run, and they are reviewed (and tested) together. The wire's own bounds (sizes, counts, value
/// ranges a decoder accepts) are `WireLimits`; the process shells' are `ClusterLimits`.
public struct SchedulerLimits: Sendable, Equatable {
    /// Bad messages a registered worker may send before it is disconnected.
    public var maxStrikes = 5
    /// Outstanding eval requests accepted in all, and per client connection: the coordinator keeps each
    /// request's jobs in memory, so no peer may make it hold more than this many.
    public var maxEvalRequests = 64
    public var maxEvalRequestsPerClient = 4
    /// Deadlines a worker may miss in a row, without delivering anything in between, before it is disconnected.
    public var maxTimeouts = 3
    /// Failures (or deaths of its holders) after which an eval job is given up and its request abandoned, the client
    /// told why: a job that fails everywhere fails deterministically.
    public var evalGiveUpAttempts = 5
    /// Completed attempt times each tracker keeps for its median (the deadline and the straggler rule).
    public static let attemptTimesKept = 256

    public init() {}
}

/// The bounds the process shells (coordinator, worker, eval client) hold: what any socket accepts, what an eval
/// job may ask of a worker, how much error text a worker sends back.
public enum ClusterLimits {
    /// Largest ZeroMQ message a socket accepts (`ZMQ_MAXMSGSIZE`) unless configured: θ of 64M float32 values.
    public static let maxMessageBytes = WireLimits().maxTensorValues * MemoryLayout<Float>.size
    /// The largest replay batch an eval job may ask a worker to sample (its buffer is capped by the run's, or the
    /// job's budget): a client must not make a worker allocate without bound.
    public static let maxEvalBatchSize = 4096
    /// Error text a worker sends back, in UTF-8 bytes (well under the wire's string limit).
    public static let maxErrorTextBytes = 1000
    /// Messages the coordinator handles from its socket before it looks at the clock again (ticks, divergence checks):
    /// a flood of messages cannot starve liveness.
    public static let maxMessagesPerPoll = 10_000
    /// Messages queued per peer for sending before libzmq drops (ROUTER) or blocks: θ frames are shared, so this bounds
    /// the headers, not copies of θ.
    public static let sendHighWaterMark: Int32 = 1000
    /// A worker's reconnect backoff (doubling from the first to the most) and an eval client's.
    public static let workerBackoffMs = (first: 1000, most: 32_000)
    public static let evalClientBackoffMs = (first: 1000, most: 16_000)

    /// `text` cut to `maxErrorTextBytes` (a longer one would be refused as malformed), marked when cut.
    public static func errorText(_ text: String) -> String {
        guard text.utf8.count > maxErrorTextBytes else { return text }
        let mark = "… (cut)"
        return String(decoding: text.utf8.prefix(maxErrorTextBytes - mark.utf8.count - 3), as: UTF8.self) + mark
    }
}
