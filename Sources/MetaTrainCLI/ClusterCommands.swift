import ArgumentParser
import Cluster
import EnvironmentServer
import Environments
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// Loads cluster.yaml, turning configuration errors into messages the user can act on.
func loadConfig(_ path: String) throws -> ClusterConfig {
    do {
        let config = try ClusterConfig.load(path: path)
        // Gymnasium tasks of this run (θ₀'s shape, divergence checks, eval) run on servers the config describes.
        ExternalEnvironments.install(EnvironmentServerPool(options: config.environmentServer))
        return config
    } catch let error as ConfigError {
        throw ValidationError("\(path): \(error)")
    }
}

/// A checkpoint file, or a run folder's newest valid checkpoint: the record, its path, and the run folder.
func loadCheckpointOrRun(_ path: String, report: (String) -> Void) throws -> (CheckpointRecord, String, String) {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw ValidationError("no checkpoint at \(path)")
    }
    if isDirectory.boolValue {
        let found = try CheckpointStore(runDirectory: path, keepLast: 1).newestValid(settings: nil, configHash: nil)
        for problem in found.skipped { report("skipped checkpoint: \(problem)") }
        return (found.record, found.path, path)
    }
    let record = try CheckpointStore.read(path: path, settings: nil)
    let folder = ((path as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
    return (record, path, folder.isEmpty ? "." : folder)
}

/// Fails with the error's own text (typed cluster errors read as sentences) and exit code 1; a bad value found while
/// running (a ValidationError from the body) exits 64 with its text alone — the usage screen ArgumentParser would add
/// buries the one line that matters (issue 38), and `--help` is there for it.
func userFacing<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ValidationError {
        FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
        throw ExitCode.validationFailure
    } catch let e as ExitCode { throw e } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// The CURVE keys of a peer that connects to a coordinator: a worker, or `eval --coordinator`.
struct CurveClientOptions: ParsableArguments {
    @Option(help: "CURVE: the coordinator's public key file (.pub); needs --key.") var serverKey: String?
    @Option(help: "CURVE: this peer's key pair file (.key, from metatrain keygen), on the coordinator's allow-list.") var key: String?

    var given: Bool { serverKey != nil || key != nil }

    /// The keys, or nil without CURVE.
    func load() throws -> (serverPublicKey: String, keys: CurveKeyPair)? {
        if (serverKey == nil) != (key == nil) { throw ValidationError("--server-key and --key go together") }
        guard let serverKey, let key else { return nil }
        return try userFacing { (try KeyFiles.readPublic(serverKey), try KeyFiles.readPair(key)) }
    }
}

/// Refuses an endpoint a DEALER cannot connect to.
func checkEndpoint(_ endpoint: String, option: String) throws {
    guard endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("ipc://") else {
        throw ValidationError("\(option) must be a tcp:// (or ipc://) endpoint")
    }
}

struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the coordinator of a meta-training run (binds, schedules slots, applies meta-updates, checkpoints).")

    @Option(help: "The cluster configuration.") var config = "cluster.yaml"
    @Option(help: "Resume the run in this folder from its newest checkpoint that verifies.") var resume: String?
    @Option(help: "Resume the run in this folder if it holds checkpoints, else start a new run there: the one command a preempted and requeued job (Slurm, Kubernetes) runs every time. Checkpoints that exist but none verifies are an error, never a silent fresh start.") var resumeOrStart: String?
    @Flag(help: "Resume even if the configuration's hash differs from the checkpoint's.") var forceConfig = false
    @Flag(help: "Resume without holding workers to the checkpoint's numerics fingerprint: the first worker sets it anew (θ may then differ from an uninterrupted run's).") var forceNumerics = false
    @Option(help: "Run folder of a new run (default: run.run_dir/run.name).") var runDir: String?
    @Option(help: "Override coordinator.bind, e.g. tcp://127.0.0.1:* for any free port.") var bind: String?
    @Option(help: "Override meta.iterations.") var iterations: Int?
    @Flag(help: "Stay up after the last meta-iteration (or at once, resuming a finished run) to run `metatrain eval --coordinator` requests on the workers, until SIGINT/SIGTERM.") var serve = false
    @Option(help: "Exit status when a signal stops the run before its last meta-iteration (after the final checkpoint). A batch system that should start it again needs non-zero: a Kubernetes Job counts a pod that exits 0 as done, so deploy/kubernetes passes 75 (EX_TEMPFAIL).") var stoppedExitCode: Int32 = 0
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let logger = try logging.bootstrap(label: "metatrain.coordinator")
        var cfg = try loadConfig(config)
        if let iterations, iterations <= 0 { throw ValidationError("--iterations must be positive") }
        cfg = try userFacing { try cfg.overriding(iterations: iterations) }
        if let bind { cfg.coordinator.bind = bind }
        if resume != nil && resumeOrStart != nil { throw ValidationError("give --resume or --resume-or-start, not both") }
        guard (0...255).contains(stoppedExitCode) else { throw ValidationError("--stopped-exit-code must be in 0...255") }
        let folder = resume ?? resumeOrStart ?? runDir ?? (cfg.run.runDir as NSString).appendingPathComponent(cfg.run.name)
        let resuming = resume != nil || (resumeOrStart != nil && !CheckpointStore(runDirectory: folder, keepLast: 1).files().isEmpty)
        if resumeOrStart != nil { logger.info(resuming ? "\(folder) holds checkpoints: resuming" : "\(folder) holds no checkpoint: starting a new run there") }
        let stop = StopFlag()
        stop.installSignalHandlers()
        let summary = try userFacing {
            let coordinator = try Coordinator(config: cfg, runDirectory: folder, resume: resuming,
                                              forceConfig: forceConfig, serve: serve, forceNumerics: forceNumerics, context: try ZMQContext(), stop: stop, logger: logger)
            return try coordinator.run()
        }
        print("run \(summary.runID): \(summary.iterations) meta-iterations\(summary.interrupted ? " (stopped by signal)" : ""), params_sha256 \(summary.paramsSHA256)")
        if summary.interrupted && summary.iterations < cfg.meta.iterations && stoppedExitCode != 0 {
            throw ExitCode(stoppedExitCode)
        }
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Run a worker: connect to a coordinator and run the slots it assigns.")

    @Option(help: "The coordinator's endpoint, e.g. tcp://10.0.0.5:5555 (or give --connect-file).") var connect: String?
    @Option(help: "A file with the coordinator's endpoint (a run folder's coordinator.endpoint), read again on every reconnect, so a resumed coordinator on a new port is found.") var connectFile: String?
    @Option(help: "Give up, with an error, when no coordinator has ever answered after this many seconds (0: never).") var giveUpAfter = 300
    @Option(help: "Give up, with an error, when the coordinator this worker had is lost and none answers again for this many seconds (0: wait for ever, e.g. through long coordinator restarts).") var giveUpAfterLost = 600
    @Flag(help: "When a run is over, wait (without a time limit) for the next run's coordinator instead of exiting: for a pool of workers that outlives runs, such as a Kubernetes Deployment, which restarts a worker that exits.")
    var waitForNextRun = false
    @Option(help: "Slots to run at once (compute threads).") var threads = 1
    @Option(help: "Heartbeat interval before the coordinator's welcome, in ms.") var heartbeatIntervalMs = 1000
    @Option(help: "Testing: play a machine this many times slower (idle after each slot).") var slowdown = 1.0
    @Option(help: ArgumentHelp("Testing: compute threads hang for good after this many jobs while heartbeats go on.", visibility: .hidden))
    var testHangAfter: Int?
    @Option(help: "What slots compute: train (the inner loop), or none (an instant, valid, meaningless result: measures the coordinator alone, as scripts/capacity.sh does).")
    var compute = SlotCompute.train
    @OptionGroup var curve: CurveClientOptions
    @OptionGroup var environmentServer: EnvironmentServerOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard connect != nil || connectFile != nil else { throw ValidationError("give --connect tcp://HOST:PORT or --connect-file PATH") }
        if let connect { try checkEndpoint(connect, option: "--connect") }
        guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be in 1...1024") }
        guard giveUpAfter >= 0 else { throw ValidationError("--give-up-after must be ≥ 0 seconds") }
        guard giveUpAfterLost >= 0 else { throw ValidationError("--give-up-after-lost must be ≥ 0 seconds") }
    }

    func run() throws {
        let logger = try logging.bootstrap(label: "metatrain.worker")
        let stop = StopFlag()
        stop.installSignalHandlers()
        var numerics = try userFacing { try NumericsReport.measure() }
        let pool = EnvironmentServerPool(options: environmentServer.options)
        // Only a worker told which Python to use (--python or METATRAIN_PYTHON) describes it: starting Python costs a
        // second, which a worker of built-in families need not spend.
        if environmentServer.python != nil || ProcessInfo.processInfo.environment["METATRAIN_PYTHON"] != nil {
            do {
                numerics.environment = try pool.environmentFingerprint()
                logger.info("environment servers: \(numerics.environment) with python '\(pool.options.python)'")
            } catch {
                logger.warning("the environment servers do not start (\(error)): gymnasium tasks will fail on this worker")
            }
        }
        logger.info("numerics: kernel \(numerics.kernel) fingerprint \(numerics.fingerprint), portable kernel \(numerics.portableKernel) fingerprint \(numerics.portableFingerprint); CPU \(numerics.cpu) (\(Numerics.cpuFeatures))")
        if let connect, let why = unresolvableHost(connect) {
            logger.warning("\(why): retrying until it does\(giveUpAfter > 0 ? " or --give-up-after \(giveUpAfter) s passes" : "")")
        }
        var options = Worker.Options(endpoint: connect ?? "", threads: threads, numerics: numerics)
        options.endpointFile = connectFile
        options.giveUpAfterMs = giveUpAfter > 0 ? giveUpAfter * 1000 : nil
        options.giveUpAfterLostMs = giveUpAfterLost > 0 ? giveUpAfterLost * 1000 : nil
        options.waitForNextRun = waitForNextRun
        options.heartbeatIntervalMs = heartbeatIntervalMs
        options.slowdownFactor = max(slowdown, 1)
        options.hangAfterJobs = testHangAfter
        options.compute = compute
        options.recordsCPUTimeline = Self.cpuReportFolder != nil
        if compute == .instant { logger.warning("--compute none: slots return an instant result without training; the run's θ means nothing") }
        options.curve = try curve.load()
        ExternalEnvironments.install(pool)
        do {
            try userFacing {
                let worker = Worker(options: options, context: try ZMQContext(), stop: stop, logger: logger)
                try worker.run()
                writeCPUReport(worker)
            }
        } catch {
            // Refused for good (numerics), or another fatal error: exit without running exit handlers under a
            // compute thread, with a status that says it failed.
            _exit(3)
        }
        // A compute thread may be mid-slot inside OpenBLAS: leave without exit handlers (which free
        // OpenBLAS's buffers under it); the run loop has already flushed the last message.
        _exit(0)
    }
}

