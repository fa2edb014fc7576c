import ClusterCore
import Crypto
import DQN
import EnvironmentServer
import Environments
import Foundation
import Wire
import MetaLearning
import NeuralNet
import Yams

/// Everything cluster.yaml says: the run, the coordinator, the workers per host, the meta-algorithm,
/// the task family, the inner loop and the evaluation.
public struct ClusterConfig: Sendable, Equatable {
    public struct Run: Sendable, Equatable {
        public var name = "metatrain"
        public var seed: UInt64 = 1
        /// Parent folder of run directories; a run writes under runDir/name.
        public var runDir = "runs"
        /// Checkpoint every this many meta-iterations (and after the last, and on SIGINT/SIGTERM).
        public var checkpointInterval = 5
        /// Checkpoints kept; older ones are deleted after a newer one is safely written.
        public var keepLast = 3
    }

    /// cluster.yaml's `coordinator:` section (the process is `Coordinator`).
    public struct CoordinatorSettings: Sendable, Equatable {
        public var bind = "tcp://127.0.0.1:5555"
        /// The address workers connect to (what launch.sh passes to `metatrain worker --connect`).
        public var advertise = "tcp://127.0.0.1:5555"
        public var heartbeatIntervalMs = 1000
        /// Heartbeat intervals of silence after which a worker is declared dead.
        public var liveness = 5
        /// ZMQ_MAXMSGSIZE: the largest frame a peer can send the coordinator (libzmq checks frames, not the
        /// sum of a multipart message's frames).
        public var maxMessageBytes = ClusterLimits.maxMessageBytes
        /// ZMQ_RCVHWM of the coordinator's socket: complete messages queued per connection before libzmq stops
        /// reading from it. With max_message_bytes it bounds what complete messages can hold in memory.
        public var receiveHighWaterMark = 64
        /// A slot running longer than this multiple of the median slot time is also given to an idle
        /// worker (a backup task); 0 turns backups off.
        public var backupAfterMedian = 2.0
        /// The longest a worker may hold one slot before it is taken back and run elsewhere, heartbeats or not
        /// (once slots have completed, 4× the median completion time applies below it); nil: derived from the
        /// inner loop's budget (`defaultSlotTimeoutMs`).
        public var slotTimeoutMs: Int?
        /// The same for one eval job.
        public var evalTimeoutMs = 3_600_000
    }

    /// 10 ms per env step of a slot (50–200× what a release build needs) plus a minute: a slot this late is
    /// not slow, it is stuck. (An ES-MAML slot trains twice; its greedy scorings cost less than training does.)
    public var defaultSlotTimeoutMs: Int {
        max(innerLoop.budget + innerLoop.queryPhaseSteps, innerLoop.trainingStepsPerSlot(meta.algorithm)) * 10 + 60_000
    }
    public var slotTimeoutMs: Int { coordinator.slotTimeoutMs ?? defaultSlotTimeoutMs }

    public struct WorkerHost: Sendable, Equatable {
        public var host: String
        public var count: Int
        public var threads: Int
    }

    /// CURVE encryption and the worker allow-list; off unless `curve: true`.
    public struct Security: Sendable, Equatable {
        public var curve = false
        /// The coordinator's key pair (`metatrain keygen`); workers get its .pub file.
        public var coordinatorKey = ""
        /// Public-key files of the workers allowed to join.
        public var allowedWorkers: [String] = []
    }

    public struct Evaluation: Sendable, Equatable {
        /// Held-out tasks the end-of-run summary adapts on.
        public var tasks = 5
        /// Env steps of adaptation per held-out task.
        public var budget = 2_000
        /// Meta-iterations between the coordinator's meta-evaluations of θ during training; 0: none.
        public var interval = 0
        /// The return that counts as solving a task; nil: the family's default (`defaultTargetReturn`).
        public var targetReturn: Double?
    }

