import ArgumentParser
import Cluster
import DQN
import Environments
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// `metatrain eval`: does meta θ adapt faster than the alternatives? Adaptation curves on held-out tasks.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adapt meta θ, a random init, a multi-task pretrained init and the nearest-task init on held-out tasks; print mean ± 95% CI of the greedy return every K steps and write CSV, SVG and JSON into the run folder.")

    @Option(help: "A checkpoint file (runs/NAME/checkpoints/ckpt-….mtck), or a run folder for its newest valid checkpoint.")
    var checkpoint: String
    @Option(help: "The run's cluster.yaml (default: config.yaml in the checkpoint's run folder, which the coordinator writes).")
    var config: String?
    @Option(help: "Held-out tasks (drawn from a seed stream no training slot uses).") var tasks = 20
    @Option(help: "Env steps of adaptation per task and init (default: evaluation.budget of the config).") var budget: Int?
    @Option(help: "Env steps between scored points; must divide the budget (default: its largest divisor ≤ budget / 10).") var every: Int?
    @Option(help: "Greedy episodes averaged at each point.") var episodes = 5
    @Option(help: "Comma-separated inits: meta, random, multitask, nearest.") var inits = "meta,random,multitask,nearest"
    @Option(help: "Embedding distance for the nearest-task init: euclidean, cosine, or learned (contrastive, fitted on the library).") var metric = "euclidean"
    @Option(help: "Training tasks in the nearest-task library (the run's last ones).") var library = 32
    @Option(help: "Steps adapted from θ before the nearest-task init embeds the task (default: every); they count against the budget.") var probeSteps: Int?
    @Option(help: "Env steps of multi-task pretraining (default: the env steps the meta-training run used).") var multitaskSteps: Int?
    @Option(help: "The return that counts as solved (default: evaluation.target_return, else the family's).") var target: Double?
    @Option(help: "Threads adapting in parallel (the results do not depend on it).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Override inner_loop.start_epsilon for every init's adaptation (all inits still share one setting).") var startEpsilon: Float?
    @Option(help: "Folder for eval-*.csv/.svg/.json (default: the run folder).") var out: String?
    @Option(help: "Run the adaptations on the workers of the coordinator at this endpoint (tcp://HOST:PORT; start it with `metatrain coordinator --serve` to keep it up after training). Default: on this machine's threads.") var coordinator: String?
    @Option(help: "With --coordinator: give up when the coordinator has not answered for this many seconds (shorter outages, e.g. a restart, are ridden out).") var coordinatorTimeout = 60.0
    @OptionGroup var curve: CurveClientOptions
    @Flag(help: "Use the config even if its hash differs from the checkpoint's.") var forceConfig = false
    @Flag(help: "Print only the JSON object.") var json = false
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        // A `numerics: portable` run is evaluated on the portable kernel, as its workers would compute it.
        let portable = try userFacing { try loadCheckpoint().0.numerics?.policy == .portable }
        try GEMMBackend.$current.withValue(portable ? .portable : .selected) { try evaluate() }
    }

    func evaluate() throws {
        try userFacing {
            let (record, checkpointPath, runFolder) = try loadCheckpoint()
            let configPath = config ?? (runFolder as NSString).appendingPathComponent("config.yaml")
            guard FileManager.default.fileExists(atPath: configPath) else {
                throw ValidationError("no configuration at \(configPath): pass the run's cluster.yaml with --config")
            }
            let cfg = try loadConfig(configPath)
            if cfg.hash != record.configHash && !forceConfig {
                throw ValidationError("\(configPath) is not the configuration \(checkpointPath) was trained with (config hash \(cfg.hash.prefix(12))… vs \(record.configHash.prefix(12))…); pass the right --config, or --force-config")
            }
            let plan = try makePlan(cfg)
            let names = inits.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let known = ["meta", "random", "multitask", "nearest"]
            guard !names.isEmpty, let bad = Optional(names.filter { !known.contains($0) }), bad.isEmpty else {
                throw ValidationError("--inits takes a comma-separated subset of \(known.joined(separator: ", "))")
            }
            guard let embeddingMetric = EmbeddingMetric(rawValue: metric) else {
                throw ValidationError("--metric must be euclidean, cosine or learned")
            }
            // Every option is checked before the first (possibly long) pretraining starts.
            let probe = probeSteps ?? plan.every
            if names.contains("nearest") && !(probe >= plan.every && probe < plan.budget && probe % plan.every == 0) {
                throw ValidationError("--probe-steps (\(probe)) must be a multiple of --every (\(plan.every)) below the budget (\(plan.budget))")
            }
            guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be in 1...1024") }
            if let multitaskSteps, multitaskSteps < 1 { throw ValidationError("--multitask-steps must be ≥ 1") }
            guard library >= 1 else { throw ValidationError("--library must be ≥ 1") }
            let runner = try makeRunner()
            let where_ = coordinator.map { "the workers of \($0)" } ?? "\(threads) thread(s)"
            let theta = record.state.theta
            let theta0 = try Coordinator.initialParameters(cfg)
            let iterations = record.state.iteration
            var chosen: [(String, ParameterVector)] = []
            var notes: [(String, String)] = [("checkpoint", jsonString(checkpointPath)), ("iteration", "\(iterations)"),
                                             ("algorithm", jsonString(record.algorithm.rawValue)),
                                             ("start_epsilon", "\(plan.dqn.startEpsilon)")]
            for name in names where name != "nearest" {
                switch name {
                case "meta": chosen.append(("meta", theta))
                case "random": chosen.append(("random", theta0))
                default:
                    let perSlot = cfg.innerLoop.budget + (cfg.meta.algorithm == .reptile ? 0 : cfg.innerLoop.querySteps)
                    let steps = multitaskSteps ?? max(iterations * cfg.meta.metaBatch * perSlot, 1)
                    // One serial DQN run: no worker would finish it sooner, so it runs here.
                    progress("multi-task pretraining from θ₀ on this machine: \(steps) env steps on tasks drawn from the family")
                    let start = Date()
                    let pretrained = try multiTaskPretrain(initial: theta0, family: cfg.family, steps: steps,
                                                           runSeed: cfg.run.seed, config: cfg.innerLoop.dqn)
                    chosen.append(("multitask", pretrained.parameters))
                    progress(String(format: "  done in %.1f s; kept the snapshot at step %d (mean greedy return %.1f on 5 training-distribution tasks)",
                                    Date().timeIntervalSince(start), pretrained.step, pretrained.validationReturn))
                    notes.append(("multitask_kept_step", "\(pretrained.step)"))
                    notes.append(("multitask_steps", "\(steps)"))
                }
            }
            var nearest: NearestTaskSetup?
            if names.contains("nearest") {
                let tasks = try libraryTasks(cfg, iterations: iterations)
                progress("nearest-task library: adapting θ to \(tasks.count) training tasks (\(cfg.innerLoop.budget) steps each) on \(where_)")
                var lib = try TaskLibrary(theta: theta, tasks: tasks, settings: cfg.innerLoop,
                                          probes: try ProbeStates(family: cfg.family, runSeed: cfg.run.seed), runner: runner)
                lib.learnMetric(family: cfg.family, seed: deriveSeed(cfg.run.seed, iteration: UInt64.max - 5, slot: 0, purpose: .evaluation))
                if let m = lib.learned {
                    progress(String(format: "  contrastive metric learnt on the library's pairs: loss %.3f → %.3f", m.initialLoss, m.finalLoss))
                    notes.append(("contrastive_loss", "[\(jsonNumber(m.initialLoss)), \(jsonNumber(m.finalLoss))]"))
                } else if embeddingMetric == .learned {
                    progress("  no contrastive metric for \(cfg.family.kindName) (its tasks have no parameters to compare): --metric learned uses Euclidean")
                }
                nearest = NearestTaskSetup(theta: theta, library: lib, metric: embeddingMetric, probeSteps: probe)
                notes += [("metric", jsonString(embeddingMetric.rawValue)), ("library", "\(tasks.count)"), ("probe_steps", "\(probe)")]
            }
            progress("adapting \(chosen.count + (nearest == nil ? 0 : 1)) init(s) on \(plan.tasks) held-out \(cfg.family.kindName) tasks, \(plan.budget) steps each, scored every \(plan.every) on \(plan.episodes) greedy episodes, on \(where_)")
            let report = try runMetaEvaluation(plan: plan, inits: chosen, nearest: nearest, runner: runner)
            let folder = out ?? runFolder
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let stem = (folder as NSString).appendingPathComponent(String(format: "eval-iter%06d", iterations))
            let object = report.json(extra: notes)
            try Data(report.summaryCSV().utf8).write(to: URL(fileURLWithPath: stem + ".csv"))
            try Data(report.tasksCSV().utf8).write(to: URL(fileURLWithPath: stem + "-tasks.csv"))
            try Data(report.svg(title: "\(cfg.run.name): \(record.algorithm.rawValue), \(cfg.family.kindName), iteration \(iterations)").utf8)
                .write(to: URL(fileURLWithPath: stem + ".svg"))
            try Data((object + "\n").utf8).write(to: URL(fileURLWithPath: stem + ".json"))
            try Data((report.table() + "\n").utf8).write(to: URL(fileURLWithPath: stem + ".md"))
            if json {
                print(object)
            } else {
                print(report.table())
                if let r = report.retrieval {
                    print(String(format: "\nnearest-task retrieval, mean normalised task-parameter distance to the picked library task: euclidean %.3f, cosine %.3f, learned %.3f, oracle %.3f, random pick %.3f",
                                 r.byMetric[.euclidean] ?? 0, r.byMetric[.cosine] ?? 0, r.byMetric[.learned] ?? 0, r.oracle, r.random))
                }
                print(String(format: "\n%.1f s; wrote %@.csv, %@-tasks.csv, %@.svg, %@.json, %@.md", report.seconds, stem, stem, stem, stem, stem))
            }
        }
    }

    /// This machine's threads, or the cluster's workers through the coordinator.
    func makeRunner() throws -> AdaptationRunner {
        guard let coordinator else {
            if curve.given { throw ValidationError("--server-key and --key need --coordinator") }
            return LocalAdaptationRunner(threads: threads)
        }
        try checkEndpoint(coordinator, option: "--coordinator")
        var options = ClusterAdaptationRunner.Options(endpoint: coordinator)
        guard coordinatorTimeout > 0 && coordinatorTimeout <= 86_400 else { throw ValidationError("--coordinator-timeout must be in (0, 86400] seconds") }
        options.unreachableTimeoutMs = Int(coordinatorTimeout * 1000)
        options.curve = try curve.load()
        let stop = StopFlag()
        stop.installSignalHandlers()
        let logger = try logging.bootstrap(label: "metatrain.eval")
        return ClusterAdaptationRunner(options: options, context: try ZMQContext(), stop: stop, logger: logger)
    }

    func progress(_ text: String) {
        FileHandle.standardError.write(Data("eval: \(text)\n".utf8))
    }

    /// The checkpoint record, its path and its run folder (the checkpoints folder's parent).
    func loadCheckpoint() throws -> (CheckpointRecord, String, String) {
        try loadCheckpointOrRun(checkpoint, report: progress)
    }

    func makePlan(_ cfg: ClusterConfig) throws -> EvaluationPlan {
        let b = budget ?? cfg.evaluation.budget
        // Default: the largest divisor of the budget that is at most a tenth of it (≥ 11 points).
        let k = every ?? (stride(from: max(b / 10, 1), through: 1, by: -1).first { b % $0 == 0 } ?? 1)
        var plan = cfg.evaluationPlan(tasks: tasks, budget: b, every: k, episodes: episodes)
        if let target { plan.targetReturn = target }
        if let startEpsilon { plan.dqn.startEpsilon = startEpsilon }
        do { try plan.validate() } catch { throw ValidationError("\(error)") }
        return plan
    }

    /// The run's last `library` training tasks with their slot seeds, newest first.
    func libraryTasks(_ cfg: ClusterConfig, iterations: Int) throws -> [(TaskSpec, UInt64)] {
        var tasks: [(TaskSpec, UInt64)] = []
        var iteration = max(iterations, 1) - 1
        while tasks.count < library && iteration >= 0 {
            for slot in 0..<cfg.meta.metaBatch where tasks.count < library {
                tasks.append((try Coordinator.task(cfg, iteration: iteration, slot: slot),
                              slotSeed(runSeed: cfg.run.seed, iteration: iteration, slot: slot)))
            }
            iteration -= 1
        }
        return tasks
    }
}