extension WorkerCommand {
    /// The folder named by `METATRAIN_WORKER_CPU_DIR` (scripts/capacity.sh sets it for `metatrain local`, whose
    /// workers inherit it); nil when unset.
    static var cpuReportFolder: String? {
        ProcessInfo.processInfo.environment["METATRAIN_WORKER_CPU_DIR"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// With `METATRAIN_WORKER_CPU_DIR` set, writes to DIR/worker-PID.cpu a first line "CPU-SECONDS JOBS" — the CPU
    /// spent from the first job to now — and then one line "MONOTONIC-SECONDS CPU-SECONDS" per sample of the worker's
    /// CPU timeline (every job queued and message sent), so the workers' CPU is measured over exactly the iterations
    /// the coordinator's metrics time, without their start-up, which varies from run to run by as much as the slots.
    func writeCPUReport(_ worker: Worker) {
        guard let dir = Self.cpuReportFolder else { return }
        let (seconds, jobs) = worker.cpuSinceFirstJob()
        let path = (dir as NSString).appendingPathComponent("worker-\(getpid()).cpu")
        let samples = worker.cpuTimeline.map { "\($0.monotonic) \($0.cpu)\n" }.joined()
        do {
            try ("\(seconds) \(jobs)\n" + samples).write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("cannot write the CPU report \(path): \(error)\n".utf8))
        }
    }
}

extension SlotCompute: ExpressibleByArgument {}

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint", abstract: "Inspect checkpoints.", subcommands: [Inspect.self])

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a checkpoint (a file, or a run folder: its newest valid checkpoint).")