    public var run = Run()
    public var coordinator = CoordinatorSettings()
    public var workers: [WorkerHost] = [WorkerHost(host: "localhost", count: 2, threads: 1)]
    public var meta = MetaSettings()
    public var family: TaskFamily = .cartPole(TaskFamily.CartPoleRanges())
    public var innerLoop = InnerLoopSettings()
    public var evaluation = Evaluation()
    public var security = Security()
    /// How the run treats workers whose numerics fingerprints differ (strict: refuse them; portable: every
    /// worker on its portable kernel; any: accept and mark the run not reproducible).
    public var numerics: NumericsPolicy = .strict
    /// How this process runs gymnasium tasks (`environment_server`): the interpreter, the modules entry points may
    /// import, time limits; relative paths are relative to the working directory, as on a command line. The
    /// coordinator and `metatrain local`'s workers use it; a remote worker takes its own flags.
    public var environmentServer = EnvironmentServerPool.Options(python: EnvironmentServerPool.Options.defaultPython)
    /// The YAML this configuration was parsed from (empty when built in code); the coordinator copies
    /// it into the run folder so `metatrain eval` can find the run's settings next to its checkpoints.
    public var sourceText = ""

    public init() {}

    /// SHA-256 over what determines the meta-parameter trajectory: seed, meta settings, family, inner loop.
    ///
    /// Addresses, worker counts, names and folders are left out: they change where a run goes, not θ.
    public var hash: String {
        struct Identity: Encodable {
            let seed: UInt64
            let meta: MetaSettings
            let family: TaskFamily
            let innerLoop: InnerLoopSettings
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Non-finite numbers are written as strings, so encoding cannot fail on a value. Were it to fail anyway,
        // hashing empty data would make every configuration look alike to the resume check; the full reflection of
        // the same values is deterministic and tells configurations apart, so it is hashed instead (no crash).
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let identity = Identity(seed: run.seed, meta: meta, family: family, innerLoop: innerLoop)
        let data = (try? encoder.encode(identity)) ?? Data(String(reflecting: identity).utf8)
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Parses and validates cluster.yaml text; every problem names its key and line.
    public static func parse(_ text: String) throws -> ClusterConfig {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch { throw ConfigError.syntax("\(error)") }
        let top = try MappingReader(root, path: "")
        var c = ClusterConfig()
        // Ranges a message carries are the wire's own: a config the decoder would refuse is refused here, with its line.
        let wire = WireLimits()

        let run = try top.mapping("run")
        c.run.name = try run.string("name", c.run.name)
        guard !c.run.name.isEmpty, c.run.name.utf8.count <= 64,
              c.run.name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw run.bad("name", run.node("name")?.1 ?? run.line, "must be 1-64 letters, digits, '-', '_' or '.'")
        }
        c.run.seed = try run.uint64("seed", c.run.seed)
        c.run.runDir = try run.string("run_dir", c.run.runDir)
        c.run.checkpointInterval = try run.int("checkpoint_interval", c.run.checkpointInterval, 1...1_000_000)
        c.run.keepLast = try run.int("keep_last", c.run.keepLast, 1...1000)
        try run.finish()

        let co = try top.mapping("coordinator")
        c.coordinator.bind = try co.string("bind", c.coordinator.bind)
        c.coordinator.advertise = try co.string("advertise", c.coordinator.bind)
        for (key, value) in [("bind", c.coordinator.bind), ("advertise", c.coordinator.advertise)] where !value.hasPrefix("tcp://") {
            throw co.bad(key, co.node(key)?.1 ?? co.line, "is '\(value)'; it must be a tcp:// endpoint")
        }
        c.coordinator.heartbeatIntervalMs = try co.int("heartbeat_interval_ms", c.coordinator.heartbeatIntervalMs,
                                                       10...min(600_000, wire.welcomeHeartbeatIntervalMs.upperBound))
        c.coordinator.liveness = try co.int("liveness", c.coordinator.liveness, 2...wire.welcomeLiveness.upperBound)
        c.coordinator.maxMessageBytes = try co.int("max_message_bytes", c.coordinator.maxMessageBytes, 1024...(2 << 30))
        c.coordinator.receiveHighWaterMark = try co.int("receive_hwm", c.coordinator.receiveHighWaterMark, 1...100_000)
        c.coordinator.backupAfterMedian = try co.double("backup_after_median", c.coordinator.backupAfterMedian,
                                                        { $0 == 0 || $0 >= 1 }, "0 (off) or ≥ 1")
        if co.node("slot_timeout_ms") != nil {
            c.coordinator.slotTimeoutMs = try co.int("slot_timeout_ms", 0, 100...86_400_000)
        }
        c.coordinator.evalTimeoutMs = try co.int("eval_timeout_ms", c.coordinator.evalTimeoutMs, 100...86_400_000)
        try co.finish()

        if let hosts = top.sequence("workers") {
            c.workers = try hosts.enumerated().map { i, node in
                let w = try MappingReader(node, path: "workers[\(i)]")
                let host = WorkerHost(host: try w.string("host", "localhost"), count: try w.int("count", 1, 0...4096),
                                      threads: try w.int("threads", 1, 1...wire.maxThreads))
                try w.finish()
                return host
            }
        } else if let (node, line) = top.node("workers"), node.sequence == nil {
            throw ConfigError.invalidValue(path: "workers", line: line, reason: "must be a list of {host, count, threads}")
        }

        let meta = try top.mapping("meta")
        c.meta.algorithm = try parseAlgorithm(meta)
        c.meta.iterations = try meta.int("iterations", c.meta.iterations, 1...10_000_000)
        c.meta.metaBatch = try meta.int("meta_batch", c.meta.metaBatch, 1...wire.maxSlots)
        c.meta.outerStep = try meta.float("outer_step", c.meta.outerStep, { $0 > 0 }, "> 0")
        c.meta.schedule = try meta.choice("schedule", c.meta.schedule)
        c.meta.optimizer = try meta.choice("optimizer", c.meta.optimizer)
        if try meta.bool("pipeline", false) {
            guard c.meta.algorithm != .distill else {
                throw meta.bad("pipeline", meta.node("pipeline")?.1 ?? meta.line, "cannot be true with algorithm: distill (the coordinator distils from the θ its experts started at)")
            }
            c.meta.pipelined = true
        }
        if c.meta.algorithm != .distill, let (_, line) = meta.node("distill") {
            throw meta.bad("distill", line, "applies only to algorithm: distill")
        }
        if c.meta.algorithm == .distill {
            let distill = try meta.mapping("distill")
            var d = DistillationSettings()
            d.states = try distill.int("states", d.states, 1...1_000_000)
            d.epsilon = try distill.float("epsilon", d.epsilon, { (0...1).contains($0) }, "in [0, 1]")
            d.steps = try distill.int("steps", d.steps, 1...10_000_000)
            d.batchSize = try distill.int("batch_size", d.batchSize, 1...65_536)
            d.learningRate = try distill.float("learning_rate", d.learningRate, { $0 > 0 && $0 < 10 }, "in (0, 10)")
            if distill.node("match") != nil { d.match = try distill.choice("match", TeacherMatch.values) }
            try distill.finish()
            c.meta.distillation = d
        }
        if c.meta.algorithm != .esMAML, let (_, line) = meta.node("es") {
            throw meta.bad("es", line, "applies only to algorithm: es-maml")
        }
        var evolution: EvolutionSettings?
        if c.meta.algorithm == .esMAML {
            let es = try meta.mapping("es")
            var e = EvolutionSettings()
            e.sigma = try es.float("sigma", e.sigma, { $0.isFinite && $0 > 0 && $0 <= 10 }, "in (0, 10]")
            e.fitnessEvery = try es.int("fitness_every", e.fitnessEvery, 1...100_000_000)
            e.fitnessEpisodes = try es.int("fitness_episodes", e.fitnessEpisodes, 1...EvolutionSettings.maxFitnessEpisodes)
            try es.finish()
            evolution = e
        }
        try meta.finish()

        c.family = try parseFamily(try top.mapping("task_family"))

        let inner = try top.mapping("inner_loop")
        c.innerLoop = try parseInnerLoop(inner)
        c.innerLoop.evolution = evolution
        try inner.finish()
        if c.meta.algorithm == .maml, let problem = mamlIncompatibility(c.innerLoop.dqn) {
            throw ConfigError.invalidValue(path: "inner_loop", line: inner.line, reason: "does not suit meta.algorithm maml: \(problem)")
        }
        if c.innerLoop.teacher != nil && c.meta.algorithm != .fomaml && c.meta.algorithm != .maml {
            throw ConfigError.invalidValue(path: "inner_loop.query", line: inner.line,
                                           reason: "is teacher, but only fomaml and maml have a query loss (meta.algorithm is \(c.meta.algorithm.rawValue))")
        }

        let security = try top.mapping("security")
        c.security.curve = try security.bool("curve", false)
        c.security.coordinatorKey = try security.string("coordinator_key", "")
        if let (node, line) = security.node("allowed_workers") {
            guard let list = node.sequence?.compactMap({ $0.scalar?.string }), list.count == node.sequence?.count else {
                throw security.bad("allowed_workers", line, "must be a list of public-key file paths")
            }
            c.security.allowedWorkers = list
        }
        if c.security.curve && (c.security.coordinatorKey.isEmpty || c.security.allowedWorkers.isEmpty) {
            throw ConfigError.invalidValue(path: "security", line: security.line,
                                           reason: "with curve: true needs coordinator_key and a non-empty allowed_workers list")
        }
        try security.finish()

        let evaluation = try top.mapping("evaluation")
        c.evaluation.tasks = try evaluation.int("tasks", c.evaluation.tasks, 0...10_000)
        c.evaluation.budget = try evaluation.int("budget", c.evaluation.budget, 1...100_000_000)
        c.evaluation.interval = try evaluation.int("interval", c.evaluation.interval, 0...1_000_000)
        if evaluation.node("target_return") != nil {
            c.evaluation.targetReturn = try evaluation.double("target_return", 0, { $0.isFinite }, "a finite number")
        }
        try evaluation.finish()

        c.numerics = try top.choice("numerics", c.numerics)

        let server = try top.mapping("environment_server")
        c.environmentServer.python = try server.string("python", c.environmentServer.python)
        c.environmentServer.allowedModules = try server.stringList("allow_modules")
        c.environmentServer.pythonPath = try server.stringList("python_path")
        c.environmentServer.stepTimeoutMs = try server.int("step_timeout_ms", c.environmentServer.stepTimeoutMs, 1...3_600_000)
        c.environmentServer.startTimeoutMs = try server.int("start_timeout_ms", c.environmentServer.startTimeoutMs, 1...3_600_000)
        try server.finish()

        try top.finish()
        c.sourceText = text
        return c
    }

    /// The meta-evaluation this run's settings describe: its held-out tasks, its inner loop's DQN, the target
    /// return (`evaluation.target_return`, else the family's); `tasks` and `budget` default to `evaluation`'s.
    public func evaluationPlan(tasks: Int? = nil, budget: Int? = nil, every: Int, episodes: Int = 5) -> EvaluationPlan {
        EvaluationPlan(family: family, runSeed: run.seed, tasks: tasks ?? evaluation.tasks, budget: budget ?? evaluation.budget,
                       every: every, episodes: episodes, dqn: innerLoop.dqn,
                       targetReturn: evaluation.targetReturn ?? defaultTargetReturn(family: family))
    }

    /// This configuration with `run.seed` and/or `meta.iterations` replaced, its `sourceText` rewritten to match.
    ///
    /// Command-line overrides go through here so that the config.yaml a run keeps describes the run that
    /// happened (`metatrain eval` checks it against the checkpoint's hash). The rewritten text loses the
    /// original's comments; key paths stay as `load` resolved them.
    public func overriding(seed: UInt64? = nil, iterations: Int? = nil) throws -> ClusterConfig {
        var c = self
        if let seed { c.run.seed = seed }
        if let iterations { c.meta.iterations = iterations }
        guard (seed != nil || iterations != nil), !sourceText.isEmpty else { return c }
        guard var root = try Yams.compose(yaml: sourceText), root.mapping != nil else { return c }
        func set(_ section: String, _ key: String, _ value: String) {
            var node = root[section] ?? Node([(Node, Node)]())
            if node.mapping == nil { node = Node([(Node, Node)]()) }
            node[key] = Node(value)
            root[section] = node
        }
        if let seed { set("run", "seed", String(seed)) }
        if let iterations { set("meta", "iterations", String(iterations)) }
        var rewritten = try ClusterConfig.parse(try Yams.serialize(node: root))
        rewritten.security = security
        return rewritten
    }

    public static func load(path: String) throws -> ClusterConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError.io("cannot read \(path)") }
        guard let text = String(data: data, encoding: .utf8) else { throw ConfigError.io("\(path) is not UTF-8 text") }
        var config = try parse(text)
        // Key files are relative to the configuration file's folder.
        let folder = (path as NSString).deletingLastPathComponent
        func resolve(_ p: String) -> String { p.hasPrefix("/") || p.isEmpty ? p : (folder as NSString).appendingPathComponent(p) }
        config.security.coordinatorKey = resolve(config.security.coordinatorKey)
        config.security.allowedWorkers = config.security.allowedWorkers.map(resolve)
        return config
    }

    static func parseAlgorithm(_ meta: MappingReader) throws -> MetaAlgorithm {
        let name = try meta.string("algorithm", MetaAlgorithm.reptile.rawValue)
        guard let a = MetaAlgorithm(rawValue: name) else {
            throw meta.bad("algorithm", meta.node("algorithm")?.1 ?? meta.line, "is '\(name)'; it must be reptile, fomaml, maml, distill or es-maml")
        }
        return a
    }

    static func parseFamily(_ f: MappingReader) throws -> TaskFamily {
        let env = try f.string("env", "cartpole")
        func r(_ key: String, _ d: ParameterRange) throws -> ParameterRange {
            let (lo, hi) = try f.range(key, (d.lower, d.upper))
            return ParameterRange(lo, hi)
        }
        let family: TaskFamily
        switch env {
        case "cartpole":
            var x = TaskFamily.CartPoleRanges()
            x.gravity = try r("gravity", x.gravity); x.massCart = try r("masscart", x.massCart)
            x.massPole = try r("masspole", x.massPole); x.length = try r("length", x.length)
            x.forceMagnitude = try r("force_mag", x.forceMagnitude)
            family = .cartPole(x)
        case "acrobot":
            var x = TaskFamily.AcrobotRanges()
            x.linkLength1 = try r("link_length_1", x.linkLength1); x.linkMass1 = try r("link_mass_1", x.linkMass1)
            x.linkMass2 = try r("link_mass_2", x.linkMass2)
            family = .acrobot(x)
        case "mountaincar":
            var x = TaskFamily.MountainCarRanges()
            x.force = try r("force", x.force); x.gravity = try r("gravity", x.gravity)
            family = .mountainCar(x)
        case "goal_navigation":
            var x = TaskFamily.GoalNavigationRanges()
            x.goalRadius = try f.double("goal_radius", x.goalRadius, { $0 >= 0 }, "≥ 0")
            x.directions = try f.int("directions", x.directions, 4...8)
            x.stepSize = try f.double("step_size", x.stepSize, { $0 > 0 }, "> 0")
            x.horizon = try f.int("horizon", x.horizon, 1...1_000_000)
            x.layout = try f.choice("goals", x.layout)
            x.arcDegrees = try r("arc_degrees", x.arcDegrees)
            x.reward = try f.choice("reward", x.reward)
            x.successRadius = try f.double("success_radius", x.successRadius, { $0 > 0 }, "> 0")
            x.stayAction = try f.bool("stay_action", x.stayAction)
            x.terminateAtGoal = try f.bool("terminate_at_goal", x.terminateAtGoal)
            x.controlRotations = try f.doubleList("control_rotations", x.controlRotations, maxCount: 360)
            family = .goalNavigation(x)
        case "gymnasium":
            family = .gymnasium(try parseGymnasium(f))
        case "swift":
            family = .gymnasium(try parseGymnasium(f, swift: true))
        case "tabular_mdp":
            var x = TaskFamily.TabularMDPRanges()
            x.states = try f.int("states", x.states, 1...4096)
            x.actions = try f.int("actions", x.actions, 1...256)
            x.horizon = try f.int("horizon", x.horizon, 1...1_000_000)
            // shared_dynamics: 0 (the default) gives every task its own transitions; N > 0, one of N tables.
            let tables = try f.int("shared_dynamics", 0, 0...1_000_000)
            let tableSeed = try f.uint64("dynamics_seed", 0)
            if tables > 0 { x.sharedDynamics = TaskFamily.SharedDynamics(count: tables, seed: tableSeed) }
            family = .tabularMDP(x)
        default:
            throw f.bad("env", f.node("env")?.1 ?? f.line, "is '\(env)'; it must be one of \((TaskSpec.kindNames + ["gymnasium", "swift"]).joined(separator: ", "))")
        }
        do { try family.validate() } catch {
            throw ConfigError.invalidValue(path: "task_family", line: f.line, reason: "is invalid: \(error)")
        }
        try f.finish()
        return family
    }

    /// `env: gymnasium`: `id` or `entry_point`, `kwargs` (fixed), `vary` (per name: a plain value, `uniform: [a, b]`,
    /// `log_uniform: [a, b]`, `integer: [a, b]` or `choice: [...]`; `unwrapped.NAME` sets an attribute), `max_episode_steps`.
    /// `env: swift` takes `name` (a family the running program registered) in place of id and entry point.
    static func parseGymnasium(_ f: MappingReader, swift: Bool = false) throws -> GymnasiumFamily {
        var x = GymnasiumFamily()
        if swift {
            let name = try f.string("name", "")
            guard !name.isEmpty, !name.contains(":") else {
                throw ConfigError.invalidValue(path: "task_family.name", line: f.line,
                                               reason: "with env: swift names the Swift family the program registered (ExternalEnvironments.register)")
            }
            x.entryPoint = ExternalEnvironments.swiftPrefix + name
        } else {
            let id = try f.string("id", ""), entry = try f.string("entry_point", "")
            x.environmentID = id.isEmpty ? nil : id
            x.entryPoint = entry.isEmpty ? nil : entry
        }
        guard (x.environmentID == nil) != (x.entryPoint == nil) else {
            throw ConfigError.invalidValue(path: "task_family", line: f.line,
                                           reason: "with env: gymnasium names exactly one of id (e.g. LunarLander-v3) and entry_point (package.module:function)")
        }
        let steps = try f.int("max_episode_steps", 0, 0...100_000_000)
        x.maxEpisodeSteps = steps == 0 ? nil : steps
        let kwargs = try f.mapping("kwargs")
        for name in kwargs.keys {
            let (node, line) = kwargs.node(name)!
            guard let value = gymValue(node) else { throw kwargs.bad(name, line, "must be a number, a string or a boolean") }
            x.kwargs[name] = value
        }
        let vary = try f.mapping("vary")
        for name in vary.keys {
            let (node, line) = vary.node(name)!
            if let value = gymValue(node) { x.vary[name] = .fixed(value); continue }
            do { x.vary[name] = try YAMLDecoder().decode(GymDistribution.self, from: node, userInfo: [:]) } catch {
                throw vary.bad(name, line, "must be a value or one of uniform: [a, b], log_uniform: [a, b], integer: [a, b], choice: [values]")
            }
        }
        return x
    }

    /// A YAML scalar as a gymnasium value (booleans, whole numbers and other numbers as such, anything else a string).
    static func gymValue(_ node: Node) -> GymValue? {
        guard node.scalar != nil else { return nil }
        if let b = node.bool { return .bool(b) }
        if let i = node.int { return .int(Int64(i)) }
        if let d = node.float, d.isFinite { return .double(d) }
        return node.string.map { .string($0) }
    }

    static func parseInnerLoop(_ i: MappingReader) throws -> InnerLoopSettings {
        var s = InnerLoopSettings()
        var d = s.dqn
        d.hiddenLayers = try i.intList("hidden_layers", d.hiddenLayers, 1...65_536)
        d.optimizer = try i.choice("optimizer", d.optimizer)
        d.learningRate = try i.float("learning_rate", d.learningRate, { $0 > 0 }, "> 0")
        d.bufferCapacity = try i.int("buffer_capacity", d.bufferCapacity, 1...100_000_000)
        d.batchSize = try i.int("batch_size", d.batchSize, 1...1_000_000)
        d.gamma = try i.float("gamma", d.gamma, { $0 >= 0 && $0 <= 1 }, "in [0, 1]")
        d.learningStarts = try i.int("learning_starts", d.learningStarts, 0...100_000_000)
        d.trainFrequency = try i.int("train_frequency", d.trainFrequency, 1...1_000_000)
        d.targetUpdateInterval = try i.int("target_update_interval", d.targetUpdateInterval, 1...100_000_000)
        d.targetUpdateTau = try i.float("target_update_tau", d.targetUpdateTau, { $0 > 0 && $0 <= 1 }, "in (0, 1]")
        d.startEpsilon = try i.float("start_epsilon", d.startEpsilon, { $0 >= 0 && $0 <= 1 }, "in [0, 1]")
        d.endEpsilon = try i.float("end_epsilon", d.endEpsilon, { $0 >= 0 && $0 <= 1 }, "in [0, 1]")
        d.explorationFraction = try i.float("exploration_fraction", d.explorationFraction, { $0 > 0 && $0 <= 1 }, "in (0, 1]")
        d.doubleDQN = try i.bool("double_dqn", d.doubleDQN)
        d.loss = try i.choice("loss", d.loss)
        let clip = try i.double("max_gradient_norm", 0, { $0 >= 0 }, "≥ 0 (0: no clipping)")
        d.maxGradientNorm = clip == 0 ? nil : Float(clip)
        let window = try i.int("context_window", 0, 0...64)
        d.contextWindow = window == 0 ? nil : window
        let repeat_ = try i.int("ez_max_repeat", 0, 0...1000)
        guard repeat_ != 1 else {
            throw ConfigError.invalidValue(path: "inner_loop.ez_max_repeat", line: i.node("ez_max_repeat")?.1 ?? 0,
                                           reason: "must be 0 (plain ε-greedy) or in 2...1000 (ε-z-greedy's longest repeat)")
        }
        d.ezMaxRepeat = repeat_ == 0 ? nil : repeat_
        s.dqn = d
        s.budget = try i.int("budget", s.budget, 1...WireLimits().maxBudget)
        s.querySteps = try i.int("query_steps", s.querySteps, 1...100_000_000)
        let query = try i.choice("query", QueryTarget.td)
        let teacherSteps = try i.int("teacher_steps", 0, 0...100_000_000)
        let match = try i.choice("teacher_match", TeacherMatch.values)
        switch query {
        case .td:
            if let (_, line) = i.node("teacher_steps") ?? i.node("teacher_match") {
                throw ConfigError.invalidValue(path: "inner_loop.teacher_steps", line: line, reason: "and teacher_match apply only to query: teacher")
            }
        case .teacher:
            guard teacherSteps > 0 else {
                throw ConfigError.invalidValue(path: "inner_loop.query", line: i.line, reason: "is teacher: set teacher_steps (> 0), how long the teacher trains on")
            }
            s.teacher = TeacherQuery(steps: teacherSteps, match: match)
        }
        do { try s.validate() } catch {
            throw ConfigError.invalidValue(path: "inner_loop", line: i.line, reason: "is invalid: \(error)")
        }
        return s
    }
}

