import ArgumentParser
import Cluster
import MetaLearning
import Foundation

/// `metatrain status RUN_DIR`: where a run stands, from the status.json its coordinator rewrites every iteration.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a run's progress: iteration k of N, ETA, slots/s, workers, last checkpoint and meta-eval.")

    @Argument(help: "The run folder.") var folder: String
    @Flag(help: "Print status.json as it is.") var json = false

    func run() throws {
        try userFacing {
            guard !folder.hasPrefix("tcp://") else {
                throw ValidationError("status reads a run folder (RUN_DIR/status.json); asking a coordinator over tcp:// is not built yet")
            }
            let path = (folder as NSString).appendingPathComponent("status.json")
            guard let data = FileManager.default.contents(atPath: path),
                  let status = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ValidationError("no readable \(path): is \(folder) a run folder whose coordinator has started?")
            }
            if json { print(String(decoding: data, as: UTF8.self)); return }
            let iteration = status["iteration"] as? Int ?? 0, iterations = status["iterations"] as? Int ?? 0
            let updated = Double(status["updated_unix_ms"] as? Int ?? 0) / 1000
            let age = Date().timeIntervalSince1970 - updated
            print("run \(status["run_id"] as? String ?? "?") — \(status["state"] as? String ?? "?") (status written \(formatDuration(age)) ago)")
            var line = "iteration \(iteration) of \(iterations)"
            if let eta = status["eta_seconds"] as? Double { line += ", ETA \(formatDuration(eta))" }
            if let rate = status["slots_per_second"] as? Double { line += String(format: ", %.2f slots/s", rate) }
            if let s = status["seconds_per_iteration"] as? Double { line += String(format: ", %.2f s/iteration", s) }
            print(line)
            if let c = status["last_checkpoint"] as? [String: Any], let ms = c["unix_ms"] as? Int {
                print("last checkpoint: iteration \(c["iteration"] as? Int ?? -1), \(formatDuration(Date().timeIntervalSince1970 - Double(ms) / 1000)) ago")
            }
            let evalPath = (folder as NSString).appendingPathComponent("eval.jsonl")
            if let text = try? String(contentsOfFile: evalPath, encoding: .utf8),
               let last = text.split(separator: "\n").last,
               let eval = try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any],
               let curve = (eval["inits"] as? [String: Any])?["meta"] as? [[String: Any]],
               let first = curve.first?["mean_return"] as? Double, let end = curve.last?["mean_return"] as? Double {
                print(String(format: "last meta-eval (iteration %@): greedy return %.1f before, %.1f after adaptation", "\(eval["iteration"] ?? "?")", first, end))
            }
            let workers = status["workers"] as? [[String: Any]] ?? []
            print("workers: \(workers.count)")
            for w in workers {
                print(String(format: "  %@  %@  threads %d (%d busy)  slots done %d  heard %d ms ago%@", w["id"] as? String ?? "?",
                             w["host"] as? String ?? "?", w["threads"] as? Int ?? 0, w["busy"] as? Int ?? 0,
                             w["slots_done"] as? Int ?? 0, w["last_heard_ms_ago"] as? Int ?? 0,
                             (w["suspected"] as? Bool ?? false) ? "  SUSPECTED (held work past its deadline)" : ""))
            }
        }
    }
}
