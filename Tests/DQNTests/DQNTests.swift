import DQN
import Environments
import NeuralNet
import Testing

@Suite struct DQNTests {
    static func smallConfig() -> DQNConfig {
        var c = DQNConfig()
        c.hiddenLayers = [16, 16]
        c.batchSize = 16
        c.learningStarts = 100
        c.bufferCapacity = 500
        c.targetUpdateInterval = 50
        return c
    }

    static func initial(_ task: TaskSpec, _ config: DQNConfig, seed: UInt64 = 1) throws -> ParameterVector {
        var rng = SeededRNG(seed: seed)
        return try makeNetwork(for: task, config: config).initialParameters(using: &rng)
    }

    @Test(arguments: [false, true])
    func adaptIsBitIdenticalForTheSameInputs(doubleDQN: Bool) throws {
        var config = Self.smallConfig()
        config.doubleDQN = doubleDQN
        config.maxGradientNorm = doubleDQN ? 1 : nil
        config.targetUpdateTau = doubleDQN ? 0.1 : 1
        let task = TaskSpec.cartPole(CartPoleParameters(gravity: 12, length: 0.7))
        let theta = try Self.initial(task, config)
        let a = try adapt(initial: theta, task: task, budget: 1_500, seed: 5, config: config)
        let b = try adapt(initial: theta, task: task, budget: 1_500, seed: 5, config: config)
        let c = try adapt(initial: theta, task: task, budget: 1_500, seed: 6, config: config)
        #expect(a.parameters == b.parameters && a.episodeReturns == b.episodeReturns && a.meanLoss == b.meanLoss)
        #expect(a.parameters != c.parameters)
        #expect(a.parameters != theta && a.parameters.isFinite)
        #expect(a.environmentSteps == 1_500 && a.gradientUpdates == 1_500 - 101)
        #expect(a.meanLoss > 0)
    }

    /// `profiledUpdate` (metatrain bench --profile) is the update itself, timed: the same losses and bits, and a time
    /// for every phase.
    @Test(arguments: [false, true])
    func profiledUpdatesAreTheUpdates(doubleDQN: Bool) throws {
        var config = Self.smallConfig()
        config.doubleDQN = doubleDQN
        config.targetUpdateInterval = 3
        let mlp = try MLP(sizes: [4, 16, 16, 2])
        var rng = SeededRNG(seed: 11)
        let theta = mlp.initialParameters(using: &rng)
        var buffer = ReplayBuffer(capacity: config.bufferCapacity, observationSize: 4)
        for _ in 0..<200 {
            buffer.add(observation: (0..<4).map { _ in Float(rng.nextGaussian()) }, action: rng.nextInt(below: 2), reward: 1,
                       nextObservation: (0..<4).map { _ in Float(rng.nextGaussian()) }, terminal: rng.nextFloat() < 0.1)
        }
        let plain = DQNLearner(mlp: mlp, initial: theta, config: config), timed = DQNLearner(mlp: mlp, initial: theta, config: config)
        var r1 = SeededRNG(seed: 3), r2 = SeededRNG(seed: 3)
        var seconds = [Double](repeating: 0, count: UpdatePhase.allCases.count)
        for _ in 0..<10 {
            #expect(plain.update(from: buffer, using: &r1) == timed.profiledUpdate(from: buffer, using: &r2, seconds: &seconds))
        }
        #expect(plain.parameters == timed.parameters && plain.targetParameters == timed.targetParameters)
        let unused: Set<UpdatePhase> = doubleDQN ? [] : [.onlineNextForward]
        #expect(UpdatePhase.allCases.allSatisfy { unused.contains($0) || seconds[$0.rawValue] > 0 }, "\(seconds)")
    }

    @Test func everyEnvironmentKindRunsThroughTheInnerLoop() throws {
        let config = Self.smallConfig()
        for task in TaskSpec.kindNames.compactMap(TaskSpec.defaultTask(kind:)) {
            let theta = try Self.initial(task, config)
            // 600 steps: every default task's episode ends by then (MountainCar truncates at 200).
            let result = try adapt(initial: theta, task: task, budget: 600, seed: 2, config: config)
            #expect(result.parameters.isFinite && result.parameters != theta, "\(task.kindName) learned nothing")
            #expect(!result.episodeReturns.isEmpty, "\(task.kindName) finished no episode")
        }
    }

