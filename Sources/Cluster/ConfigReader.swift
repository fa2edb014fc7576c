import ClusterCore
import Yams

/// A configuration error that names the key and the line, so the user can fix the file.
public enum ConfigError: Error, Equatable, CustomStringConvertible {
    case syntax(String)
    case unknownKey(path: String, line: Int, known: [String])
    case invalidValue(path: String, line: Int, reason: String)
    case missingKey(path: String, line: Int)
    case io(String)

    public var description: String {
        switch self {
        case .syntax(let m): return "cluster config: YAML syntax error: \(m)"
        case let .unknownKey(path, line, known):
            return "cluster config line \(line): unknown key '\(path)' (known here: \(known.joined(separator: ", ")))"
        case let .invalidValue(path, line, reason): return "cluster config line \(line): '\(path)' \(reason)"
        case let .missingKey(path, line): return "cluster config line \(line): required key '\(path)' is missing"
        case .io(let m): return "cluster config: \(m)"
        }
    }
}

/// Reads one YAML mapping, tracking which keys were used so unknown ones are reported with their line.
final class MappingReader {
    let path: String
    let line: Int
    private var entries: [(key: String, value: Node, line: Int)] = []
    private var used: Set<String> = []
    private var known: [String] = []

    init(_ node: Node?, path: String) throws {
        self.path = path
        line = node?.mark?.line ?? 1
        guard let node else { return }
        guard let mapping = node.mapping else {
            throw ConfigError.invalidValue(path: path.isEmpty ? "(top level)" : path, line: line, reason: "must be a mapping of keys to values")
        }
        for (k, v) in mapping {
            guard let key = k.scalar?.string else {
                throw ConfigError.invalidValue(path: path, line: k.mark?.line ?? line, reason: "has a key that is not a string")
            }
            entries.append((key, v, k.mark?.line ?? line))
        }
    }

    private func full(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The raw node under `key`, marking it known and used.
    func node(_ key: String) -> (Node, Int)? {
        known.append(key)
        guard let e = entries.first(where: { $0.key == key }) else { return nil }
        used.insert(key)
        return (e.value, e.line)
    }

    func mapping(_ key: String) throws -> MappingReader { try MappingReader(node(key)?.0, path: full(key)) }

    func bad(_ key: String, _ line: Int, _ reason: String) -> ConfigError {
        .invalidValue(path: full(key), line: line, reason: reason)
    }

    func string(_ key: String, _ fallback: String) throws -> String {
        guard let (n, l) = node(key) else { return fallback }
        guard let s = n.scalar?.string else { throw bad(key, l, "must be a string") }
        return s
    }

    func int(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
        guard let (n, l) = node(key) else { return fallback }
        guard let v = n.int else { throw bad(key, l, "must be an integer, got '\(n.scalar?.string ?? "a non-scalar")'") }
        guard range.contains(v) else { throw bad(key, l, "is \(v); it must be in \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    func uint64(_ key: String, _ fallback: UInt64) throws -> UInt64 {
        guard let (n, l) = node(key) else { return fallback }
        guard let s = n.scalar?.string, let v = UInt64(s) else { throw bad(key, l, "must be a non-negative integer") }
        return v
    }

    func double(_ key: String, _ fallback: Double, _ check: (Double) -> Bool, _ requirement: String) throws -> Double {
        guard let (n, l) = node(key) else { return fallback }
        guard let v = n.float, v.isFinite else { throw bad(key, l, "must be a finite number, got '\(n.scalar?.string ?? "a non-scalar")'") }
        guard check(v) else { throw bad(key, l, "is \(v); it must be \(requirement)") }
        return v
    }

    func float(_ key: String, _ fallback: Float, _ check: (Double) -> Bool, _ requirement: String) throws -> Float {
        Float(try double(key, Double(fallback), check, requirement))
    }

    func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        guard let (n, l) = node(key) else { return fallback }
        guard let v = n.bool else { throw bad(key, l, "must be true or false") }
        return v
    }

    func choice<T: RawRepresentable>(_ key: String, _ fallback: T) throws -> T where T.RawValue == String, T: CaseIterable {
        let s = try string(key, fallback.rawValue)
        guard let v = T(rawValue: s) else {
            throw bad(key, node(key)?.1 ?? line, "is '\(s)'; it must be one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }

    func intList(_ key: String, _ fallback: [Int], _ range: ClosedRange<Int>) throws -> [Int] {
        guard let (n, l) = node(key) else { return fallback }
        guard let seq = n.sequence, !seq.isEmpty else { throw bad(key, l, "must be a non-empty list of integers") }
        return try seq.map { item in
            guard let v = item.int, range.contains(v) else {
                throw bad(key, item.mark?.line ?? l, "must hold integers in \(range.lowerBound)...\(range.upperBound)")
            }
            return v
        }
    }

    /// A non-empty list of finite numbers of at most `maxCount`, or a single number (a list of one).
    func doubleList(_ key: String, _ fallback: [Double], maxCount: Int) throws -> [Double] {
        guard let (n, l) = node(key) else { return fallback }
        if let v = n.float, v.isFinite { return [v] }
        guard let seq = n.sequence, !seq.isEmpty, seq.count <= maxCount else {
            throw bad(key, l, "must be a number or a list of 1 to \(maxCount) numbers")
        }
        return try seq.map { item in
            guard let v = item.float, v.isFinite else { throw bad(key, item.mark?.line ?? l, "must hold finite numbers") }
            return v
        }
    }

    /// A [lower, upper] pair or a single number (a fixed value).
    func range(_ key: String, _ fallback: (Double, Double)) throws -> (Double, Double) {
        guard let (n, l) = node(key) else { return fallback }
        if let v = n.float, v.isFinite { return (v, v) }
        guard let seq = n.sequence, seq.count == 2, let lo = seq[0].float, let hi = seq[1].float, lo.isFinite, hi.isFinite else {
            throw bad(key, l, "must be a number or a [lower, upper] pair of numbers")
        }
        guard lo <= hi else { throw bad(key, l, "has lower bound \(lo) above upper bound \(hi)") }
        return (lo, hi)
    }

    /// A list of strings (empty when absent).
    func stringList(_ key: String) throws -> [String] {
        guard let (n, l) = node(key) else { return [] }
        guard let seq = n.sequence, let list = Optional(seq.compactMap { $0.scalar?.string }), list.count == seq.count else {
            throw bad(key, l, "must be a list of strings")
        }
        return list
    }

    /// Every key of the mapping, in file order (for mappings whose keys are the user's names).
    var keys: [String] { entries.map(\.key) }

    func sequence(_ key: String) -> [Node]? { node(key)?.0.sequence.map(Array.init) }

    /// Throws for the first key that no reader asked for.
    func finish() throws {
        if let e = entries.first(where: { !used.contains($0.key) }) {
            throw ConfigError.unknownKey(path: full(e.key), line: e.line, known: known)
        }
    }
}
