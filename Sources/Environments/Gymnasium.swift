import Foundation
import NeuralNet

/// A plain value a gymnasium task's keyword argument or attribute takes: what crosses to the Python side.
///
/// Only these four kinds exist, so nothing but numbers, strings and booleans ever reaches a user's environment.
public enum GymValue: Codable, Sendable, Hashable, CustomStringConvertible {
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "a value must be a number, a string or a boolean") }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        }
    }

    /// The value as JSON text (what the environment server receives).
    public var json: String {
        switch self {
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        // Shortest round-tripping text, which Python's json reads back to the same double.
        case .double(let d): return d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)") : "null"
        case .string(let s): return jsonString(s)
        }
    }

    public var description: String {
        switch self {
        case .string(let s): return s
        default: return json
        }
    }

    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
}

/// One task of a gymnasium family: which environment, the values drawn for it, and its seed. Never code.
///
/// The worker hands this to its environment server (`ExternalEnvironments`); `environmentID` is a registered
/// gymnasium id, `entryPoint` a `module:function` the worker must have been started to allow.
public struct GymnasiumTask: Codable, Sendable, Hashable {
    public var environmentID: String?
    public var entryPoint: String?
    /// Keyword arguments of `gymnasium.make` (with an id) or the entry point's `task.parameters`.
    public var kwargs: [String: GymValue]
    /// Set on `env.unwrapped` after it is made (the family's `unwrapped.NAME` entries).
    public var attributes: [String: GymValue]
    /// The task's own seed, drawn with its parameters; an entry point receives it as `task.seed`.
    public var seed: UInt64
    /// A step limit to impose (nil: the registered one).
    public var maxEpisodeSteps: Int?

    public init(environmentID: String? = nil, entryPoint: String? = nil, kwargs: [String: GymValue] = [:],
                attributes: [String: GymValue] = [:], seed: UInt64 = 0, maxEpisodeSteps: Int? = nil) {
        self.environmentID = environmentID; self.entryPoint = entryPoint; self.kwargs = kwargs
        self.attributes = attributes; self.seed = seed; self.maxEpisodeSteps = maxEpisodeSteps
    }

    /// The environment's name for messages: its id or entry point.
    public var name: String { environmentID ?? entryPoint ?? "?" }

    /// The registered Swift family's name, for a task of one (entry point `swift:NAME`); nil for a Python one.
    public var swiftFamily: String? {
        guard let entryPoint, entryPoint.hasPrefix(ExternalEnvironments.swiftPrefix) else { return nil }
        return String(entryPoint.dropFirst(ExternalEnvironments.swiftPrefix.count))
    }

    public func validate() throws {
        let t = "gymnasium"
        guard (environmentID == nil) != (entryPoint == nil) else {
            throw EnvironmentError.invalidFamily("a gymnasium family names exactly one of 'id' and 'entry_point'")
        }
        for text in [environmentID, entryPoint].compactMap({ $0 }) {
            guard !text.isEmpty, text.utf8.count <= GymnasiumTask.maxTextBytes else {
                throw EnvironmentError.invalidFamily("a gymnasium id or entry point must have 1 to \(GymnasiumTask.maxTextBytes) bytes")
            }
        }
        if let entryPoint {
            let parts = entryPoint.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw EnvironmentError.invalidFamily("entry_point '\(entryPoint)' must be 'package.module:function'")
            }
        }
        guard kwargs.count + attributes.count <= GymnasiumTask.maxValues else {
            throw EnvironmentError.invalidFamily("a gymnasium task has at most \(GymnasiumTask.maxValues) kwargs and attributes")
        }
        for (name, value) in kwargs.merging(attributes, uniquingKeysWith: { a, _ in a }) {
            guard !name.isEmpty, name.utf8.count <= GymnasiumTask.maxTextBytes else {
                throw EnvironmentError.invalidFamily("a gymnasium parameter name must have 1 to \(GymnasiumTask.maxTextBytes) bytes")
            }
            if case .double(let d) = value { try require(true, t, name, d, "finite") }
            if case .string(let s) = value, s.utf8.count > GymnasiumTask.maxTextBytes {
                throw EnvironmentError.invalidFamily("gymnasium parameter '\(name)' is longer than \(GymnasiumTask.maxTextBytes) bytes")
            }
        }
        if let steps = maxEpisodeSteps { try require(steps > 0, t, "max_episode_steps", Double(steps), "> 0") }
    }

    /// The MAKE request the environment server reads (keys sorted, so equal tasks give equal bytes).
    public var json: String {
        func object(_ values: [String: GymValue]) -> String {
            "{" + values.keys.sorted().map { "\(jsonString($0)):\(values[$0]!.json)" }.joined(separator: ",") + "}"
        }
        var fields: [String] = []
        if let environmentID { fields.append("\"id\":\(jsonString(environmentID))") }
        if let entryPoint { fields.append("\"entry_point\":\(jsonString(entryPoint))") }
        fields.append("\"kwargs\":\(object(kwargs))")
        fields.append("\"attributes\":\(object(attributes))")
        fields.append("\"seed\":\(seed)")
        if let maxEpisodeSteps { fields.append("\"max_episode_steps\":\(maxEpisodeSteps)") }
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// Bounds every gymnasium text and map (the wire decoder holds peers to them too).
    public static let maxTextBytes = 512
    public static let maxValues = 64
}