    @Test func badInputsAreTypedErrors() throws {
        let task = TaskSpec.cartPole(CartPoleParameters())
        let config = Self.smallConfig()
        #expect(throws: DQNError.parameterCount(expected: 4 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2, got: 3)) {
            try adapt(initial: ParameterVector([1, 2, 3]), task: task, budget: 10, seed: 0, config: config)
        }
        #expect(throws: DQNError.invalidBudget(-1)) {
            try adapt(initial: Self.initial(task, config), task: task, budget: -1, seed: 0, config: config)
        }
        var bad = config
        bad.gamma = 1.5
        #expect(throws: DQNError.self) { try bad.validate() }
        bad = config
        bad.batchSize = 10_000
        #expect(throws: DQNError.self) { try bad.validate() }
        #expect(throws: EnvironmentError.self) {
            try adapt(initial: ParameterVector([]), task: .cartPole(CartPoleParameters(massPole: -1)), budget: 1, seed: 0)
        }
    }

    @Test func epsilonFollowsCleanRLsLinearSchedule() {
        var c = DQNConfig()
        c.startEpsilon = 1; c.endEpsilon = 0.05; c.explorationFraction = 0.5
        #expect(c.epsilon(step: 0, budget: 1000) == 1)
        #expect(abs(c.epsilon(step: 250, budget: 1000) - 0.525) < 1e-6)
        #expect(abs(c.epsilon(step: 500, budget: 1000) - 0.05) < 1e-6)
        #expect(c.epsilon(step: 999, budget: 1000) == 0.05)
    }

    @Test func replayBufferIsARingAndSamplesWhatWasStored() {
        var buffer = ReplayBuffer(capacity: 4, observationSize: 2)
        for i in 0..<6 {
            let o: [Float] = [Float(i), Float(-i)], n: [Float] = [Float(i + 1), 0]
            buffer.add(observation: o, action: i % 2, reward: Float(i) * 10, nextObservation: n, terminal: i == 5)
        }
        #expect(buffer.count == 4)
        var batch = ReplayBuffer.Batch(size: 64, observationSize: 2)
        var rng = SeededRNG(seed: 1)
        buffer.sample(into: &batch, using: &rng)
        var seen = Set<Int>()
        for r in 0..<64 {
            let i = Int(batch.observations[2 * r])
            seen.insert(i)
            #expect(i >= 2 && i <= 5, "the two oldest transitions were overwritten")
            #expect(batch.observations[2 * r + 1] == Float(-i) && batch.nextObservations[2 * r] == Float(i + 1))
            #expect(batch.rewards[r] == Float(i) * 10 && batch.actions[r] == Int32(i % 2))
            #expect(batch.terminals[r] == (i == 5 ? 1 : 0))
        }
        #expect(seen == [2, 3, 4, 5])
    }

    /// A small learning check that runs in debug builds: a fixed-goal navigation task learned in 3,000
    /// steps must beat the random policy by a wide margin (the release-mode checks live in
    /// scripts/learning-check.sh).
    @Test func learnsAFixedGoalNavigationTask() throws {
        var config = DQNConfig.cartPoleSolver
        config.hiddenLayers = [32, 32]
        config.learningStarts = 300
        let task = TaskSpec.goalNavigation(GoalNavigationParameters(goalX: 0.3, goalY: -0.4, horizon: 50))
        let theta = try Self.initial(task, config)
        let result = try adapt(initial: theta, task: task, budget: 4_000, seed: 3, config: config)
        let learned = try evaluateGreedy(result.parameters, task: task, episodes: 5, seed: 1, config: config)
        let random = try evaluateRandom(task: task, episodes: 50, seed: 1)
        let learnedMean = learned.reduce(0, +) / 5, randomMean = random.reduce(0, +) / 50
        #expect(learnedMean > randomMean / 4, "learned \(learnedMean) vs random \(randomMean)")
    }
}

/// A context-conditioned DQN (`DQNConfig.contextWindow`): its network sees the wrapped observation everywhere.
@Suite struct ContextDQNTests {
    @Test func everyEntryPointUsesTheContextNetwork() throws {
        var config = DQNConfig()
        config.hiddenLayers = [16]
        config.learningStarts = 20
        config.batchSize = 8
        config.bufferCapacity = 200
        config.contextWindow = 3
        let task = TaskSpec.goalNavigation(GoalNavigationParameters(goalX: 0.3, goalY: 0.2))
        let mlp = try makeNetwork(for: task, config: config)
        #expect(mlp.inputSize == 2 + 3 * (2 + 8 + 1))
        var rng = SeededRNG(seed: 4)
        let theta = mlp.initialParameters(using: &rng)
        let a = try adapt(initial: theta, task: task, budget: 300, seed: 1, config: config)
        let b = try adapt(initial: theta, task: task, budget: 300, seed: 1, config: config)
        #expect(a.parameters == b.parameters && a.gradientUpdates > 0)
        #expect(try evaluateGreedy(a.parameters, task: task, episodes: 2, seed: 3, config: config).count == 2)
        #expect(try queryGradient(parameters: a.parameters, task: task, steps: 32, seed: 2, config: config).gradient.count == theta.count)
        // Multi-task pretraining goes through `adapt(environment:)`, which wraps the environment it is given.
        var tasks = try MultiTaskEnvironment(family: .goalNavigation(TaskFamily.GoalNavigationRanges()), using: &rng)
        #expect(try adapt(initial: theta, environment: &tasks, budget: 100, seed: 1, config: config).environmentSteps == 100)
        // Without context the same θ does not fit.
        var plain = config
        plain.contextWindow = nil
        #expect(throws: DQNError.self) { try adapt(initial: theta, task: task, budget: 10, seed: 1, config: plain) }
        plain.contextWindow = 65
        #expect(throws: DQNError.self) { try plain.validate() }
    }
}

