/// Why an inbound message (or checkpoint payload) was refused. Decoding never crashes: it throws one of these.
public enum WireError: Error, Equatable, CustomStringConvertible {
    /// Not a protobuf message of the expected type at all.
    case undecodable(bytes: Int)
    case protocolVersion(got: UInt32, expected: UInt32)
    case missingField(String)
    case invalidField(String, reason: String)
    case unknownEnum(String, value: Int64)
    case tensorSize(String, shape: [UInt32], bytes: Int)
    case nonFinite(String, index: Int)
    case tooLarge(String, size: Int, limit: Int)

    public var description: String {
        switch self {
        case .undecodable(let n): return "could not decode a \(n)-byte message as metatrain.v1 protobuf"
        case let .protocolVersion(got, expected): return "protocol version \(got) is not supported (this build speaks \(expected))"
        case .missingField(let f): return "required field '\(f)' is missing"
        case let .invalidField(f, reason): return "field '\(f)' is invalid: \(reason)"
        case let .unknownEnum(f, v): return "field '\(f)' has unknown enum value \(v)"
        case let .tensorSize(f, shape, bytes):
            return "tensor '\(f)' declares shape \(shape) but carries \(bytes) bytes (need product(shape) × 4)"
        case let .nonFinite(f, i): return "tensor '\(f)' holds a NaN or infinity at index \(i)"
        case let .tooLarge(f, size, limit): return "field '\(f)' is too large (\(size) > \(limit))"
        }
    }
}

/// Bounds on what a peer can make us accept: every bound the decoder holds a message to, in one place. A message
/// beyond one is refused with the field and the limit named, before anything is allocated for it. (The bound on
/// update values, `maxUpdateMagnitude`, is checked on the decoded update by both ends.)
public struct WireLimits: Sendable, Equatable {
    /// Largest tensor, in float32 values (the default allows 64M parameters = 256 MiB).
    public var maxTensorValues = 64 * 1024 * 1024
    public var maxStringBytes = 4096
    public var maxHiddenLayers = 16
    public var maxThreads = 1024
    /// Largest inner-loop budget in env steps.
    public var maxBudget = 100_000_000
    /// Most jobs in one eval request.
    public var maxEvalJobs = 100_000
    /// Most scored points in one eval curve.
    public var maxEvalPoints = 100_000
    /// Slot indices (meta-batch) and attempt numbers a key may carry (iterations and eval request numbers stay
    /// below Int32.max).
    public var maxSlots = 1_000_000
    public var maxAttempts = 1_000_000
    /// Greedy episodes per scored point of an eval job.
    public var maxEpisodes = 10_000
    /// A status reply's JSON (one line per worker: room for thousands).
    public var maxStatusBytes = 4 * 1024 * 1024
    /// The heartbeat interval and liveness a welcome may ask a worker for.
    public var welcomeHeartbeatIntervalMs = 1...3_600_000
    public var welcomeLiveness = 1...1000
    /// The largest magnitude a slot update's value may have: an honest worker reports a larger one as diverged, and
    /// the coordinator refuses one it receives (a finite but absurd update would overflow θ).
    public static let maxUpdateMagnitude: Float = 1e6

    public init() {}
}
