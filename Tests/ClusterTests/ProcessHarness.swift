import Cluster
import Foundation
import MetaLearning
import NeuralNet
import Testing

/// Runs the real `metatrain` binary as child processes, for tests with real sockets and real signals.
enum Harness {
    /// The metatrain executable next to the test bundle (built by `swift build --build-tests`).
    static var binary: String {
        let bin = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        return bin.appendingPathComponent("metatrain").path
    }

    /// A fresh temporary folder.
    static func folder(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "metatrain-test-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The configuration the process tests share: small and fast, with faults detected within 0.6 s.
    static let configText = """
    run:
      name: proc
      seed: 11
      checkpoint_interval: 2
      keep_last: 2
    coordinator:
      bind: tcp://127.0.0.1:*
      heartbeat_interval_ms: 200
      liveness: 3
    meta:
      algorithm: reptile
      iterations: 10
      meta_batch: 4
    task_family:
      env: cartpole
    inner_loop:
      budget: 1000
      hidden_layers: [16, 16]
      batch_size: 16
      learning_starts: 100
      buffer_capacity: 1000
    evaluation:
      tasks: 0
    """

    static func writeConfig(_ folder: String, _ text: String = configText) -> String {
        let path = (folder as NSString).appendingPathComponent("cluster.yaml")
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// θ after all iterations computed serially in this process: what every cluster run must reproduce.
    static let referenceSHA: String = reference(configText)

    /// The serial in-process θ for any configuration text.
    static func reference(_ text: String) -> String {
        do {
            let config = try ClusterConfig.parse(text)
            var state = MetaState(theta: try config.initialParameters(), settings: config.meta)
            for t in 0..<config.meta.iterations {
                let updates = try (0..<config.meta.metaBatch).map { slot in
                    // The θ the slots of t adapt: θ_t, or θ_{t−1} in a pipelined run (`MetaSettings.baseVersion`).
                    try runSlot(theta: state.theta(version: config.meta.baseVersion(of: t))!, task: config.task(iteration: t, slot: slot),
                                algorithm: config.meta.algorithm, settings: config.innerLoop,
                                seed: slotSeed(runSeed: config.run.seed, iteration: t, slot: slot)).update
                }
                state.apply(updates: try config.metaUpdates(iteration: t, theta: state.theta, slotUpdates: updates, kernel: .selected),
                            settings: config.meta)
            }
            return parametersSHA256(state.theta)
        } catch {
            return "reference failed: \(error)"
        }
    }

    final class Child {
        let process = Process()
        let log: String

        /// `environment`: variables set on top of this process's (e.g. METATRAIN_KERNEL).
        init(_ arguments: [String], log: String, environment: [String: String] = [:]) throws {
            self.log = log
            FileManager.default.createFile(atPath: log, contents: nil)
            process.executableURL = URL(fileURLWithPath: Harness.binary)
            process.arguments = arguments
            if !environment.isEmpty {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            }
            let handle = FileHandle(forWritingAtPath: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }

        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

        /// Waits for exit; SIGKILLs and returns nil after `seconds`.
        @discardableResult
        func wait(seconds: Double) -> Int32? {
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { signal(SIGKILL); process.waitUntilExit(); return nil }
            return process.terminationStatus
        }

        deinit { if process.isRunning { signal(SIGKILL); process.waitUntilExit() } }
    }

    static func coordinator(_ folder: String, config: String, extra: [String] = []) throws -> Child {
        try Child(["coordinator", "--config", config, "--run-dir", folder] + extra,
                  log: (folder as NSString).appendingPathComponent("coordinator-\(Date().timeIntervalSince1970).log"))
    }

    /// Starts a coordinator and returns it with the endpoint it bound (read from coordinator.endpoint).
    static func startCoordinator(_ folder: String, config: String, extra: [String] = []) throws -> (Child, String) {
        let coordinator = try Harness.coordinator(folder, config: config, extra: extra)
        guard waitFor(seconds: 20, { endpoint(folder) != nil }), let bound = endpoint(folder) else {
            Issue.record("coordinator did not bind: \(coordinator.output.suffix(1000))")
            throw CancellationError()
        }
        return (coordinator, bound)
    }

    static func worker(_ folder: String, endpoint: String, index: Int, threads: Int = 1, extra: [String] = [],
                       environment: [String: String] = [:]) throws -> Child {
        try Child((endpoint.isEmpty ? ["worker"] : ["worker", "--connect", endpoint]) + ["--threads", "\(threads)", "--heartbeat-interval-ms", "200"] + extra,
                  log: (folder as NSString).appendingPathComponent("worker-\(index)-\(Date().timeIntervalSince1970).log"),
                  environment: environment)
    }

    /// Polls `condition` every 20 ms for up to `seconds`.
    static func waitFor(seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    static func endpoint(_ folder: String) -> String? {
        let path = (folder as NSString).appendingPathComponent("coordinator.endpoint")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.isEmpty ? nil : trimmed
    }

    /// metrics.jsonl lines written so far (one per applied meta-iteration).
    static func metrics(_ folder: String) -> [[String: Any]] {
        let path = (folder as NSString).appendingPathComponent("metrics.jsonl")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// The run folder's status.json as an object, or nil while there is none (or it cannot be read).
    static func status(_ folder: String) -> [String: Any]? {
        let path = (folder as NSString).appendingPathComponent("status.json")
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    /// params_sha256 of the run folder's newest valid checkpoint, via `metatrain checkpoint inspect --json`.
    static func finalSHA(_ folder: String) throws -> String {
        let object = try inspect(folder)
        return (object["params_sha256"] as? String) ?? "no sha in: \(object)"
    }

    /// Runs `python script arguments…` and returns its exit status and output (stdout and stderr together).
    static func runPython(_ python: String, _ script: String, _ arguments: [String]) throws -> (status: Int32, output: Data) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [script] + arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, data)
    }

    /// `metatrain checkpoint inspect --json` of a run folder's newest valid checkpoint.
    static func inspect(_ folder: String) throws -> [String: Any] {
        let child = try Child(["checkpoint", "inspect", folder, "--json"], log: folder + "/inspect-\(Date().timeIntervalSince1970).log")
        child.wait(seconds: 30)
        let line = child.output.split(separator: "\n").last.map(String.init) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? ["output": child.output]
    }
}
