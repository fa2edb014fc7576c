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
    @Option(help: "Env steps between scored points; must divide the budget (default: 50 when it divides the budget into at most 200 points, else the budget's largest divisor ≤ budget / 10).") var every: Int?
    @Option(help: "Greedy episodes averaged at each point.") var episodes = 5
    @Option(help: "Comma-separated inits: meta, random, multitask, multitask-head (the multi-task network with its output layer re-initialised from θ₀: its features, not its one policy), multitask-fastest (the multi-task snapshot that adapts fastest on --snapshot-tasks validation tasks; needs a target), nearest.") var inits = "meta,random,multitask,nearest"
    @Option(help: "Embedding distance for the nearest-task init: euclidean, cosine, or learned (contrastive, fitted on the library).") var metric = "euclidean"
    @Option(help: "Training tasks in the nearest-task library (the run's last ones).") var library = 32
    @Option(help: "Validation tasks on which multitask-fastest scores each multi-task snapshot's adaptation.") var snapshotTasks = 10
    @Option(help: "Steps adapted from θ before the nearest-task init embeds the task (default: every); they count against the budget.") var probeSteps: Int?
    @Option(help: "Env steps of multi-task pretraining (default: the env steps the meta-training run used).") var multitaskSteps: Int?
    @Option(help: "The return that counts as solved (default: evaluation.target_return, else the family's).") var target: Double?
    @Option(help: "Threads adapting in parallel (the results do not depend on it).") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Override inner_loop.start_epsilon at adaptation: one value for every init (0.2), or per init (meta=0.1,random=1); inits not named keep the config's.") var startEpsilon: String?
    @Option(help: "Override inner_loop.learning_starts at adaptation, for every init or per init (as --start-epsilon).") var learningStarts: String?
    @Option(help: "Override inner_loop.exploration_fraction at adaptation, for every init or per init (as --start-epsilon).") var explorationFraction: String?
    @Option(help: "Override inner_loop.end_epsilon at adaptation, for every init or per init (as --start-epsilon).") var endEpsilon: String?
    @Option(help: "Override inner_loop.learning_rate at adaptation, for every init or per init (as --start-epsilon).") var learningRate: String?
    @Option(help: "Override inner_loop.target_update_interval at adaptation, for every init or per init (as --start-epsilon).") var targetUpdateInterval: String?
    @Option(help: "Override inner_loop.gamma at adaptation, for every init or per init (as --start-epsilon).") var gamma: String?
    @Option(help: "Override inner_loop.ez_max_repeat at adaptation (ε-z-greedy's longest repeat; 0: plain ε-greedy), for every init or per init (as --start-epsilon).") var ezMaxRepeat: String?
    @Option(help: "With --split validation: adapt every init with every point of this grid of adaptation settings and keep each init's best (lowest median steps to the target; ties: more tasks reaching it, then the smaller learning rate), e.g. \"learning_rate=3e-4,1e-3 start_epsilon=1,0.5 ez_max_repeat=0,16\". The grid, every point's score and the choice go into the JSON, and the chosen protocol is printed as eval arguments.")
    var tune: String?
    @Option(help: "With --tune: first screen every grid point on this many of the tasks, and tune only the best --tune-keep points of each init on all of them (0: no screening round).") var tuneScreen = 0
    @Option(help: "With --tune-screen: the points of each init kept for the full round.") var tuneKeep = 8
    @Option(help: "Override inner_loop.optimizer at adaptation for every init (adam or sgd): e.g. to adapt an init meta-trained through SGD inner loops (second-order MAML) as the family's protocol adapts.") var optimizer: String?
    @Option(help: "Which tasks: test (held-out; score each configuration once) or validation (a separate stream to tune adaptation settings on).") var split = "test"
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
            let configPath = config ?? RunFolder(runFolder).config
            guard FileManager.default.fileExists(atPath: configPath) else {
                throw ValidationError("no configuration at \(configPath): pass the run's cluster.yaml with --config")
            }
            let cfg = try loadConfig(configPath)
            if cfg.hash != record.configHash && !forceConfig {
                throw ValidationError("\(configPath) is not the configuration \(checkpointPath) was trained with (config hash \(cfg.hash.prefix(12))… vs \(record.configHash.prefix(12))…); pass the right --config, or --force-config")
            }
            var plan = try makePlan(cfg)
            let names = inits.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let known = ["meta", "random", "multitask", "multitask-head", "multitask-fastest", "nearest"]
            guard !names.isEmpty, let bad = Optional(names.filter { !known.contains($0) }), bad.isEmpty else {
                throw ValidationError("--inits takes a comma-separated subset of \(known.joined(separator: ", "))")
            }
            let grid = try tune.map { text in
                guard plan.split == .validation else { throw ValidationError("--tune tunes on validation tasks only: add --split validation (then score the chosen protocol on test tasks once)") }
                guard !names.contains("nearest") else { throw ValidationError("--tune does not tune the nearest-task init: leave it out of --inits") }
                guard plan.targetReturn != nil else { throw ValidationError("--tune ranks by steps to the target: give --target") }
                guard tuneScreen >= 0 && tuneKeep >= 1 else { throw ValidationError("--tune-screen must be ≥ 0 and --tune-keep ≥ 1") }
                do { return try AdaptationGrid(parsing: text) } catch { throw ValidationError("\(error)") }
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
            if names.contains("multitask-fastest") {
                guard snapshotTasks >= 1 && snapshotTasks <= 1000 else { throw ValidationError("--snapshot-tasks must be in 1...1000") }
                guard plan.targetReturn != nil else { throw ValidationError("multitask-fastest ranks snapshots by steps to the target: give --target") }
            }
            let runner = try makeRunner()
            let where_ = coordinator.map { "the workers of \($0)" } ?? "\(threads) thread(s)"
            let theta = record.state.theta
            let theta0 = try cfg.initialParameters()
            let iterations = record.state.iteration
            var chosen: [(String, ParameterVector)] = []
            var notes: [(String, String)] = [("checkpoint", jsonString(checkpointPath)), ("iteration", "\(iterations)"),
                                             ("algorithm", jsonString(record.algorithm.rawValue)),
                                             ("run_seed", "\(cfg.run.seed)"),
                                             // What the numbers were computed with (tables must say; bits differ by kernel class).
                                             ("kernel", jsonString(GEMMBackend.current.rawValue)), ("cpu", jsonString(Numerics.cpuModel)),
                                             ("start_epsilon", "\(plan.dqn.startEpsilon)")]
            // The multi-task network, pretrained (or read from the run folder's cache) once for both inits built on it.
            var pretrained: (parameters: ParameterVector, step: Int, validationReturn: Double)?
            var snapshots: [(Int, ParameterVector)] = []
            if names.contains("multitask") || names.contains("multitask-head") || names.contains("multitask-fastest") {
                let perSlot = cfg.innerLoop.trainingStepsPerSlot(cfg.meta.algorithm)
                let steps = multitaskSteps ?? max(iterations * cfg.meta.metaBatch * perSlot, 1)
                // Deterministic in (config, steps, kernel class): a run folder keeps it, so re-evaluating (another
                // split, other adaptation settings) does not pretrain again.
                let cache = MultitaskCache(folder: runFolder, configHash: cfg.hash, steps: steps,
                                           fingerprint: try NumericsFingerprint.compute(kernel: GEMMBackend.current).hash)
                if let cached = cache.load(count: theta0.count), !names.contains("multitask-fastest") || !cached.snapshots.isEmpty {
                    pretrained = cached.kept
                    snapshots = cached.snapshots
                    progress("multi-task pretraining: reusing \(cache.path) (\(steps) env steps; kept step \(cached.kept.step))")
                } else {
                    // One serial DQN run: no worker would finish it sooner, so it runs here.
                    progress("multi-task pretraining from θ₀ on this machine: \(steps) env steps on tasks drawn from the family")
                    let start = Date()
                    // Pretraining uses the run's own inner-loop settings; only its adaptation may differ.
                    let run = try multiTaskPretrain(initial: theta0, family: cfg.family, steps: steps,
                                                    runSeed: cfg.run.seed, config: cfg.innerLoop.dqn,
                                                    snapshotsOut: { snapshots.append($0) })
                    pretrained = run
                    progress(String(format: "  done in %.1f s; kept the snapshot at step %d (mean greedy return %.1f on 5 training-distribution tasks)",
                                    Date().timeIntervalSince(start), run.step, run.validationReturn))
                    do { try cache.store(run, snapshots: snapshots) } catch { progress("  could not keep it in \(cache.path): \(error)") }
                }
                notes.append(("multitask_kept_step", "\(pretrained!.step)"))
                notes.append(("multitask_steps", "\(steps)"))
            }
            for name in names where name != "nearest" {
                switch name {
                case "meta": chosen.append(("meta", theta))
                case "random": chosen.append(("random", theta0))
                case "multitask": chosen.append(("multitask", pretrained!.parameters))
                case "multitask-fastest":
                    let (fastest, json) = try fastestSnapshot(snapshots, plan: plan, runner: runner)
                    chosen.append(("multitask-fastest", fastest))
                    notes.append(("multitask_fastest", json))
                default:
                    // multitask-head: the pretrained features under θ₀'s output layer, a baseline that keeps what the
                    // family's tasks share without the one policy a mixture of them learns (issue 36).
                    var head = pretrained!.parameters
                    let layer = try cfg.outputLayer()
                    head.values.replaceSubrange(layer, with: theta0.values[layer])
                    chosen.append(("multitask-head", head))
                }
            }
            var nearest: NearestTaskSetup?
            if names.contains("nearest") {
                let tasks = try libraryTasks(cfg, iterations: iterations)
                progress("nearest-task library: adapting θ to \(tasks.count) training tasks (\(cfg.innerLoop.budget) steps each) on \(where_)")
                var lib = try TaskLibrary(theta: theta, tasks: tasks, settings: cfg.innerLoop,
                                          probes: try ProbeStates(family: cfg.family, runSeed: cfg.run.seed,
                                                                         contextWindow: cfg.innerLoop.dqn.contextWindow), runner: runner)
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
            if let grid {
                let (tuned, json) = try tuneProtocols(grid, plan: plan, inits: chosen, runner: runner)
                plan = tuned
                notes.append(("tuning", json))
            }
            notes.append(("adaptation", adaptationJSON(plan, names: names)))
            progress("adapting \(chosen.count + (nearest == nil ? 0 : 1)) init(s) on \(plan.tasks) \(plan.split == .validation ? "validation" : "held-out") \(cfg.family.kindName) tasks, \(plan.budget) steps each, scored every \(plan.every) on \(plan.episodes) greedy episodes, on \(where_)")
            let report = try runMetaEvaluation(plan: plan, inits: chosen, nearest: nearest, runner: runner)
            let folder = out ?? runFolder
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let stem = RunFolder(folder).evaluationStem(iteration: iterations, split: plan.split == .test ? nil : plan.split.rawValue)
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

    /// The multi-task snapshot that adapts fastest: each adapted with multitask-fastest's protocol on
    /// `snapshotTasks` validation tasks (never test tasks), the lowest median steps to the target winning (ties: the
    /// later snapshot, which has seen more data). Why: the kept multi-task network is the best *greedy* one, which is
    /// not the best *starting point* when a mixture's one policy is wrong for half the tasks (issue 36).
    func fastestSnapshot(_ snapshots: [(Int, ParameterVector)], plan: EvaluationPlan, runner: AdaptationRunner) throws -> (ParameterVector, String) {
        guard !snapshots.isEmpty else { throw ValidationError("no multi-task snapshots to choose from") }
        var selection = plan
        selection.split = .validation
        selection.tasks = snapshotTasks
        let inits = snapshots.map { ("multitask-fastest@\($0.0)", $0.1) }
        for (name, _) in inits { selection.initSettings[name] = plan.dqn(for: "multitask-fastest") }
        progress("multitask-fastest: adapting \(snapshots.count) multi-task snapshots on \(snapshotTasks) validation tasks")
        let report = try runMetaEvaluation(plan: selection, inits: inits, runner: runner)
        let scores = snapshots.indices.map { AdaptationGrid.Score(point: $0, steps: report.stepsToTarget($0), censoredAt: plan.budget + plan.every) }
        let best = scores.min { a, b in
            a.medianSteps != b.medianSteps ? a.medianSteps < b.medianSteps
                : a.reached != b.reached ? a.reached > b.reached : a.point > b.point
        }!
        progress(String(format: "  chose the snapshot at step %d: median %.0f steps, %d/%d reaching the target", snapshots[best.point].0,
                        best.medianSteps, best.reached, best.tasks))
        let json = "{\"validation_tasks\": \(snapshotTasks), \"chosen_step\": \(snapshots[best.point].0), \"snapshots\": ["
            + scores.map { "{\"step\": \(snapshots[$0.point].0), \"median_steps\": \(jsonNumber($0.medianSteps)), \"reached\": \($0.reached)}" }.joined(separator: ", ") + "]}"
        return (snapshots[best.point].1, json)
    }

    /// Each init's best point of `grid` on the plan's (validation) tasks: the plan with those settings, and the tuning
    /// as a JSON object (the grid, each round's scores best first, the choice, and the choice as eval arguments).
    func tuneProtocols(_ grid: AdaptationGrid, plan: EvaluationPlan, inits: [(String, ParameterVector)],
                       runner: AdaptationRunner) throws -> (EvaluationPlan, String) {
        let points = grid.points
        var candidates = Dictionary(uniqueKeysWithValues: inits.map { ($0.0, Array(points.indices)) })
        let rounds = tuneScreen > 0 && tuneScreen < plan.tasks ? [tuneScreen, plan.tasks] : [plan.tasks]
        var roundsJSON: [String] = []
        var best: [String: Int] = [:]
        for (r, tasks) in rounds.enumerated() {
            var p = plan
            p.tasks = tasks
            var jobs: [(key: String, name: String, point: Int, theta: ParameterVector)] = []
            for (name, theta) in inits {
                for k in candidates[name]! {
                    let key = "\(name)#\(k)"
                    do { p.initSettings[key] = try grid.apply(points[k], to: plan.dqn(for: name)) } catch { throw ValidationError("\(error)") }
                    jobs.append((key, name, k, theta))
                }
            }
            progress("tuning round \(r + 1) of \(rounds.count): \(jobs.count) (init, setting) pairs on \(tasks) validation tasks, \(plan.budget) steps each")
            let report = try runMetaEvaluation(plan: p, inits: jobs.map { ($0.key, $0.theta) }, runner: runner)
            var scores: [String: [AdaptationGrid.Score]] = [:]
            for (i, job) in jobs.enumerated() {
                scores[job.name, default: []].append(AdaptationGrid.Score(point: job.point, steps: report.stepsToTarget(i),
                                                                          censoredAt: plan.budget + plan.every))
            }
            var initsJSON: [String] = []
            for (name, _) in inits {
                let ranked = grid.ranked(scores[name] ?? [])
                best[name] = ranked.first?.point
                if r + 1 < rounds.count { candidates[name] = Array(ranked.prefix(tuneKeep).map(\.point)) }
                progress(String(format: "  %@: best %@, median %.0f steps, %d/%d reaching the target", name,
                                grid.describe(points[ranked[0].point]), ranked[0].medianSteps, ranked[0].reached, ranked[0].tasks))
                initsJSON.append("\(jsonString(name)): [" + ranked.map {
                    "{\"setting\": \(grid.describe(points[$0.point])), \"median_steps\": \(jsonNumber($0.medianSteps)), \"reached\": \($0.reached), \"tasks\": \($0.tasks)}"
                }.joined(separator: ", ") + "]")
            }
            roundsJSON.append("{\"tasks\": \(tasks), \"inits\": {" + initsJSON.joined(separator: ", ") + "}}")
        }
        var tuned = plan
        for (name, _) in inits { tuned.initSettings[name] = try grid.apply(points[best[name]!], to: plan.dqn(for: name)) }
        // The choice as `metatrain eval` arguments (a FAMILY.eval protocol file's lines).
        let arguments = grid.axes.enumerated().map { a, axis in
            "--\(axis.key.replacingOccurrences(of: "_", with: "-")) " + inits.map { "\($0.0)=\(AdaptationGrid.compact(points[best[$0.0]!][a]))" }.joined(separator: ",")
        }
        progress("tuned protocol (eval arguments):\n" + arguments.joined(separator: "\n"))
        let chosen = "{" + inits.map { "\(jsonString($0.0)): \(grid.describe(points[best[$0.0]!]))" }.joined(separator: ", ") + "}"
        let json = "{\"grid\": \(grid.json), \"screen_tasks\": \(rounds.count > 1 ? tuneScreen : 0), \"keep\": \(rounds.count > 1 ? tuneKeep : points.count), "
            + "\"rounds\": [" + roundsJSON.joined(separator: ", ") + "], \"chosen\": \(chosen), "
            + "\"arguments\": [" + arguments.map(jsonString).joined(separator: ", ") + "]}"
        return (tuned, json)
    }

    /// This machine's threads, or the cluster's workers through the coordinator.
    func makeRunner() throws -> AdaptationRunner {
        guard let coordinator else {
            if curve.given { throw ValidationError("--server-key and --key need --coordinator") }
            return LocalAdaptationRunner(threads: threads, progress: Self.progressLine)
        }
        try checkEndpoint(coordinator, option: "--coordinator")
        var options = ClusterAdaptationRunner.Options(endpoint: coordinator)
        guard coordinatorTimeout > 0 && coordinatorTimeout <= 86_400 else { throw ValidationError("--coordinator-timeout must be in (0, 86400] seconds") }
        options.unreachableTimeoutMs = Int(coordinatorTimeout * 1000)
        options.curve = try curve.load()
        let stop = StopFlag()
        stop.installSignalHandlers()
        let logger = try logging.bootstrap(label: "metatrain.eval")
        let runner = ClusterAdaptationRunner(options: options, context: try ZMQContext(), stop: stop, logger: logger)
        runner.progress = Self.progressLine
        return runner
    }

    func progress(_ text: String) { Self.progressLine(text) }

    /// A progress line on stderr (stdout keeps the table or the JSON object).
    static let progressLine: @Sendable (String) -> Void = { text in
        FileHandle.standardError.write(Data("eval: \(text)\n".utf8))
    }

    /// The checkpoint record, its path and its run folder (the checkpoints folder's parent).
    func loadCheckpoint() throws -> (CheckpointRecord, String, String) {
        try loadCheckpointOrRun(checkpoint, report: progress)
    }

    func makePlan(_ cfg: ClusterConfig) throws -> EvaluationPlan {
        let b = budget ?? cfg.evaluation.budget
        // Default: every 50 steps where that is at most 200 points (steps to the target read at a grain of 50, not of a
        // tenth of the budget: a coarse grid ties inits and makes intervals artefacts of it, issue 36); else the largest
        // divisor of the budget that is at most a tenth of it (≥ 11 points), so long budgets are not scored thousands
        // of times.
        let k = every ?? (b % 50 == 0 && b / 50 <= 200 ? 50 : (stride(from: max(b / 10, 1), through: 1, by: -1).first { b % $0 == 0 } ?? 1))
        var plan = cfg.evaluationPlan(tasks: tasks, budget: b, every: k, episodes: episodes)
        if let target { plan.targetReturn = target }
        guard let split = TaskSplit(rawValue: split) else { throw ValidationError("--split must be test or validation") }
        plan.split = split
        let names = ["meta", "random", "multitask", "multitask-head", "multitask-fastest", "nearest"]
        // Each adaptation option and what it sets; `plan.validate()` below checks the values' ranges.
        let options: [(String, String?, (inout DQNConfig, Double) -> Void)] = [
            ("--start-epsilon", startEpsilon, { $0.startEpsilon = Float($1) }),
            ("--end-epsilon", endEpsilon, { $0.endEpsilon = Float($1) }),
            ("--exploration-fraction", explorationFraction, { $0.explorationFraction = Float($1) }),
            ("--learning-rate", learningRate, { $0.learningRate = Float($1) }),
            ("--learning-starts", learningStarts, { $0.learningStarts = Int($1) }),
            ("--target-update-interval", targetUpdateInterval, { $0.targetUpdateInterval = Int($1) }),
            ("--gamma", gamma, { $0.gamma = Float($1) }),
            ("--ez-max-repeat", ezMaxRepeat, { $0.ezMaxRepeat = $1 == 0 ? nil : Int($1) }),
        ]
        for (option, text, set) in options {
            guard let text else { continue }
            for (name, value) in try perInitValues(text, option: option, names: names) {
                if option == "--learning-starts" || option == "--target-update-interval" || option == "--ez-max-repeat",
                   !(value >= 0 && value <= 1e8 && value == value.rounded()) {
                    throw ValidationError("\(option) takes whole step counts in 0...100000000")
                }
                if let name {
                    var settings = plan.dqn(for: name)
                    set(&settings, value)
                    plan.initSettings[name] = settings
                } else {
                    // An all-inits value comes first, so it also reaches inits that a later INIT=VALUE overrides.
                    set(&plan.dqn, value)
                    for k in Array(plan.initSettings.keys) { set(&plan.initSettings[k]!, value) }
                }
            }
        }
        if let optimizer {
            guard let kind = OptimizerKind(rawValue: optimizer) else { throw ValidationError("--optimizer must be adam or sgd, got '\(optimizer)'") }
            plan.dqn.optimizer = kind
            for k in Array(plan.initSettings.keys) { plan.initSettings[k]!.optimizer = kind }
        }
        do { try plan.validate() } catch { throw ValidationError("\(error)") }
        return plan
    }

    /// Parses "0.2" (every init: name nil) or "meta=0.1,random=1" into (init, value) pairs, all-inits values first.
    func perInitValues(_ text: String, option: String, names: [String]) throws -> [(String?, Double)] {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let pairs: [(String?, Double)] = try items.map { item in
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts.count == 2 ? parts[0] : nil
            guard let value = Double(parts.last ?? ""), value.isFinite else {
                throw ValidationError("\(option): '\(item)' is not a number or INIT=NUMBER")
            }
            if let name, !names.contains(name) {
                throw ValidationError("\(option): '\(name)' is not an init (\(names.joined(separator: ", ")))")
            }
            return (name, value)
        }
        guard !pairs.isEmpty else { throw ValidationError("\(option) needs a value") }
        return pairs.filter { $0.0 == nil } + pairs.filter { $0.0 != nil }
    }

    /// Each init's adaptation settings that can differ between inits, as a JSON object (stated in every report).
    func adaptationJSON(_ plan: EvaluationPlan, names: [String]) -> String {
        "{" + names.map { name in
            let d = plan.dqn(for: name)
            return "\(jsonString(name)): {\"start_epsilon\": \(jsonNumber(Double(d.startEpsilon))), \"end_epsilon\": \(jsonNumber(Double(d.endEpsilon))), "
                + "\"exploration_fraction\": \(jsonNumber(Double(d.explorationFraction))), \"learning_starts\": \(d.learningStarts), \"target_update_interval\": \(d.targetUpdateInterval), "
                + "\"gamma\": \(jsonNumber(Double(d.gamma))), \"ez_max_repeat\": \(d.ezMaxRepeat ?? 0), "
                + "\"learning_rate\": \(jsonNumber(Double(d.learningRate), digits: 6)), \"optimizer\": \(jsonString(d.optimizer.rawValue))}"
        }.joined(separator: ", ") + "}"
    }

    /// The run's last `library` training tasks with their slot seeds, newest first.
    func libraryTasks(_ cfg: ClusterConfig, iterations: Int) throws -> [(TaskSpec, UInt64)] {
        var tasks: [(TaskSpec, UInt64)] = []
        var iteration = max(iterations, 1) - 1
        while tasks.count < library && iteration >= 0 {
            for slot in 0..<cfg.meta.metaBatch where tasks.count < library {
                tasks.append((try cfg.task(iteration: iteration, slot: slot),
                              slotSeed(runSeed: cfg.run.seed, iteration: iteration, slot: slot)))
            }
            iteration -= 1
        }
        return tasks
    }
}

/// The multi-task pretrained init of a run, kept in its folder as JSON (the floats base64, little-endian).
///
/// The file names the configuration hash, the step count and the numerics fingerprint it was computed
/// with; anything else (another config, budget or kernel class, a damaged file) is ignored and pretraining
/// runs again, so a cache can make evaluation faster but never change its result.
struct MultitaskCache {
    let folder: String
    let configHash: String
    let steps: Int
    let fingerprint: String

    var path: String { (folder as NSString).appendingPathComponent("multitask-\(configHash.prefix(12))-\(steps)-\(fingerprint).json") }

    /// The kept network and every scored snapshot (none in a file written before snapshots were kept).
    func load(count: Int) -> (kept: (parameters: ParameterVector, step: Int, validationReturn: Double), snapshots: [(Int, ParameterVector)])? {
        func vector(_ text: Any?) -> ParameterVector? {
            guard let text = text as? String, let bytes = Data(base64Encoded: text), bytes.count == count * 4,
                  let values = [Float].fromLittleEndianBytes(bytes) else { return nil }
            let p = ParameterVector(values)
            return p.isFinite ? p : nil
        }
        guard let data = FileManager.default.contents(atPath: path),
              let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              o["config_hash"] as? String == configHash, o["steps"] as? Int == steps, o["fingerprint"] as? String == fingerprint,
              let step = o["kept_step"] as? Int, let value = o["validation_return"] as? Double,
              let p = vector(o["parameters"]) else { return nil }
        let listed = o["snapshots"] as? [[String: Any]] ?? []
        let snapshots = listed.compactMap { s in (s["step"] as? Int).flatMap { step in vector(s["parameters"]).map { (step, $0) } } }
        return ((p, step, value), snapshots.count == listed.count ? snapshots : [])
    }

    func store(_ kept: (parameters: ParameterVector, step: Int, validationReturn: Double), snapshots: [(Int, ParameterVector)]) throws {
        func base64(_ p: ParameterVector) -> String { Data(p.values.littleEndianBytes).base64EncodedString() }
        let text = "{\"config_hash\": \(jsonString(configHash)), \"steps\": \(steps), \"fingerprint\": \(jsonString(fingerprint)), "
            + "\"kept_step\": \(kept.step), \"validation_return\": \(jsonNumber(kept.validationReturn)), \"parameters\": \"\(base64(kept.parameters))\", "
            + "\"snapshots\": [" + snapshots.map { "{\"step\": \($0.0), \"parameters\": \"\(base64($0.1))\"}" }.joined(separator: ", ") + "]}\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
