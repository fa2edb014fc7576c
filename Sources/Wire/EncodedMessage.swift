import Foundation

/// One encoded message in memory it owns (malloc'd, freed with the last reference), passed between threads and
/// handed to a socket without a copy.
///
/// Why: a result is θ-sized (4 MB at 1M floats); a worker's compute thread packs it here once, and the socket thread
/// sends these very bytes (`ZMQSocket.send(borrowing:count:owner:)` keeps this object alive until libzmq is done).
public final class EncodedMessage: @unchecked Sendable, Equatable, CustomStringConvertible {
    /// Bytes in the message.
    public private(set) var count: Int
    /// Bytes allocated at `start`.
    private let capacity: Int
    /// Their start; never written once the message is built (so any thread may read it).
    public let start: UnsafeMutablePointer<UInt8>

    /// Room for `capacity` bytes, which the caller fills and then counts (`setCount`) before sharing the message.
    init(capacity: Int) {
        self.capacity = max(capacity, 0)
        count = self.capacity
        start = malloc(max(capacity, 1))!.bindMemory(to: UInt8.self, capacity: max(capacity, 1))
    }

    /// The bytes the caller wrote, at most the capacity.
    func setCount(_ written: Int) { count = min(max(written, 0), capacity) }

    /// A copy of `bytes` (tests, and messages built as arrays).
    public convenience init(_ bytes: [UInt8]) {
        self.init(capacity: bytes.count)
        bytes.withUnsafeBufferPointer { if let base = $0.baseAddress { start.update(from: base, count: bytes.count) } }
    }

    deinit { free(start) }

    /// The bytes, copied into an array.
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: start, count: count)) }

    /// Reads the bytes in place.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: start, count: count))
    }

    /// The same bytes (two encodings of one message compare equal).
    public static func == (a: EncodedMessage, b: EncodedMessage) -> Bool {
        a === b || (a.count == b.count && memcmp(a.start, b.start, a.count) == 0)
    }

    public var description: String { "EncodedMessage(\(count) bytes)" }
}
