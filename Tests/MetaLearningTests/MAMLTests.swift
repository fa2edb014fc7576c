import DQN
import Environments
import MetaLearning
import NeuralNet
import Testing

/// Second-order MAML's meta-gradient against finite differences of the query loss through a short
/// SGD inner loop with fixed data.
@Suite struct MAMLTests {
    typealias Batch = (inputs: [Float], actions: [Int32], targets: [Float])

    static func batch(_ rng: inout SeededRNG, rows: Int, inputs: Int) -> Batch {
        ((0..<(rows * inputs)).map { _ in Float(rng.nextGaussian()) },
         (0..<rows).map { _ in Int32(rng.nextInt(below: 2)) },
         (0..<rows).map { _ in Float(rng.nextGaussian()) })
    }

    /// A query loss of the adapted parameters: its value, and its gradient written into the second argument.
    typealias Query = (ParameterVector, inout ParameterVector) -> Float

    /// Checks MAML's meta-gradient of `query` through 5 SGD steps (TD loss `loss`, fixed minibatches and targets)
    /// against central differences of the query loss in 6 random directions, and that first order is much worse.
    static func checkAgainstFiniteDifferences(mlp: MLP, loss: RegressionLoss, rng: inout SeededRNG, query: Query) {
        let theta = mlp.initialParameters(using: &rng)
        let alpha: Float = 0.2
        let batches = (0..<5).map { _ in Self.batch(&rng, rows: 6, inputs: mlp.inputSize) }
        let ws = MLPWorkspace(mlp: mlp, capacity: 10)

        func innerLoop(_ start: ParameterVector) -> (ParameterVector, [UpdateRecord]) {
            var p = start, records: [UpdateRecord] = []
            for b in batches {
                records.append(UpdateRecord(parameters: p, observations: b.inputs, actions: b.actions, targets: b.targets))
                var g = ParameterVector(zeros: 0)
                _ = mlp.lossAndGradient(p, inputs: b.inputs, actions: b.actions, targets: b.targets, loss: loss, workspace: ws, gradient: &g)
                axpy(-alpha, g, &p)
            }
            return (p, records)
        }
        func queryLoss(_ t: ParameterVector) -> Double {
            var g = ParameterVector(zeros: 0)
            return Double(query(innerLoop(t).0, &g))
        }

        let (phi, records) = innerLoop(theta)
        var queryGradient = ParameterVector(zeros: 0)
        _ = query(phi, &queryGradient)
        let maml = secondOrderMetaGradient(mlp: mlp, steps: records, learningRate: alpha, queryGradient: queryGradient, loss: loss)

        var mamlError = 0.0, firstOrderError = 0.0
        for _ in 0..<6 {
            var d = ParameterVector((0..<mlp.parameterCount).map { _ in Float(rng.nextGaussian()) })
            scale(&d, by: Float(1 / norm(d)))
            let eps: Float = 1e-3
            var plus = theta, minus = theta
            axpy(eps, d, &plus); axpy(-eps, d, &minus)
            let numeric = (queryLoss(plus) - queryLoss(minus)) / (2 * Double(eps))
            let analytic = dot(maml, d)
            #expect(abs(analytic - numeric) <= 2e-3 * max(1, abs(numeric)), "\(loss): MAML \(analytic) vs numeric \(numeric)")
            mamlError += abs(analytic - numeric)
            firstOrderError += abs(dot(queryGradient, d) - numeric)
        }
        // The second-order term is not negligible here: dropping it (FOMAML) is much further off.
        #expect(firstOrderError > 5 * mamlError, "first-order error \(firstOrderError) vs MAML \(mamlError)")
    }

    /// The TD query: Q(s, a) of one action per row against fixed targets.
    @Test(arguments: [RegressionLoss.mse, .huber])
    func metaGradientMatchesFiniteDifferencesThroughTheInnerLoop(loss: RegressionLoss) throws {
        let mlp = try MLP(sizes: [3, 8, 2])
        var rng = SeededRNG(seed: 12)
        var queryRNG = SeededRNG(seed: 13)
        let query = Self.batch(&queryRNG, rows: 10, inputs: 3)
        let ws = MLPWorkspace(mlp: mlp, capacity: 10)
        Self.checkAgainstFiniteDifferences(mlp: mlp, loss: loss, rng: &rng) { phi, g in
            mlp.lossAndGradient(phi, inputs: query.inputs, actions: query.actions, targets: query.targets, loss: loss,
                                workspace: ws, gradient: &g)
        }
    }

