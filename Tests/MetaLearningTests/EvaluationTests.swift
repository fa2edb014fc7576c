import DQN
import Environments
import Foundation
@testable import MetaLearning
import NeuralNet
import Testing

@Suite struct EvaluationTests {
    static func smallConfig() -> DQNConfig {
        var c = DQNConfig()
        c.hiddenLayers = [16, 16]
        c.batchSize = 16
        c.learningStarts = 50
        c.bufferCapacity = 500
        return c
    }

    @Test func snapshotsComeAtStepZeroAndEveryKStepsWithoutChangingTheRun() throws {
        let task = TaskSpec.defaultTask(kind: "cartpole")!
        let config = Self.smallConfig()
        let mlp = try makeNetwork(for: task, config: config)
        var rng = SeededRNG(seed: 3)
        let theta = mlp.initialParameters(using: &rng)
        var seen: [(Int, ParameterVector)] = []
        let with = try adapt(initial: theta, task: task, budget: 300, seed: 9, config: config,
                             snapshots: Snapshots(every: 100) { seen.append(($0, $1)) })
        let without = try adapt(initial: theta, task: task, budget: 300, seed: 9, config: config)
        #expect(seen.map(\.0) == [0, 100, 200, 300])
        #expect(seen.first?.1 == theta)
        #expect(seen.last?.1 == with.parameters)
        #expect(with.parameters == without.parameters && with.episodeReturns == without.episodeReturns)
    }

    @Test func multiTaskEnvironmentDrawsANewTaskEachEpisodeDeterministically() throws {
        let family = TaskFamily.goalNavigation(TaskFamily.GoalNavigationRanges())
        func goals(_ seed: UInt64) throws -> [TaskSpec] {
            var rng = SeededRNG(seed: seed)
            var env = try MultiTaskEnvironment(family: family, using: &rng)
            return (0..<5).map { _ in env.reset(using: &rng); return env.task }
        }
        let a = try goals(1), b = try goals(1), c = try goals(2)
        #expect(a == b)
        #expect(a != c)
        #expect(Set(a.map { "\($0)" }).count == 5)
    }

    @Test func confidenceIntervalAndMedianStepsMatchHandComputedValues() {
        let (m, ci) = meanAndCI95([1, 2, 3, 4, 5])
        // sd = √2.5, t(4) = 2.776: 2.776 · √2.5 / √5 = 1.9629.
        #expect(m == 3 && abs(ci - 1.9629) < 1e-3)
        #expect(meanAndCI95([7]).ci95.isNaN)
        #expect(studentT975(degreesOfFreedom: 31) == 2.040 && studentT975(degreesOfFreedom: 500) == 1.980)
        #expect(jsonString("a\"b\\c\n") == "\"a\\\"b\\\\c\\n\"" && jsonNumber(.nan) == "null" && jsonNumber(.infinity) == "null")
        #expect(medianSteps([nil, 100, 200]) == 200)
        #expect(medianSteps([100, 200]) == 150)
        #expect(medianSteps([nil, nil, 100]) == nil)
        #expect(stepsToTarget([0, 150, 210, 190], steps: [0, 10, 20, 30], target: 195) == 20)
        #expect(stepsToTarget([0, 1], steps: [0, 10], target: 195) == nil)
    }

    @Test func euclideanAndCosineCanDisagreeAndNearestFollowsTheMetric() throws {
        let probes = try ProbeStates(family: .cartPole(TaskFamily.CartPoleRanges()), runSeed: 1, count: 4)
        let task = TaskSpec.defaultTask(kind: "cartpole")!
        let entries = [TaskLibrary.Entry(task: task, embedding: [10, 0], parameters: ParameterVector([1])),
                       TaskLibrary.Entry(task: task, embedding: [0, 1.1], parameters: ParameterVector([2]))]
        let library = TaskLibrary(entries: entries, probes: probes)
        // [1, 0] is 9 from [10, 0] but only 1.49 from [0, 1.1]; by angle it is identical to [10, 0].
        #expect(library.nearest(to: [1, 0], metric: .euclidean) == 1)
        #expect(library.nearest(to: [1, 0], metric: .cosine) == 0)
        #expect(probes.observations.count == 4 * 4)
    }

    @Test func contrastiveMetricLearnsWhichEmbeddingDirectionsCarryTheTask() {
        // Dimension 0 is the task (its coordinate); dimensions 1...5 are noise 10× larger. Euclidean distance
        // is dominated by the noise; the learnt map must find dimension 0.
        var rng = SeededRNG(seed: 21)
        func sample(_ c: Double) -> [Float] { [Float(c)] + (0..<5).map { _ in Float(rng.nextGaussian()) * 10 } }
        let train = (0..<24).map { _ in rng.nextDouble(in: 0, 1) }
        let embeddings = train.map { sample($0) }
        let metric = ContrastiveMetric.learn(embeddings: embeddings, coordinates: train.map { [$0] }, seed: 1)
        #expect(metric.finalLoss < metric.initialLoss / 2)
        let queries = (0..<40).map { _ in rng.nextDouble(in: 0, 1) }
        func retrievalError(_ distance: ([Float], [Float]) -> Double) -> Double {
            queries.reduce(0) { total, q in
                let e = sample(q)
                let best = embeddings.indices.min { distance(e, embeddings[$0]) < distance(e, embeddings[$1]) }!
                return total + abs(train[best] - q)
            } / Double(queries.count)
        }
        let learned = retrievalError(metric.distance), euclidean = retrievalError(EmbeddingMetric.euclidean.distance)
        #expect(learned < euclidean / 2, "learned \(learned) vs euclidean \(euclidean)")
    }