/// What a run computes, as pure functions of its configuration (the coordinator, `eval`, `export` and the
/// divergence check all derive the same θ₀ and tasks from here).
extension ClusterConfig {
    /// θ₀: the network for the family's tasks, initialised from the run seed.
    public func initialParameters() throws -> ParameterVector {
        var rng = SeededRNG(seed: deriveSeed(run.seed, iteration: 0, slot: 0, purpose: .taskSample))
        let task = try family.sample(using: &rng)
        let mlp = try makeNetwork(for: task, config: innerLoop.dqn)
        var initRNG = SeededRNG(seed: deriveSeed(run.seed, iteration: 0, slot: 0, purpose: .networkInit))
        return mlp.initialParameters(using: &initRNG)
    }

    /// Where the Q-network's output layer (its weights and bias) sits in the flat parameter vector: what
    /// `metatrain eval`'s `multitask-head` init takes from θ₀ instead of the multi-task network.
    public func outputLayer() throws -> Range<Int> {
        var rng = SeededRNG(seed: deriveSeed(run.seed, iteration: 0, slot: 0, purpose: .taskSample))
        let last = try makeNetwork(for: try family.sample(using: &rng), config: innerLoop.dqn).layers.last!
        return last.weightOffset..<(last.weightOffset + last.parameterCount)
    }

    /// The task of slot `slot` in meta-iteration `iteration`: a pure function of the run seed.
    public func task(iteration: Int, slot: Int) throws -> TaskSpec {
        try trainingTask(family, runSeed: run.seed, iteration: iteration, slot: slot)
    }
}
