import ArgumentParser
import Cluster
import DQN
import EnvironmentServer
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport

/// `metatrain local`: a coordinator and N worker processes on this machine, then an adaptation summary.
struct Local: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a whole meta-training run on this machine: coordinator + N worker processes, then compare meta θ with a random init on held-out tasks.")

    @Option(help: "The cluster configuration (the committed cluster.yaml is the default run).") var config = "cluster.yaml"
    @Option(help: "Worker processes (default: the sum of the localhost workers' counts in the config).") var workers: Int?
    @Option(help: "Compute threads per worker (default: from the config).") var threads: Int?
    @Option(help: "Override meta.iterations.") var iterations: Int?
    @Option(help: "Override run.seed.") var seed: UInt64?
    @Option(help: "Run folder (default: run.run_dir/run.name-TIMESTAMP).") var runDir: String?
    @Flag(help: "Skip the end-of-run comparison on held-out tasks.") var noEval = false
    @Option(help: "What the workers' slots compute: train, or none (instant results: the coordinator's capacity, scripts/capacity.sh).")
    var compute = SlotCompute.train
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = try logging.bootstrap(label: "metatrain.local")
        var cfg = try loadConfig(config)
        if let iterations, iterations <= 0 { throw ValidationError("--iterations must be positive") }
        cfg = try userFacing { try cfg.overriding(seed: seed, iterations: iterations) }
        let local = cfg.workers.filter { $0.host == "localhost" || $0.host == "127.0.0.1" }
        let count = workers ?? max(local.reduce(0) { $0 + $1.count }, 1)
        let threadCount = threads ?? local.first?.threads ?? 1
        guard count >= 1 && count <= 256 else { throw ValidationError("--workers must be in 1...256") }
        // Any free port on loopback: a local run never collides with another.
        cfg.coordinator.bind = "tcp://127.0.0.1:*"
        let stamp = ISO8601DateFormatter.string(from: Date(), timeZone: .gmt, formatOptions: [.withYear, .withMonth, .withDay, .withTime])
        let folder = runDir ?? (cfg.run.runDir as NSString).appendingPathComponent("\(cfg.run.name)-\(stamp)")

        let stop = StopFlag()
        stop.installSignalHandlers()
        let summary = try userFacing { () throws -> CoordinatorSummary in
            let coordinator = try Coordinator(config: cfg, runDirectory: folder, resume: false, context: try ZMQContext(),
                                              stop: stop, logger: logger)
            let processes = try (0..<count).map { i in
                try spawnWorker(index: i, endpoint: coordinator.advertised, threads: threadCount, folder: folder,
                                environmentServer: cfg.environmentServer, gymnasium: cfg.family.usesEnvironmentServers)
            }
            logger.info("started \(count) worker process(es) with \(threadCount) thread(s) each; logs in \(folder)/worker-*.log")
            // Stopped by a signal, the coordinator tells its workers the run resumes (they would wait for it):
            // none will come back to these, so they are stopped at once.
            defer { reap(processes, grace: stop.isSet ? 0 : 5) }
            return try coordinator.run()
        }
        print("run \(summary.runID) in \(summary.runDirectory): \(summary.iterations) meta-iterations, params_sha256 \(summary.paramsSHA256)")
        if summary.interrupted || noEval || cfg.evaluation.tasks == 0 { return }
        try userFacing { try printComparison(cfg, theta: summary.theta, folder: folder) }
    }

    func spawnWorker(index: Int, endpoint: String, threads: Int, folder: String,
                     environmentServer: EnvironmentServerPool.Options, gymnasium: Bool) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments = ["worker", "--connect", endpoint, "--threads", "\(threads)", "--log-level", logging.logLevel,
                       "--compute", compute.rawValue]
            + (gymnasium ? EnvironmentServerOptions.arguments(environmentServer) : [])
        let log = (folder as NSString).appendingPathComponent("worker-\(index).log")
        guard FileManager.default.createFile(atPath: log, contents: nil), let handle = FileHandle(forWritingAtPath: log) else {
            throw ClusterError.aborted("cannot create the worker log \(log): is the run folder writable?")
        }
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    /// Workers leave by themselves on a finished run's goodbye; any still running after `grace` seconds get SIGTERM.
    func reap(_ processes: [Process], grace: Double) {
        let deadline = Date().addingTimeInterval(grace)
        while processes.contains(where: \.isRunning) && Date() < deadline { usleep(50_000) }
        for p in processes where p.isRunning { p.terminate() }
        for p in processes { p.waitUntilExit() }
    }

    func printComparison(_ cfg: ClusterConfig, theta: ParameterVector, folder: String) throws {
        let plan = cfg.evaluationPlan(every: cfg.evaluation.budget)
        print("\nAdaptation on \(plan.tasks) held-out \(cfg.family.kindName) tasks, \(plan.budget) DQN steps each (same settings, seeds and tasks for both); greedy return, mean ± 95% CI:")
        let report = try runMetaEvaluation(plan: plan, inits: [("meta θ", theta), ("random init", try cfg.initialParameters())],
                                           threads: ProcessInfo.processInfo.activeProcessorCount)
        print(report.table())
        print("\nFull comparison (multi-task pretrained and nearest-task inits, curves, plot): metatrain eval --checkpoint \(folder)")
    }
}
