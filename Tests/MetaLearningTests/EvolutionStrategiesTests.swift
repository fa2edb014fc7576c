import DQN
import Environments
import MetaLearning
import NeuralNet
import Testing

/// ES-MAML's pieces: the perturbation stream, the antithetic estimator against a known gradient, and a real slot.
@Suite struct EvolutionStrategiesTests {
    /// The perturbation has zero mean and unit variance per draw, is a pure function of the seed, and differs
    /// between seeds (the estimator's expectation rests on all three).
    @Test func perturbationIsSeededWithUnitVariance() {
        let a = perturbation(count: 100_000, seed: 7)
        #expect(a == perturbation(count: 100_000, seed: 7))
        #expect(a != perturbation(count: 100_000, seed: 8))
        let mean = a.values.reduce(0.0) { $0 + Double($1) } / Double(a.count)
        let variance = a.values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(a.count)
        #expect(abs(mean) < 0.01, "mean \(mean)")
        #expect(abs(variance - 1) < 0.02, "variance \(variance)")
        // Irwin–Hall of four uniforms is bounded by ±2√3.
        #expect(a.values.allSatisfy { abs($0) <= 3.4642 })
    }

    /// Averaged over many pairs, the estimate points along −∇F of a quadratic fitness (for which the antithetic
    /// estimate is unbiased): a wrong sign, scale or a perturbation not reused by both members would fail this.
    @Test func estimateFollowsTheNegativeGradient() {
        let dimension = 20
        var rng = SeededRNG(seed: 3)
        let centre = ParameterVector((0..<dimension).map { _ in Float(rng.nextGaussian()) })
        let theta = ParameterVector((0..<dimension).map { _ in Float(rng.nextGaussian()) })
        // F(x) = −|x − c|², so −∇F(θ) = 2(θ − c).
        func fitness(_ x: ParameterVector, _ sign: Float) -> Double { -dot(difference(x, centre), difference(x, centre)) }
        var sum = ParameterVector(zeros: dimension)
        let pairs = 4_000
        for seed in 0..<pairs {
            axpy(1, evolutionGradient(theta: theta, sigma: 0.05, seed: UInt64(seed), fitness: fitness).gradient, &sum)
        }
        scale(&sum, by: 1 / Float(pairs))
        var expected = difference(theta, centre)
        scale(&expected, by: 2)
        let cosine = dot(sum, expected) / (norm(sum) * norm(expected))
        #expect(cosine > 0.98, "cosine \(cosine)")
        #expect(abs(norm(sum) / norm(expected) - 1) < 0.1, "norm ratio \(norm(sum) / norm(expected))")
    }

    /// A real ES-MAML slot: deterministic in its inputs, its update lies along the slot's own perturbation, and its
    /// statistics count both members' adaptations.
    @Test func slotIsDeterministicAndAlongItsPerturbation() throws {
        let task = TaskSpec.goalNavigation(GoalNavigationParameters(goalX: 0.4, goalY: 0.1))  // dense: F₊ ≠ F₋
        var dqn = DQNConfig()
        dqn.hiddenLayers = [16]; dqn.learningStarts = 20; dqn.batchSize = 16; dqn.bufferCapacity = 500
        let settings = InnerLoopSettings(dqn: dqn, budget: 300,
                                         evolution: EvolutionSettings(sigma: 0.05, fitnessEvery: 100, fitnessEpisodes: 1))
        let mlp = try makeNetwork(for: task, config: dqn)
        var rng = SeededRNG(seed: 11)
        let theta = mlp.initialParameters(using: &rng)
        let first = try runSlot(theta: theta, task: task, algorithm: .esMAML, settings: settings, seed: 42)
        let second = try runSlot(theta: theta, task: task, algorithm: .esMAML, settings: settings, seed: 42)
        #expect(first.update == second.update && first.statistics.meanReturn == second.statistics.meanReturn)
        #expect(first.statistics.environmentSteps == 600 && first.statistics.episodes > 0)
        let epsilon = perturbation(count: theta.count, seed: 42)
        let cosine = dot(first.update, epsilon) / max(norm(first.update) * norm(epsilon), 1e-30)
        #expect(norm(first.update) > 0 && abs(abs(cosine) - 1) < 1e-5, "cosine \(cosine)")
        // Without its settings an ES-MAML slot is refused, not run as something else.
        var bare = settings
        bare.evolution = nil
        #expect(throws: MetaLearningError.self) { try runSlot(theta: theta, task: task, algorithm: .esMAML, settings: bare, seed: 42) }
    }
}