/// ε-z-greedy exploration (issue 36): exploratory actions held for zeta(2)-distributed runs, capped.
@Suite struct EZGreedyTests {
    /// An environment that records the actions it is given (one long episode, nothing to learn).
    struct Recorder: Environment {
        var actions: [Int] = []
        var observationSize: Int { 1 }
        var actionCount: Int { 4 }
        var maxEpisodeSteps: Int { 1_000_000 }
        var state: [Double] { [] }
        mutating func reset(using rng: inout SeededRNG) {}
        mutating func setState(_ state: [Double]) throws {}
        mutating func step(_ action: Int) -> StepOutcome {
            actions.append(action)
            return StepOutcome(reward: 0, terminated: false, truncated: false)
        }
        func writeObservation(to buffer: UnsafeMutablePointer<Float>) { buffer[0] = 0 }
    }

    static func actions(ez: Int?) throws -> [Int] {
        var c = DQNConfig()
        c.hiddenLayers = [4]; c.startEpsilon = 1; c.endEpsilon = 1; c.learningStarts = 1_000_000
        c.ezMaxRepeat = ez
        var env = Recorder()
        let mlp = try MLP(sizes: [1, 4, 4])
        var rng = SeededRNG(seed: 1)
        _ = try adapt(initial: mlp.initialParameters(using: &rng), environment: &env, budget: 20_000, seed: 7, config: c)
        return env.actions
    }

    /// Lengths of the runs of equal consecutive actions.
    static func runs(_ a: [Int]) -> [Int] {
        var out: [Int] = [], n = 1
        for i in 1..<a.count { if a[i] == a[i - 1] { n += 1 } else { out.append(n); n = 1 } }
        return out + [n]
    }

    @Test func zetaCDFIsTheNormalisedInverseSquares() {
        let cdf = DQNConfig.zetaCDF(cap: 16)
        let h = (1...16).reduce(0.0) { $0 + 1 / Double($1 * $1) }
        #expect(cdf.count == 16 && abs(Double(cdf[0]) - 1 / h) < 1e-6 && abs(cdf[15] - 1) < 1e-6)
        #expect(zip(cdf, cdf.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test func exploratoryActionsAreHeldForLongerRunsUpToTheCap() throws {
        let plain = Self.runs(try Self.actions(ez: nil)), held = Self.runs(try Self.actions(ez: 16))
        let meanPlain = Double(plain.reduce(0, +)) / Double(plain.count), meanHeld = Double(held.reduce(0, +)) / Double(held.count)
        // Uniform over 4 actions: runs of mean 4/3. Held runs of zeta(2) length (mean 2.13 below the cap of 16) merge
        // when the next draw picks the same action: mean ≈ 2.13 × 4/3 ≈ 2.8.
        #expect(abs(meanPlain - 4.0 / 3) < 0.1, "plain ε-greedy run length \(meanPlain)")
        #expect(meanHeld > 2.4 && meanHeld < 3.3, "ε-z-greedy run length \(meanHeld)")
        #expect(held.contains { $0 >= 16 }, "the cap is reached (runs may merge past it)")
    }

    @Test func plainEpsilonGreedyIsUnchangedByTheOption() throws {
        // Without the option the loop draws as ε-greedy always did (one uniform per step, one more per exploratory
        // action): the first actions are pinned, so a change to the draws — which would change every run's θ — fails here.
        let plain = try Self.actions(ez: nil)
        #expect(Array(plain.prefix(16)) == Self.pinned)
        #expect(try Self.actions(ez: 2) != plain)
    }
    static let pinned = [0, 2, 3, 3, 2, 3, 0, 1, 0, 3, 0, 2, 2, 2, 3, 3]

    @Test func theOptionIsValidated() {
        var c = DQNConfig()
        c.ezMaxRepeat = 1
        #expect(throws: DQNError.self) { try c.validate() }
        c.ezMaxRepeat = 2
        #expect(throws: Never.self) { try c.validate() }
    }
}
