import ArgumentParser
import Cluster
import Foundation
import MetaLearning
import Transport
import Wire

/// `metatrain status RUN_DIR|tcp://HOST:PORT`: where a run stands, from the status.json its coordinator rewrites
/// every iteration, or from the coordinator itself over its socket (the same object).
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a run's progress: iteration k of N, ETA, slots/s, workers, last checkpoint and meta-eval.")

    @Argument(help: "The run folder, or the coordinator's endpoint (tcp://HOST:PORT).") var folder: String
    @Flag(help: "Print the status JSON as it is.") var json = false
    @Flag(help: "Exit 4 unless a coordinator is live (starting, running or serving): for health probes, which a run folder's status.json from a stopped or finished coordinator must not satisfy.")
    var live = false
    @Option(help: "With tcp://: seconds to wait for the coordinator's answer.") var timeout = 5.0
    @OptionGroup var curve: CurveClientOptions

    func run() throws {
        try userFacing {
            let remote = folder.hasPrefix("tcp://")
            let data: Data
            if remote {
                data = try ask(folder)
            } else {
                if curve.given { throw ValidationError("--server-key and --key are for tcp:// endpoints") }
                let path = RunFolder(folder).status
                guard let d = FileManager.default.contents(atPath: path) else {
                    throw ValidationError("no readable \(path): is \(folder) a run folder whose coordinator has started?")
                }
                data = d
            }
            guard let status = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw ValidationError("\(remote ? "the coordinator's answer" : folder + "/status.json") is not a status object")
            }
            if json && !live { print(String(decoding: data, as: UTF8.self)); return }
            let iteration = status["iteration"] as? Int ?? 0, iterations = status["iterations"] as? Int ?? 0
            let updated = Double(status["updated_unix_ms"] as? Int ?? 0) / 1000
            let age = Date().timeIntervalSince1970 - updated
            let state = status["state"] as? String ?? "?"
            if !remote, let gone = Self.deadCoordinator(status, state: state, age: age) {
                // A file says "running" until someone rewrites it: a coordinator killed hard never does.
                print("run \(status["run_id"] as? String ?? "?") — NOT RUNNING: \(gone); it last said \(state) at iteration \(iteration) of \(iterations). Continue it with `metatrain coordinator --config … --resume \(folder)`.")
                throw ExitCode(3)
            }
            if live && !Self.liveStates.contains(state) {
                print("run \(status["run_id"] as? String ?? "?") — not live: its coordinator said \(state)")
                throw ExitCode(4)
            }
            if json { print(String(decoding: data, as: UTF8.self)); return }
            print("run \(status["run_id"] as? String ?? "?") — \(state) (status written \(formatDuration(age)) ago)")
            var line = "iteration \(iteration) of \(iterations)"
            if let eta = status["eta_seconds"] as? Double { line += ", ETA \(formatDuration(eta))" }
            if let rate = status["slots_per_second"] as? Double { line += String(format: ", %.2f slots/s", rate) }
            if let s = status["seconds_per_iteration"] as? Double { line += String(format: ", %.2f s/iteration", s) }
            print(line)
            if let c = status["last_checkpoint"] as? [String: Any], let ms = c["unix_ms"] as? Int {
                print("last checkpoint: iteration \(c["iteration"] as? Int ?? -1), \(formatDuration(Date().timeIntervalSince1970 - Double(ms) / 1000)) ago")
            }
            let evalPath = RunFolder(folder).periodicEvaluation
            if let e = status["last_meta_eval"] as? [String: Any], let first = e["return_before"] as? Double,
               let end = e["return_after"] as? Double {
                print(String(format: "last meta-eval (iteration %@): greedy return %.1f before, %.1f after adaptation", "\(e["iteration"] ?? "?")", first, end))
            } else if !remote, let text = try? String(contentsOfFile: evalPath, encoding: .utf8),
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

    /// The states a coordinator writes while it runs (it writes "stopped" or "exited" as it ends).
    static let liveStates: Set<String> = ["starting", "running", "training finished"]

    /// Why a status.json that says the run is live cannot be believed, or nil: its coordinator's process is gone (when
    /// it ran on this host), or the file is older than three of the refreshes its coordinator promised.
    static func deadCoordinator(_ status: [String: Any], state: String, age: Double) -> String? {
        guard liveStates.contains(state) else { return nil }
        if let pid = status["pid"] as? Int, let host = status["host"] as? String, host == ProcessInfo.processInfo.hostName,
           kill(pid_t(pid), 0) != 0, errno == ESRCH {
            return "its coordinator (pid \(pid) on \(host)) is gone"
        }
        if let refresh = status["refresh_seconds"] as? Double, age > max(3 * refresh, 15) {
            return "status.json has not been rewritten for \(formatDuration(age)) (its coordinator rewrites it every \(Int(refresh)) s while it runs): the coordinator is dead, hung or cut off"
        }
        return nil
    }

    /// Sends a status request to the coordinator at `endpoint` and returns its JSON answer.
    func ask(_ endpoint: String) throws -> Data {
        try checkEndpoint(endpoint, option: "the endpoint")
        guard timeout > 0 && timeout <= 3600 else { throw ValidationError("--timeout must be in (0, 3600] seconds") }
        let context = try ZMQContext()
        let socket = try context.socket(.dealer)
        defer { socket.close() }
        if let c = try curve.load() { try socket.makeCurveClient(serverPublicKey: c.serverPublicKey, keys: c.keys) }
        try socket.connect(endpoint)
        try socket.send([WireCodec.encode(.statusRequest)], dontWait: false)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard try ZMQPoller.poll([socket], timeoutMs: 100)[0], let frames = try socket.receive(), frames.count == 1 else { continue }
            switch try WireCodec.decode(frames[0]) {
            case .statusReply(let json): return Data(json.utf8)
            case .error(let e): throw ValidationError("the coordinator at \(endpoint) refused the status request (\(e.code)): \(e.message)")
            default: continue
            }
        }
        throw ValidationError("no answer from a coordinator at \(endpoint) within \(formatDuration(timeout)) (\(unresolvableHost(endpoint) ?? "is it running, and is this its endpoint?"))")
    }
}
