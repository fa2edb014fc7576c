import Cluster
import Foundation
import MetaLearning
import Testing

@Suite struct ConfigTests {
    /// The committed cluster.yaml parses and is the documented default.
    @Test func theCommittedClusterYAMLIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let config = try ClusterConfig.load(path: root.appendingPathComponent("cluster.yaml").path)
        #expect(config.meta.algorithm == .reptile && config.family.kindName == "cartpole")
        #expect(config.workers.first?.host == "localhost" && config.workers.first?.count == 2)
    }

    /// The output layer is the flat vector's tail: CartPole (4 inputs, 2 actions) with hidden layers [16, 8] has
    /// 8 × 2 weights and 2 biases there.
    @Test func theOutputLayerIsTheLastLayersWeightsAndBias() throws {
        let c = try ClusterConfig.parse("task_family: {env: cartpole}\ninner_loop: {hidden_layers: [16, 8]}")
        let theta = try c.initialParameters()
        #expect(try c.outputLayer() == (theta.count - 18)..<theta.count)
    }

    @Test func hashCoversWhatDeterminesThetaOnly() throws {
        let a = try ClusterConfig.parse("run: {seed: 3}\ncoordinator: {bind: 'tcp://127.0.0.1:1'}")
        let b = try ClusterConfig.parse("run: {seed: 3, name: other}\ncoordinator: {bind: 'tcp://0.0.0.0:2'}\nworkers: [{host: x, count: 9}]")
        let c = try ClusterConfig.parse("run: {seed: 4}")
        let d = try ClusterConfig.parse("run: {seed: 3}\ninner_loop: {budget: 999}")
        #expect(a.hash == b.hash && a.hash != c.hash && a.hash != d.hash && a.hash.count == 64)
    }

    /// The hash of a configuration that uses no newer option stays what it was when that configuration was first
    /// hashed: a new optional setting (e.g. `meta.distill`) must not make every existing checkpoint refuse to resume
    /// or to be evaluated. The value is the hash of this text as metatrain computed it before distillation existed.
    @Test func hashOfAnOlderConfigurationIsStable() throws {
        #expect(try ClusterConfig.parse("run: {seed: 3}\n").hash == "4170bd24c045c9c928b58227fc9c2cd2a762309891fa3f6ef3e83fa9ebc80d8e")
    }

    /// A goal family's control rotations are read as a list (or one number), and only change the hash when set.
    @Test func controlRotationsAreParsed() throws {
        let plain = try ClusterConfig.parse("task_family: {env: goal_navigation, goals: arc, arc_degrees: [0, 30]}\n")
        let reversed = try ClusterConfig.parse("task_family: {env: goal_navigation, goals: arc, arc_degrees: [0, 30], control_rotations: [0, 180]}\n")
        let one = try ClusterConfig.parse("task_family: {env: goal_navigation, goals: arc, arc_degrees: [0, 30], control_rotations: 0}\n")
        guard case .goalNavigation(let p) = plain.family, case .goalNavigation(let r) = reversed.family else {
            Issue.record("kind"); return
        }
        #expect(p.controlRotations == [0] && r.controlRotations == [0, 180])
        #expect(one.hash == plain.hash && reversed.hash != plain.hash)
    }

    /// MAML's teacher query is read whole, and only where it applies; the TD query stays the default.
    @Test func teacherQueryIsParsed() throws {
        let td = try ClusterConfig.parse("meta: {algorithm: maml}\ninner_loop: {optimizer: sgd, max_gradient_norm: 0}\n")
        let values = try ClusterConfig.parse("meta: {algorithm: maml}\ninner_loop: {optimizer: sgd, max_gradient_norm: 0, query: teacher, teacher_steps: 50}\n")
        let advantages = try ClusterConfig.parse("meta: {algorithm: fomaml}\ninner_loop: {query: teacher, teacher_steps: 50, teacher_match: advantages}\n")
        #expect(td.innerLoop.teacher == nil && values.innerLoop.teacher == TeacherQuery(steps: 50, match: .values))
        #expect(advantages.innerLoop.teacher == TeacherQuery(steps: 50, match: .advantages))
        #expect(td.hash != values.hash && values.innerLoop.queryPhaseSteps == 50 + values.innerLoop.querySteps)
    }

    /// ES-MAML's settings are read whole under meta.es (the defaults without it), travel with the inner loop, and are
    /// refused for any other algorithm; configurations of other algorithms keep their hash.
    @Test func evolutionSettingsAreParsed() throws {
        let defaults = try ClusterConfig.parse("meta: {algorithm: es-maml}\n")
        #expect(defaults.innerLoop.evolution == EvolutionSettings())
        let set = try ClusterConfig.parse("meta: {algorithm: es-maml, es: {sigma: 0.05, fitness_every: 250, fitness_episodes: 3}}\ninner_loop: {budget: 1000}\n")
        #expect(set.innerLoop.evolution == EvolutionSettings(sigma: 0.05, fitnessEvery: 250, fitnessEpisodes: 3))
        #expect(set.innerLoop.trainingStepsPerSlot(.esMAML) == 2_000 && set.defaultSlotTimeoutMs == 2_000 * 10 + 60_000)
        #expect(try ClusterConfig.parse("meta: {algorithm: reptile}\n").innerLoop.evolution == nil)
        for bad in ["meta: {algorithm: reptile, es: {sigma: 0.1}}", "meta: {algorithm: es-maml, es: {sigma: 0}}",
                    "meta: {algorithm: es-maml, es: {sigma: .nan}}", "meta: {algorithm: es-maml, es: {fitness_every: 0}}",
                    "meta: {algorithm: es-maml, es: {fitness_episodes: 100000}}", "meta: {algorithm: es-maml, es: {simga: 0.1}}"] {
            #expect(throws: ConfigError.self, "\(bad)") { try ClusterConfig.parse(bad + "\n") }
        }
    }

    /// `meta.pipeline` is a boolean, off by default (false keeps the hash of a configuration without it), and refused
    /// for distillation, whose coordinator distils from the θ the experts started at.
    @Test func pipelineIsParsed() throws {
        let off = try ClusterConfig.parse("meta: {algorithm: reptile}\n")
        let no = try ClusterConfig.parse("meta: {algorithm: reptile, pipeline: false}\n")
        let on = try ClusterConfig.parse("meta: {algorithm: reptile, pipeline: true}\n")
        #expect(!off.meta.isPipelined && no.hash == off.hash)
        #expect(on.meta.isPipelined && on.hash != off.hash)
        #expect(on.meta.baseVersion(of: 0) == 0 && on.meta.baseVersion(of: 1) == 0 && on.meta.baseVersion(of: 5) == 4)
        #expect(off.meta.baseVersion(of: 5) == 5)
        #expect(try ClusterConfig.parse("meta: {algorithm: fomaml, pipeline: true}\n").meta.isPipelined)
        for bad in ["meta: {algorithm: distill, pipeline: true}", "meta: {pipeline: yes please}", "meta: {pipeline: 1.5}"] {
            #expect(throws: ConfigError.self, "\(bad)") { try ClusterConfig.parse(bad + "\n") }
        }
    }

    /// Distillation's `match` is optional: absent, the settings (and so the hash) are what they were before it existed.
    @Test func distillationMatchIsOptional() throws {
        let plain = try ClusterConfig.parse("meta: {algorithm: distill, distill: {steps: 10}}\n")
        let advantages = try ClusterConfig.parse("meta: {algorithm: distill, distill: {steps: 10, match: advantages}}\n")
        #expect(plain.meta.distillation?.match == nil && advantages.meta.distillation?.match == .advantages)
        #expect(plain.hash != advantages.hash)
    }

    /// Command-line overrides rewrite the text a run keeps, so it parses back to the same configuration.
    @Test func overridesRewriteTheSourceTextTheRunKeeps() throws {
        let text = "# a comment\nrun:\n  seed: 3\nmeta:\n  algorithm: fomaml\n  meta_batch: 2\ntask_family: {env: goal_navigation, goal_radius: 0.25}\n"
        let base = try ClusterConfig.parse(text)
        let changed = try base.overriding(seed: 9, iterations: 77)
        let reparsed = try ClusterConfig.parse(changed.sourceText)
        #expect(changed.run.seed == 9 && changed.meta.iterations == 77 && changed.meta.metaBatch == 2)
        #expect(reparsed.hash == changed.hash && reparsed.hash != base.hash && reparsed.family == base.family)
        // No section to put the value in: one is made.
        let bare = try ClusterConfig.parse("task_family: {env: cartpole}\n").overriding(iterations: 5)
        #expect(try ClusterConfig.parse(bare.sourceText).meta.iterations == 5)
        #expect(try base.overriding().sourceText == text)
    }

    /// One clear error per bad value: the key path, the line, and what is wrong.
    @Test(arguments: [
        ("run:\n  sede: 1\n", "'run.sede'", 2),
        ("meta:\n  iterations: 0\n", "'meta.iterations' is 0", 2),
        ("meta:\n  algorithm: reptil\n", "must be reptile, fomaml, maml, distill or es-maml", 2),
        ("meta:\n  algorithm: reptile\n  distill: {steps: 10}\n", "applies only to algorithm: distill", 3),
        ("meta:\n  algorithm: distill\n  distill: {epsilon: 2}\n", "in [0, 1]", 3),
        ("meta:\n  algorithm: distill\n  distill: {match: logits}\n", "values, advantages", 3),
        ("inner_loop:\n  context_window: 65\n", "context_window", 2),
        ("meta:\n  algorithm: fomaml\ninner_loop:\n  query: teacher\n", "set teacher_steps", 4),
        ("meta:\n  algorithm: fomaml\ninner_loop:\n  teacher_steps: 100\n", "apply only to query: teacher", 4),
        ("meta:\n  algorithm: fomaml\ninner_loop:\n  query: oracle\n", "must be one of td, teacher", 4),
        ("meta:\n  algorithm: fomaml\ninner_loop:\n  query: teacher\n  teacher_steps: 9\n  teacher_match: policy\n", "values, advantages", 6),
        ("meta:\n  algorithm: reptile\ninner_loop:\n  query: teacher\n  teacher_steps: 100\n", "only fomaml and maml", 4),
        ("meta:\n  algorithm: maml\ninner_loop:\n  optimizer: adam\n", "optimizer: sgd", 4),
        ("meta:\n  schedule: cosine\n", "linear", 2),
        ("inner_loop:\n  gamma: 1.5\n", "'inner_loop.gamma' is 1.5", 2),
        ("inner_loop:\n  learning_rate: -1\n", "learning_rate", 2),
        ("inner_loop:\n  hidden_layers: [64, 0]\n", "hidden_layers", 2),
        ("inner_loop:\n  batch_size: 64\n  buffer_capacity: 10\n", "batch_size", 2),
        ("inner_loop:\n  budget: many\n", "must be an integer", 2),
        ("task_family:\n  env: cartpole\n  masspole: [-0.1, 0.5]\n", "masspole", 2),
        ("task_family:\n  env: cartpole\n  length: [1.0, 0.5]\n", "lower bound 1.0 above upper bound 0.5", 3),
        ("task_family:\n  env: pong\n", "must be one of cartpole", 2),
        ("task_family:\n  env: goal_navigation\n  gravity: 9.8\n", "'task_family.gravity'", 3),
        ("task_family:\n  env: goal_navigation\n  control_rotations: [0, .inf]\n", "'task_family.control_rotations' must hold finite numbers", 3),
        ("task_family:\n  env: goal_navigation\n  control_rotations: []\n", "a list of 1 to 360 numbers", 3),
        ("coordinator:\n  bind: 127.0.0.1:5555\n", "tcp://", 2),
        ("coordinator:\n  liveness: 1\n", "liveness", 2),
        ("workers:\n  - host: a\n    cuont: 2\n", "'workers[0].cuont'", 3),
        ("workers: 3\n", "must be a list", 1),
        ("run:\n  name: 'bad name!'\n", "letters, digits", 2),
        ("extra: 1\n", "unknown key 'extra'", 1),
        ("run: [1, 2\n", "YAML syntax error", 0),
    ] as [(String, String, Int)])
    func badValuesGiveOneClearError(yaml: String, expected: String, line: Int) {
        do {
            _ = try ClusterConfig.parse(yaml)
            Issue.record("accepted:\n\(yaml)")
        } catch {
            let text = "\(error)"
            #expect(text.contains(expected), "\(text)")
            if line > 0 { #expect(text.contains("line \(line)"), "\(text)") }
        }
    }
}