        @Argument(help: "A checkpoint file or a run folder.") var path: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let (file, record) = try userFacing { () throws -> (String, CheckpointRecord) in
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
                    throw CheckpointError.io(path: path, reason: "no such file or folder")
                }
                if isFolder.boolValue {
                    let found = try CheckpointStore(runDirectory: path, keepLast: Int.max).newestValid(settings: nil, configHash: nil)
                    for problem in found.skipped { FileHandle.standardError.write(Data("skipped: \(problem)\n".utf8)) }
                    return (found.path, found.record)
                }
                return (path, try CheckpointStore.read(path: path, settings: nil))
            }
            // Numerics: the policy and the fingerprint workers were held to; `reproducible` is false under
            // `numerics: any`, and unknown (null) for checkpoints written before fingerprints existed.
            let numerics = record.numerics
            let reproducible: Any = numerics.map { $0.isReproducible } ?? NSNull()
            let info: [String: Any] = [
                "numerics_policy": numerics?.policy.rawValue ?? "unknown (written before numerics fingerprints)",
                "numerics_fingerprint": numerics?.fingerprint ?? "", "numerics_kernel": numerics?.kernel ?? "",
                "numerics_cpu": numerics?.cpu ?? "", "reproducible": reproducible,
                "path": file, "run_id": record.runID, "iteration": record.state.iteration,
                "algorithm": record.algorithm.rawValue, "config_hash": record.configHash,
                "parameter_count": record.state.theta.count, "params_sha256": parametersSHA256(record.state.theta),
                "meta_optimizer": record.state.optimizer.kind.rawValue, "run_seed": record.runSeed,
                "created_unix_ms": record.createdUnixMs,
                // A pipelined run's θ one version back, what the next slots adapt ("" when not pipelined).
                "previous_params_sha256": record.state.previousTheta.map(parametersSHA256) ?? "",
            ]
            if json {
                let data = try JSONSerialization.data(withJSONObject: info, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                for key in info.keys.sorted() { print("\(key): \(info[key]!)") }
                if numerics?.isReproducible == false {
                    print("NOT REPRODUCIBLE: this run accepted workers whatever their numerics (numerics: any); θ depends on which worker ran which slot")
                }
            }
        }
    }
}

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Write a CURVE key pair: PREFIX.key (private, mode 0600) and PREFIX.pub.")

    @Argument(help: "Path prefix, e.g. keys/coordinator or keys/worker-1.") var prefix: String

    func run() throws {
        let keys = try userFacing { try KeyFiles.generate(prefix: prefix) }
        print("wrote \(prefix).key and \(prefix).pub (public key \(keys.publicKey))")
    }
}

