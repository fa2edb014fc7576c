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

    @Test(arguments: [RegressionLoss.mse, .huber])
    func metaGradientMatchesFiniteDifferencesThroughTheInnerLoop(loss: RegressionLoss) throws {
        let mlp = try MLP(sizes: [3, 8, 2])
        var rng = SeededRNG(seed: 12)
        let theta = mlp.initialParameters(using: &rng)
        let alpha: Float = 0.2
        let batches = (0..<5).map { _ in Self.batch(&rng, rows: 6, inputs: 3) }
        let query = Self.batch(&rng, rows: 10, inputs: 3)
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
            return Double(mlp.lossAndGradient(innerLoop(t).0, inputs: query.inputs, actions: query.actions,
                                              targets: query.targets, loss: loss, workspace: ws, gradient: &g))
        }

        let (phi, records) = innerLoop(theta)
        var queryGradient = ParameterVector(zeros: 0)
        _ = mlp.lossAndGradient(phi, inputs: query.inputs, actions: query.actions, targets: query.targets, loss: loss,
                                workspace: ws, gradient: &queryGradient)
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
        settings.dqn.optimizer = .adam
        #expect(throws: MetaLearningError.self) { try runSlot(theta: theta, task: task, algorithm: .maml, settings: settings, seed: 4) }
    }
}
