import Foundation

/// A client's link to the coordinator — the worker's and the eval client's alike: where the connection stands,
/// liveness both ways, and the reconnect backoff.
///
/// Why one type: the two sessions kept this twice and had drifted (one doubled its backoff when it reconnected, the
/// other when it disconnected; issue 39). The rules, once: any message heard is a sign of life; silence for liveness ×
/// heartbeat means the coordinator is gone (Paranoid Pirate, ZeroMQ guide ch. 4); a lost link reconnects after the
/// backoff, which doubles at every reconnect scheduled, up to a maximum, and starts again at a welcome, which also
/// sets the heartbeat interval and liveness the coordinator asks for.
public struct ClientLink: Sendable, Equatable {
    public private(set) var connection = SessionConnection.idle
    public private(set) var heartbeatIntervalMs: Int
    public private(set) var liveness: Int
    /// The wait before the next reconnect.
    public private(set) var backoffMs: Int
    let initialBackoffMs: Int
    let maxBackoffMs: Int
    /// When the coordinator was last heard from, and when this side last sent.
    private(set) var lastHeard: Tick = 0
    private(set) var lastSent: Tick = 0

    public init(heartbeatIntervalMs: Int, liveness: Int, initialBackoffMs: Int, maxBackoffMs: Int) {
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.liveness = liveness
        self.initialBackoffMs = initialBackoffMs
        self.maxBackoffMs = maxBackoffMs
        backoffMs = initialBackoffMs
    }

    /// A new connection is up (the caller sends its hello or request on it).
    mutating func connected(_ now: Tick) {
        connection = .connected
        lastHeard = now
        lastSent = now
    }

    mutating func heard(_ now: Tick) { lastHeard = now }
    mutating func sent(_ now: Tick) { lastSent = now }

    /// A welcome: the coordinator's heartbeat interval and liveness, and the backoff starts again.
    mutating func welcomed(heartbeatIntervalMs: Int, liveness: Int) {
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.liveness = liveness
        backoffMs = initialBackoffMs
    }

    /// Whether a heartbeat is due: nothing sent for a heartbeat interval.
    func heartbeatDue(_ now: Tick) -> Bool { now - lastSent >= Tick(heartbeatIntervalMs) }

    /// How long the coordinator has been silent, when that is longer than liveness × heartbeat (it is gone); nil while
    /// it is alive.
    func silence(_ now: Tick) -> Tick? {
        let quiet = now - lastHeard
        return quiet > Tick(heartbeatIntervalMs) * Tick(liveness) ? quiet : nil
    }

    /// Drops the connection and schedules a reconnect after the current backoff, doubling it for the next time.
    mutating func backOff(_ now: Tick) {
        connection = .backingOff(until: now + Tick(backoffMs))
        backoffMs = min(backoffMs * 2, maxBackoffMs)
    }

    /// Whether a scheduled reconnect is due.
    func reconnectDue(_ now: Tick) -> Bool {
        if case .backingOff(let until) = connection { return now >= until }
        return false
    }

    /// No more connections.
    mutating func end() { connection = .ended }
}