    @Test func familyCoordinatesScaleRangedParametersToTheUnitInterval() {
        let family = TaskFamily.goalNavigation(TaskFamily.GoalNavigationRanges())
        let c = family.coordinates(of: .goalNavigation(GoalNavigationParameters(goalX: -0.5, goalY: 0.25)))
        #expect(c == [0, 0.75])
        #expect(TaskFamily.cartPole(TaskFamily.CartPoleRanges()).coordinates(of: TaskSpec.defaultTask(kind: "cartpole")!).count == 4)
    }

    @Test func evaluationIsDeterministicAcrossThreadCountsAndReportsEveryInit() throws {
        let family = TaskFamily.cartPole(TaskFamily.CartPoleRanges())
        let config = Self.smallConfig()
        let plan = EvaluationPlan(family: family, runSeed: 5, tasks: 3, budget: 200, every: 100, episodes: 2,
                                  dqn: config, targetReturn: 30)
        let mlp = try makeNetwork(for: try plan.task(0), config: config)
        var rng = SeededRNG(seed: 1)
        let a = mlp.initialParameters(using: &rng), b = mlp.initialParameters(using: &rng)
        let library = try TaskLibrary(
            theta: a, tasks: [(try trainingTask(family, runSeed: 5, iteration: 0, slot: 0), 1),
                              (try trainingTask(family, runSeed: 5, iteration: 0, slot: 1), 2)],
            settings: InnerLoopSettings(dqn: config, budget: 100), probes: try ProbeStates(family: family, runSeed: 5, count: 8),
            runner: LocalAdaptationRunner(threads: 2))
        let nearest = NearestTaskSetup(theta: a, library: library, metric: .euclidean, probeSteps: 100)
        let one = try runMetaEvaluation(plan: plan, inits: [("meta", a), ("random", b)], nearest: nearest, threads: 1)
        let two = try runMetaEvaluation(plan: plan, inits: [("meta", a), ("random", b)], nearest: nearest, threads: 2)
        #expect(one.curves == two.curves)
        #expect(one.names == ["meta", "random", "nearest"])
        #expect(one.curves.allSatisfy { $0.count == 3 && $0.allSatisfy { $0.count == 3 } })
        // Every init scores the same start states, so step 0 of "meta" and of "nearest" (both θ = a) agree.
        #expect(one.curves[0].map { $0[0] } == one.curves[2].map { $0[0] })

        let object = try JSONSerialization.jsonObject(with: Data(one.json().utf8)) as! [String: Any]
        #expect(object["family"] as? String == "cartpole" && object["tasks"] as? Int == 3 && object["every"] as? Int == 100)
        let inits = object["inits"] as! [String: [[String: Any]]]
        #expect(Set(inits.keys) == ["meta", "random", "nearest"])
        #expect(inits["meta"]!.map { $0["step"] as! Int } == [0, 100, 200])
        #expect((object["steps_to_target"] as! [String: Any]).count == 3)
        let perTask = object["steps_to_target_per_task"] as! [String: [Any]]
        #expect(perTask["meta"]!.count == 3 && perTask["meta"]!.allSatisfy { $0 is NSNull || $0 is Int })
        // Each task's parameters, in task order, decode back to the task the plan drew.
        let specs = object["task_specs"] as! [[String: Any]]
        #expect(specs.count == 3 && specs.allSatisfy { $0["kind"] as? String == "cartpole" })
        for (i, spec) in specs.enumerated() {
            let parameters = try JSONSerialization.data(withJSONObject: spec["parameters"] as Any)
            #expect(TaskSpec.cartPole(try JSONDecoder().decode(CartPoleParameters.self, from: parameters)) == (try plan.task(i)))
        }
        #expect(one.svg(title: "t").hasPrefix("<svg") && one.summaryCSV().split(separator: "\n").count == 1 + 3 * 3)
    }

    @Test func aFamilyWithoutATargetReportsNullsNotNumbers() throws {
        var config = Self.smallConfig()
        config.learningStarts = 10
        let family = TaskFamily.tabularMDP(TaskFamily.TabularMDPRanges())
        #expect(defaultTargetReturn(family: family) == nil)
        let plan = EvaluationPlan(family: family, runSeed: 2, tasks: 2, budget: 40, every: 20, episodes: 1, dqn: config,
                                  targetReturn: nil)
        var rng = SeededRNG(seed: 4)
        let theta = try makeNetwork(for: try plan.task(0), config: config).initialParameters(using: &rng)
        let report = try runMetaEvaluation(plan: plan, inits: [("meta", theta)])
        let object = try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
        #expect(object["target_return"] is NSNull)
        #expect((object["steps_to_target"] as! [String: Any])["meta"] is NSNull)
        #expect(report.table().contains("| meta |") && report.table().contains("—"))
    }

    @Test func badPlansAreRejectedWithAReason() {
        var plan = EvaluationPlan(family: .cartPole(TaskFamily.CartPoleRanges()), runSeed: 1, tasks: 2, budget: 100,
                                  every: 30, dqn: DQNConfig(), targetReturn: nil)
        #expect(throws: EvaluationError.self) { try plan.validate() }
        plan.every = 50
        plan.tasks = 0
        #expect(throws: EvaluationError.self) { try plan.validate() }
    }
}
