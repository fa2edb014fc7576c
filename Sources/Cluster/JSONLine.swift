import ClusterCore
import Foundation

/// A JSON value built from the `[String: Any]` records the coordinator keeps (metrics.jsonl's lines), so that
/// JSONEncoder can write them.
///
/// Why not JSONSerialization: with sorted keys it compares every pair of keys under a locale it creates for each
/// comparison; a metrics line's 35 keys made that a fifth of the coordinator's loop at θ 5k with 64 workers (perf,
/// docs/SCALING.md "status.json and metrics.jsonl"). JSONEncoder writes the same object with the keys sorted.
enum JSONLine: Encodable {
    case null, bool(Bool), int(Int), double(Double), string(String)
    case array([JSONLine]), object([String: JSONLine])

    /// What a value the coordinator records becomes: numbers, strings, booleans, arrays and objects of them, NSNull;
    /// a non-finite number becomes null so that the line stays valid JSON.
    struct Unsupported: Error, CustomStringConvertible {
        let key: String, type: String
        var description: String { "metrics value \(key) of type \(type) cannot be written as JSON" }
    }

    init(_ value: Any, key: String = "") throws {
        switch value {
        case is NSNull: self = .null
        case let b as Bool: self = .bool(b)
        case let i as Int: self = .int(i)
        case let i as UInt64: self = i <= UInt64(Int.max) ? .int(Int(i)) : .double(Double(i))
        case let d as Double: self = d.isFinite ? .double(d) : .null
        case let f as Float: self = f.isFinite ? .double(Double(f)) : .null
        case let s as String: self = .string(s)
        case let a as [Any]: self = .array(try a.map { try JSONLine($0, key: key) })
        case let o as [String: Any]:
            self = .object(try o.reduce(into: [:]) { out, entry in out[entry.key] = try JSONLine(entry.value, key: entry.key) })
        default: throw Unsupported(key: key, type: "\(Swift.type(of: value))")
        }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(b): try c.encode(b)
        case let .int(i): try c.encode(i)
        case let .double(d): try c.encode(d)
        case let .string(s): try c.encode(s)
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        }
    }

    /// One line of JSON, keys sorted.
    static func data(_ object: [String: Any]) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(JSONLine(object))
    }
}