/// How a worker runs gymnasium tasks: its own choice, never the coordinator's (which only names the task).
struct EnvironmentServerOptions: ParsableArguments {
    @Option(help: "The Python that runs environment servers (metatrain_envserver and gymnasium installed; default: METATRAIN_PYTHON, else .build/envserver/venv/bin/python when present, else python3). Given (or METATRAIN_PYTHON set), the worker also reports its versions and a rollout hash, which gymnasium runs under numerics strict or portable require.")
    var python: String?
    @Option(name: .customLong("allow-module"), help: "A module (or package) gymnasium entry points may import; repeatable. Nothing else is imported on a task's behalf.")
    var allowModules: [String] = []
    @Option(name: .customLong("python-path"), help: "A folder put on the servers' PYTHONPATH (a user's environments that are not installed); repeatable.")
    var pythonPath: [String] = []
    @Option(help: "A reset or step slower than this fails its task, and the server is killed and replaced (ms).")
    var envStepTimeoutMs = 10_000

    var options: EnvironmentServerPool.Options {
        var o = EnvironmentServerPool.Options(python: python ?? EnvironmentServerPool.Options.defaultPython,
                                              allowedModules: allowModules, pythonPath: pythonPath)
        o.stepTimeoutMs = max(envStepTimeoutMs, 1)
        return o
    }

    /// The same settings as `metatrain worker` flags (for workers `metatrain local` starts).
    static func arguments(_ o: EnvironmentServerPool.Options) -> [String] {
        ["--python", o.python, "--env-step-timeout-ms", "\(o.stepTimeoutMs)"]
            + o.allowedModules.flatMap { ["--allow-module", $0] } + o.pythonPath.flatMap { ["--python-path", $0] }
    }
}