/// How a gymnasium family draws one parameter per task.
public enum GymDistribution: Codable, Sendable, Equatable {
    /// The same value for every task.
    case fixed(GymValue)
    case uniform(ParameterRange)
    /// Uniform in log space (both ends > 0).
    case logUniform(ParameterRange)
    /// A whole number in [lower, upper], each equally likely.
    case integer(lower: Int64, upper: Int64)
    /// One of the values, each equally likely.
    case choice([GymValue])

    enum CodingKeys: String, CodingKey { case uniform, logUniform = "log_uniform", integer, choice }

    /// `{uniform: [a, b]}`, `{log_uniform: [a, b]}`, `{integer: [a, b]}`, `{choice: [...]}`, or a plain value.
    public init(from decoder: Decoder) throws {
        if let value = try? decoder.singleValueContainer().decode(GymValue.self) { self = .fixed(value); return }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard c.allKeys.count == 1, let key = c.allKeys.first else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription:
                "give one of uniform: [a, b], log_uniform: [a, b], integer: [a, b], choice: [values], or a plain value"))
        }
        func pair<T: Decodable>(_ type: T.Type) throws -> (T, T) {
            let values = try c.decode([T].self, forKey: key)
            guard values.count == 2 else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "needs [lower, upper]")
            }
            return (values[0], values[1])
        }
        switch key {
        case .uniform: let (a, b) = try pair(Double.self); self = .uniform(ParameterRange(a, b))
        case .logUniform: let (a, b) = try pair(Double.self); self = .logUniform(ParameterRange(a, b))
        case .integer: let (a, b) = try pair(Int64.self); self = .integer(lower: a, upper: b)
        case .choice: self = .choice(try c.decode([GymValue].self, forKey: key))
        }
    }

    public func encode(to encoder: Encoder) throws {
        if case .fixed(let v) = self { try v.encode(to: encoder); return }
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .fixed: break
        case .uniform(let r): try c.encode([r.lower, r.upper], forKey: .uniform)
        case .logUniform(let r): try c.encode([r.lower, r.upper], forKey: .logUniform)
        case .integer(let a, let b): try c.encode([a, b], forKey: .integer)
        case .choice(let values): try c.encode(values, forKey: .choice)
        }
    }

    func sample(_ rng: inout SeededRNG) -> GymValue {
        switch self {
        case .fixed(let v): return v
        case .uniform(let r): return .double(r.sample(&rng))
        case .logUniform(let r): return .double(r.lower == r.upper ? r.lower : exp(rng.nextDouble(in: log(r.lower), log(r.upper))))
        case .integer(let a, let b):
            let span = UInt64(bitPattern: b &- a) &+ 1
            return .int(span == 0 ? Int64(bitPattern: rng.next()) : a &+ Int64(bitPattern: rng.next() % span))
        case .choice(let values): return values[min(Int(rng.nextDouble(in: 0, Double(values.count))), values.count - 1)]
        }
    }

    func check(_ name: String) throws {
        switch self {
        case .fixed(let v): if case .double(let d) = v { try require(true, "gymnasium", name, d, "finite") }
        case .uniform(let r): try r.check("gymnasium", name)
        case .logUniform(let r):
            try r.check("gymnasium", name)
            try require(r.lower > 0, "gymnasium", name, r.lower, "> 0 (log_uniform)")
        case .integer(let a, let b):
            guard a <= b else { throw EnvironmentError.invalidRange(task: "gymnasium", name: name, lower: Double(a), upper: Double(b)) }
        case .choice(let values):
            guard !values.isEmpty, values.count <= 10_000 else {
                throw EnvironmentError.invalidFamily("gymnasium parameter '\(name)': choice needs 1 to 10000 values")
            }
        }
    }

    /// The range a drawn value lies in, for task coordinates (nil when it is not a numeric range).
    var range: ParameterRange? {
        switch self {
        case .uniform(let r), .logUniform(let r): return r.lower < r.upper ? r : nil
        case .integer(let a, let b): return a < b ? ParameterRange(Double(a), Double(b)) : nil
        default: return nil
        }
    }
}

/// A task family of any gymnasium environment: an id (or a user's entry point), fixed keyword arguments, and a
/// distribution per varied keyword argument or `unwrapped.` attribute, drawn per task in Swift from the task's seed.
public struct GymnasiumFamily: Codable, Sendable, Equatable {
    public var environmentID: String?
    public var entryPoint: String?
    public var kwargs: [String: GymValue] = [:]
    /// Per parameter, its distribution; a name `unwrapped.NAME` is an attribute of `env.unwrapped`, any other a
    /// keyword argument (for an entry point: a key of `task.parameters`).
    public var vary: [String: GymDistribution] = [:]
    public var maxEpisodeSteps: Int?

