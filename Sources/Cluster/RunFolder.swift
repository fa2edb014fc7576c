import ClusterCore
import Foundation

/// A run's folder: where each of its files lives, and the writes the coordinator makes there.
///
/// One place for the layout that `metatrain eval`, `status`, `export`, the launch scripts and the tests
/// read back: checkpoints/, config.yaml, coordinator.endpoint, metrics.jsonl, eval.jsonl, status.json,
/// tensorboard/, run.id. Readers name a file through here too, so the layout has one owner. Writes that replace a file are atomic (a reader never sees half of one); appends are
/// whole lines (`appendLine`), not fsynced: a crash may lose the last lines, never the checkpoints, which are.
public struct RunFolder: Sendable {
    public let path: String

    public init(_ path: String) { self.path = path }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    public var checkpoints: String { file("checkpoints") }
    /// The configuration the run was started (or last resumed) with.
    public var config: String { file("config.yaml") }
    /// The endpoint workers connect to, while a coordinator runs.
    public var endpoint: String { file("coordinator.endpoint") }
    public var metrics: String { file("metrics.jsonl") }
    /// The coordinator's periodic meta-evaluation (on validation tasks).
    public var periodicEvaluation: String { file("eval.jsonl") }
    public var status: String { file("status.json") }
    public var tensorBoard: String { file("tensorboard") }
    /// Where `metatrain eval` writes its report of θ after `iteration` meta-updates (add .json, .csv, -tasks.csv, .svg);
    /// `split` names a split other than the test tasks'.
    public func evaluationStem(iteration: Int, split: String? = nil) -> String {
        file(String(format: "eval-iter%06d", iteration) + (split.map { "-\($0)" } ?? ""))
    }
    /// The run's id, written once when the run starts (`CheckpointStore.recordRunID`).
    public var runID: String { file("run.id") }

    func create() throws { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }

    func writeConfig(_ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: config), options: .atomic)
    }

    /// Replaces the endpoint file (a resumed run's old one names a dead port).
    func writeEndpoint(_ advertised: String) throws {
        try Data((advertised + "\n").utf8).write(to: URL(fileURLWithPath: endpoint), options: .atomic)
    }

    func removeEndpoint() throws { try FileManager.default.removeItem(atPath: endpoint) }

    /// Appends one metrics.jsonl line; a non-finite value (a diverging mean return) is written as null, so the
    /// line stays valid JSON.
    func appendMetrics(_ line: [String: Any]) throws {
        try appendLine(try JSONLine.data(line), to: metrics)
    }

    /// Drops the metrics.jsonl lines of meta-updates from `iteration` on (their `iteration` field, 0-based, ≥ it): a
    /// run resumed from the checkpoint after `iteration` updates computes them again. Rewritten atomically; a line that
    /// does not parse is kept.
    func dropMetrics(fromIteration iteration: Int) throws {
        guard let text = try? String(contentsOfFile: metrics, encoding: .utf8) else { return }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        let kept = lines.filter { line in
            let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            return (object?["iteration"] as? Int).map { $0 < iteration } ?? true
        }
        guard kept.count < lines.count else { return }
        try Data(kept.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: metrics), options: .atomic)
    }

    func writeStatus(_ data: Data) throws {
        try data.write(to: URL(fileURLWithPath: status), options: .atomic)
    }
}