    /// The teacher query: every action's Q (or advantage) regressed onto a teacher's (fixed states and targets),
    /// through TD inner steps of either loss.
    @Test(arguments: [(RegressionLoss.mse, false), (.huber, false), (.huber, true)])
    func teacherQueryMetaGradientMatchesFiniteDifferences(loss: RegressionLoss, advantages: Bool) throws {
        let mlp = try MLP(sizes: [3, 8, 2])
        var rng = SeededRNG(seed: 22)
        var queryRNG = SeededRNG(seed: 23)
        let states = (0..<30).map { _ in Float(queryRNG.nextGaussian()) }
        let teacher = (0..<20).map { _ in Float(queryRNG.nextGaussian()) }
        let ws = MLPWorkspace(mlp: mlp, capacity: 10)
        Self.checkAgainstFiniteDifferences(mlp: mlp, loss: loss, rng: &rng) { phi, g in
            mlp.meanSquaredError(phi, inputs: states, targets: teacher, centered: advantages, workspace: ws, gradient: &g)
        }
    }

    /// The teacher query on a real task: zero at the teacher itself, positive and finite elsewhere, deterministic; with
    /// advantages, blind to a teacher whose every Q is shifted by the same amount; a teacher that does not fit the
    /// network is refused.
    @Test func teacherQueryVanishesAtTheTeacherAndAdvantagesIgnoreTheLevel() throws {
        var config = DQNConfig()
        config.hiddenLayers = [8]
        let task = TaskSpec.cartPole(CartPoleParameters(length: 0.8))
        let mlp = try makeNetwork(for: task, config: config)
        var rng = SeededRNG(seed: 3)
        let phi = mlp.initialParameters(using: &rng), teacher = mlp.initialParameters(using: &rng)
        let atTeacher = try teacherQueryGradient(parameters: teacher, teacher: teacher, task: task, steps: 64, seed: 1, config: config)
        #expect(atTeacher.loss == 0 && atTeacher.gradient.values.allSatisfy { $0 == 0 })
        let a = try teacherQueryGradient(parameters: phi, teacher: teacher, task: task, steps: 64, seed: 1, config: config)
        let b = try teacherQueryGradient(parameters: phi, teacher: teacher, task: task, steps: 64, seed: 1, config: config)
        #expect(a.loss > 0 && a.gradient.isFinite && a.gradient == b.gradient && a.transitions == 64)
        // The teacher's Q-values all 5 higher (its output biases): its values differ by 5 everywhere, its advantages not.
        var lifted = teacher
        for k in (mlp.parameterCount - mlp.outputSize)..<mlp.parameterCount { lifted.values[k] += 5 }
        let values = try teacherQueryGradient(parameters: teacher, teacher: lifted, task: task, steps: 64, seed: 1, config: config)
        let advantages = try teacherQueryGradient(parameters: teacher, teacher: lifted, task: task, steps: 64, advantages: true,
                                                  seed: 1, config: config)
        #expect(abs(values.loss - 25) < 1e-3 && advantages.loss < 1e-8, "values \(values.loss), advantages \(advantages.loss)")
        #expect(throws: (any Error).self) {
            try teacherQueryGradient(parameters: phi, teacher: ParameterVector(zeros: 3), task: task, steps: 64, seed: 1, config: config)
        }
    }

    @Test func mamlSlotsRunWithSGDAndAreDeterministic() throws {
        var settings = InnerLoopSettings(budget: 200, querySteps: 32)
        settings.dqn.hiddenLayers = [8]
        settings.dqn.batchSize = 8
        settings.dqn.learningStarts = 50
        settings.dqn.optimizer = .sgd
        settings.dqn.learningRate = 0.01
        let task = TaskSpec.cartPole(CartPoleParameters(length: 0.8))
        var rng = SeededRNG(seed: 2)
        let theta = try makeNetwork(for: task, config: settings.dqn).initialParameters(using: &rng)
        let a = try runSlot(theta: theta, task: task, algorithm: .maml, settings: settings, seed: 4)
        let b = try runSlot(theta: theta, task: task, algorithm: .maml, settings: settings, seed: 4)
        let fo = try runSlot(theta: theta, task: task, algorithm: .fomaml, settings: settings, seed: 4)
        #expect(a.update == b.update && a.update.isFinite && a.update != fo.update)
        // The teacher query: another update, deterministic, and the teacher's steps are counted.
        settings.teacher = TeacherQuery(steps: 150)
        let t1 = try runSlot(theta: theta, task: task, algorithm: .maml, settings: settings, seed: 4)
        let t2 = try runSlot(theta: theta, task: task, algorithm: .maml, settings: settings, seed: 4)
        #expect(t1.update == t2.update && t1.update.isFinite && t1.update != a.update && t1.statistics.queryLoss > 0)
        #expect(t1.statistics.environmentSteps == 200 + 150 + 32 && a.statistics.environmentSteps == 200 + 32)
        settings.teacher?.match = .advantages
        let t3 = try runSlot(theta: theta, task: task, algorithm: .maml, settings: settings, seed: 4)
        #expect(t3.update.isFinite && t3.update != t1.update)
        settings.teacher = nil
        settings.dqn.optimizer = .adam
        #expect(throws: MetaLearningError.self) { try runSlot(theta: theta, task: task, algorithm: .maml, settings: settings, seed: 4) }
    }
}
