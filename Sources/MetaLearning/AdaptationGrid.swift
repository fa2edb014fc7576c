import DQN
import Foundation

/// A grid of adaptation settings, searched on validation tasks so each init adapts with its own best protocol.
///
/// Why: a baseline adapted with a protocol tuned for another init is a straw man (issue 36); `metatrain eval
/// --split validation --tune GRID` adapts every init with every grid point and keeps, per init, the point with the
/// lowest median steps to the target, and the grid, every point's score and the choice go into the eval's JSON.
public struct AdaptationGrid: Sendable, Equatable {
    /// The settings a grid may vary, as `metatrain eval` names them (without the leading "--", underscores).
    public static let keys = ["learning_rate", "start_epsilon", "end_epsilon", "exploration_fraction", "learning_starts",
                              "target_update_interval", "gamma", "ez_max_repeat"]

    public struct Axis: Sendable, Equatable {
        public var key: String
        public var values: [Double]
    }

    /// The axes in the order given: the first varies slowest in `points`.
    public var axes: [Axis]

    /// Parses "learning_rate=3e-4,1e-3 start_epsilon=1,0.5 ez_max_repeat=0,16" (axes separated by spaces or ';').
    public init(parsing text: String) throws(GridError) {
        let items = text.split(whereSeparator: { $0 == " " || $0 == ";" || $0 == "\n" }).map(String.init)
        guard !items.isEmpty else { throw .invalid("an empty grid: give KEY=V1,V2,… (keys: \(Self.keys.joined(separator: ", ")))") }
        var axes: [Axis] = []
        for item in items {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, Self.keys.contains(parts[0]) else {
                throw .invalid("'\(item)' is not KEY=V1,V2,… with KEY one of \(Self.keys.joined(separator: ", "))")
            }
            guard !axes.contains(where: { $0.key == parts[0] }) else { throw .invalid("\(parts[0]) is given twice") }
            var values: [Double] = []
            for text in parts[1].split(separator: ",") {
                guard let v = Double(text), v.isFinite else { throw .invalid("\(parts[0]): '\(text)' is not a number") }
                guard !values.contains(v) else { throw .invalid("\(parts[0]): \(text) is given twice") }
                values.append(v)
            }
            guard !values.isEmpty else { throw .invalid("\(parts[0]) has no values") }
            axes.append(Axis(key: parts[0], values: values))
        }
        self.axes = axes
        let count = axes.reduce(1) { $0 * $1.values.count }
        guard count <= Self.maxPoints else { throw .invalid("\(count) grid points; at most \(Self.maxPoints)") }
    }

    public static let maxPoints = 4096

    /// A value as written in a grid: 16, 0.5, 0.0003 (whole numbers without a fraction).
    public static func compact(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : "\(v)"
    }

    /// Every combination of the axes' values, the first axis slowest.
    public var points: [[Double]] {
        axes.reduce([[]]) { partial, axis in partial.flatMap { p in axis.values.map { p + [$0] } } }
    }

    /// `base` with `point`'s values set; throws when a value is out of the setting's range.
    public func apply(_ point: [Double], to base: DQNConfig) throws(GridError) -> DQNConfig {
        var d = base
        for (axis, v) in zip(axes, point) {
            func whole() throws(GridError) -> Int {
                guard v >= 0 && v <= 1e8 && v == v.rounded() else { throw .invalid("\(axis.key) takes whole numbers, got \(v)") }
                return Int(v)
            }
            switch axis.key {
            case "learning_rate": d.learningRate = Float(v)
            case "start_epsilon": d.startEpsilon = Float(v)
            case "end_epsilon": d.endEpsilon = Float(v)
            case "exploration_fraction": d.explorationFraction = Float(v)
            case "learning_starts": d.learningStarts = try whole()
            case "target_update_interval": d.targetUpdateInterval = try whole()
            case "gamma": d.gamma = Float(v)
            default:
                let n = try whole()
                d.ezMaxRepeat = n == 0 ? nil : n
            }
        }
        do { try d.validate() } catch { throw .invalid("grid point \(describe(point)): \(error)") }
        return d
    }

    /// A point as a JSON object, e.g. {"learning_rate": 0.001, "ez_max_repeat": 16}.
    public func describe(_ point: [Double]) -> String {
        "{" + zip(axes, point).map { "\"\($0.key)\": \(Self.compact($1))" }.joined(separator: ", ") + "}"
    }

    /// The grid as a JSON object of value lists.
    public var json: String {
        "{" + axes.map { a in "\"\(a.key)\": [" + a.values.map(Self.compact).joined(separator: ", ") + "]" }
            .joined(separator: ", ") + "}"
    }

    /// How one grid point did on the validation tasks it ran on.
    public struct Score: Sendable, Equatable {
        public var point: Int
        /// Median steps to the target, a task that never reached it counting as budget + every.
        public var medianSteps: Double
        public var reached: Int
        public var tasks: Int

        public init(point: Int, medianSteps: Double, reached: Int, tasks: Int) {
            self.point = point; self.medianSteps = medianSteps; self.reached = reached; self.tasks = tasks
        }

        /// Scores a point's per-task steps to the target (nil: never within the budget).
        public init(point: Int, steps: [Int?], censoredAt: Int) {
            self.init(point: point, medianSteps: median(steps.map { Double($0 ?? censoredAt) }),
                      reached: steps.compactMap { $0 }.count, tasks: steps.count)
        }
    }

    /// `scores` best first: the lowest median, then the most tasks reaching the target, then the smaller learning
    /// rate (the safer of two equal protocols), then grid order — a total order, so the choice is reproducible.
    public func ranked(_ scores: [Score]) -> [Score] {
        let rate = axes.firstIndex { $0.key == "learning_rate" }
        let all = points
        return scores.sorted { a, b in
            if a.medianSteps != b.medianSteps { return a.medianSteps < b.medianSteps }
            if a.reached != b.reached { return a.reached > b.reached }
            if let r = rate, all[a.point][r] != all[b.point][r] { return all[a.point][r] < all[b.point][r] }
            return a.point < b.point
        }
    }
}

public enum GridError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case .invalid(let s) = self { return "--tune: \(s)" } else { return "" } }
}
