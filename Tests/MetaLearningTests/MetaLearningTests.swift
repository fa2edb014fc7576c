import DQN
import Environments
import MetaLearning
import NeuralNet
import Testing

@Suite struct MetaLearningTests {
    @Test func reptileWithStepOneMovesThetaToTheMeanOfPhi() {
        var settings = MetaSettings()
        settings.algorithm = .reptile
        settings.schedule = .constant
        settings.outerStep = 1
        var state = MetaState(theta: ParameterVector([1, 1]), settings: settings)
        // Updates are φᵢ − θ: φ₁ = (2, 0), φ₂ = (4, 2) → mean φ = (3, 1).
        state.apply(updates: [ParameterVector([1, -1]), ParameterVector([3, 1])], settings: settings)
        #expect(state.theta == ParameterVector([3, 1]) && state.iteration == 1)
    }

    @Test func linearScheduleAnnealsTheOuterStep() {
        var settings = MetaSettings()
        settings.iterations = 4
        settings.outerStep = 1
        settings.schedule = .linear
        #expect(settings.outerStep(at: 0) == 1 && settings.outerStep(at: 2) == 0.5 && settings.outerStep(at: 3) == 0.25)
        var state = MetaState(theta: ParameterVector([0]), settings: settings)
        state.apply(updates: [ParameterVector([4])], settings: settings)   // β = 1
        state.apply(updates: [ParameterVector([4])], settings: settings)   // β = 0.75
        #expect(state.theta == ParameterVector([7]))
    }

    @Test func fomamlStepsAgainstTheMeanQueryGradient() {
        var settings = MetaSettings()
        settings.algorithm = .fomaml
        settings.schedule = .constant
        settings.outerStep = 0.5
        var state = MetaState(theta: ParameterVector([1, 1]), settings: settings)
        state.apply(updates: [ParameterVector([2, 0]), ParameterVector([0, 2])], settings: settings)
        #expect(state.theta == ParameterVector([0.5, 0.5]))
    }

    @Test(arguments: [MetaAlgorithm.reptile, .fomaml])  // MAML (SGD only): MAMLTests
    func slotsAreDeterministicAndFinite(algorithm: MetaAlgorithm) throws {
        var settings = InnerLoopSettings(budget: 300, querySteps: 64)
        settings.dqn.hiddenLayers = [8]
        settings.dqn.batchSize = 8
        settings.dqn.learningStarts = 50
        let task = TaskSpec.cartPole(CartPoleParameters(gravity: 14))
        var rng = SeededRNG(seed: 1)
        let theta = try makeNetwork(for: task, config: settings.dqn).initialParameters(using: &rng)
        let a = try runSlot(theta: theta, task: task, algorithm: algorithm, settings: settings, seed: 9)
        let b = try runSlot(theta: theta, task: task, algorithm: algorithm, settings: settings, seed: 9)
        #expect(a.update == b.update && a.update.isFinite && norm(a.update) > 0)
        #expect(a.update.count == theta.count)
        if algorithm == .fomaml { #expect(a.statistics.queryLoss > 0 && a.statistics.environmentSteps == 364) }
    }

    @Test func queryGradientIsDeterministicFiniteAndNonZero() throws {
        var config = DQNConfig()
        config.hiddenLayers = [16]
        let task = TaskSpec.goalNavigation(GoalNavigationParameters(goalX: 0.2, goalY: 0.1))
        var rng = SeededRNG(seed: 3)
        let phi = try makeNetwork(for: task, config: config).initialParameters(using: &rng)
        let q = try queryGradient(parameters: phi, task: task, steps: 200, seed: 4, config: config)
        let again = try queryGradient(parameters: phi, task: task, steps: 200, seed: 4, config: config)
        #expect(q.gradient == again.gradient && q.loss == again.loss)
        #expect(q.loss > 0 && q.gradient.isFinite && norm(q.gradient) > 0 && q.transitions == 200)
    }

    @Test func heldOutTasksAreFixedAndDisjointFromTraining() throws {
        let family = TaskFamily.cartPole(TaskFamily.CartPoleRanges())
        let a = try heldOutTask(family, runSeed: 1, index: 0), b = try heldOutTask(family, runSeed: 1, index: 0)
        #expect(a == b)
        // Disjoint by construction: no held-out seed is a training seed, for 1,000 iterations × 64 slots and
        // 200 held-out tasks, under two run seeds (equal seeds would draw equal tasks).
        for runSeed: UInt64 in [1, 7] {
            let training = Set((0..<1_000).flatMap { t in (0..<64).map { trainingTaskSeed(runSeed: runSeed, iteration: t, slot: $0) } })
            let heldOut = Set((0..<200).map { heldOutTaskSeed(runSeed: runSeed, index: $0) })
            #expect(training.count == 64_000 && heldOut.count == 200)
            #expect(training.isDisjoint(with: heldOut))
        }
    }
}