    public init(environmentID: String? = nil, entryPoint: String? = nil, kwargs: [String: GymValue] = [:],
                vary: [String: GymDistribution] = [:], maxEpisodeSteps: Int? = nil) {
        self.environmentID = environmentID; self.entryPoint = entryPoint; self.kwargs = kwargs
        self.vary = vary; self.maxEpisodeSteps = maxEpisodeSteps
    }

    enum CodingKeys: String, CodingKey { case environmentID = "id", entryPoint, kwargs, vary, maxEpisodeSteps }

    static let attributePrefix = "unwrapped."

    /// A family of Swift tasks (`env: swift`): made in-process by a registered function, no Python involved.
    public var isSwift: Bool { entryPoint?.hasPrefix(ExternalEnvironments.swiftPrefix) == true }

    /// Draws each varied parameter (in name order), then the task's seed.
    func draw(_ rng: inout SeededRNG) -> GymnasiumTask {
        var task = GymnasiumTask(environmentID: environmentID, entryPoint: entryPoint, kwargs: kwargs, maxEpisodeSteps: maxEpisodeSteps)
        for name in vary.keys.sorted() {
            let value = vary[name]!.sample(&rng)
            if name.hasPrefix(Self.attributePrefix) {
                task.attributes[String(name.dropFirst(Self.attributePrefix.count))] = value
            } else {
                task.kwargs[name] = value
            }
        }
        task.seed = rng.next()
        return task
    }

    func validate() throws {
        for (name, distribution) in vary {
            guard name != Self.attributePrefix else { throw EnvironmentError.invalidFamily("'unwrapped.' names no attribute") }
            if kwargs[name] != nil { throw EnvironmentError.invalidFamily("'\(name)' is both in kwargs and in vary") }
            try distribution.check(name)
        }
        var rng = SeededRNG(seed: 0)
        try draw(&rng).validate()
    }

    /// The task's varied numeric parameters scaled to [0, 1], in name order.
    func coordinates(of task: GymnasiumTask) -> [Double] {
        vary.keys.sorted().compactMap { name -> Double? in
            guard let range = vary[name]!.range else { return nil }
            let value = name.hasPrefix(Self.attributePrefix)
                ? task.attributes[String(name.dropFirst(Self.attributePrefix.count))] : task.kwargs[name]
            return value?.number.map { ($0 - range.lower) / (range.upper - range.lower) }
        }
    }
}

/// Makes the environments of gymnasium tasks: the worker's environment servers, installed once per process.
///
/// `Environments` holds no processes or pipes; a process that runs gymnasium tasks installs a maker (the
/// `EnvironmentServer` module's pool) and every `TaskSpec.makeEnvironment()` of a gymnasium task goes through it.
public protocol GymnasiumEnvironmentMaker: Sendable {
    func makeEnvironment(for task: GymnasiumTask) throws -> any Environment
}

/// The environment makers of a process: its gymnasium environment servers, and the Swift task families it registered.
///
/// A Swift family is a family whose entry point is `swift:NAME` (cluster.yaml: `env: swift`, `name: NAME`): its tasks
/// are made in-process by the function registered under NAME, in every process that runs them — a program of one's
/// own that registers it and runs `MetaTrain.main()` (examples/swift-family), as coordinator and as worker.
public enum ExternalEnvironments {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var maker: (any GymnasiumEnvironmentMaker)?
    nonisolated(unsafe) private static var swiftFamilies: [String: @Sendable (GymnasiumTask) throws -> any Environment] = [:]

    /// The entry-point prefix of Swift families.
    public static let swiftPrefix = "swift:"

    /// Registers the Swift task family `name`: `make` builds a task's environment from its kwargs (and drawn values),
    /// attributes and seed.
    public static func register(_ name: String, make: @escaping @Sendable (GymnasiumTask) throws -> any Environment) {
        lock.lock(); swiftFamilies[name] = make; lock.unlock()
    }

    /// Sets (or, with nil, removes) the process's gymnasium environment maker.
    public static func install(_ newMaker: (any GymnasiumEnvironmentMaker)?) {
        lock.lock(); maker = newMaker; lock.unlock()
    }

    /// The installed maker, if any.
    public static var installed: (any GymnasiumEnvironmentMaker)? { lock.lock(); defer { lock.unlock() }; return maker }

    static func makeEnvironment(for task: GymnasiumTask) throws -> any Environment {
        if let name = task.swiftFamily {
            lock.lock(); let make = swiftFamilies[name]; lock.unlock()
            guard let make else { throw EnvironmentError.unknownSwiftFamily(name) }
            return try make(task)
        }
        guard let maker = installed else { throw EnvironmentError.noEnvironmentServer(task.name) }
        return try maker.makeEnvironment(for: task)
    }
}
