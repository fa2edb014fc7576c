import ArgumentParser
import DQN
import EnvironmentServer
import Environments
import Foundation
import NeuralNet

/// `metatrain train`: DQN on one task from a fresh network, with progress and final returns.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train DQN from scratch on one task and report episode returns.")

    enum Preset: String, ExpressibleByArgument, CaseIterable {
        /// shared/reference/dqn_torch.py's settings (for side-by-side speed comparisons).
        case reference
        /// The tuned setting the CartPole learning check uses.
        case solver
    }

    @Option(help: "Environment: \(TaskSpec.kindNames.joined(separator: ", ")), or gymnasium:ID (any registered gymnasium id, e.g. gymnasium:LunarLander-v3, through an environment server).")
    var env = "cartpole"
    @OptionGroup var environmentServer: EnvironmentServerOptions
    @Option(help: "Env steps to train.")
    var steps = 50_000
    @Option(help: "Seed of the network initialisation and the inner loop.")
    var seed: UInt64 = 1
    @Option(help: "DQN settings: reference (the PyTorch peer's) or solver (tuned for CartPole).")
    var preset: Preset = .solver
    @Option(help: "Goal of goal_navigation as x,y.")
    var goal = "0.3,0.3"
    @Option(help: "Report the env step where the mean of 20 consecutive training episodes first reaches this.")
    var targetReturn = 195.0
    @Option(help: "Greedy evaluation episodes after training.")
    var evalEpisodes = 20
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
    @Option(help: "Override the preset's learning rate.") var lr: Float?
    @Option(help: "Override the preset's hidden widths, e.g. 64,64.") var hidden: String?
    @Option(help: "Override the preset's batch size.") var batch: Int?
    @Option(help: "Override the preset's gradient updates between target updates.") var targetInterval: Int?
    @Option(help: "Override the preset's exploration fraction.") var explorationFraction: Float?
    @Option(help: "Override the preset's train frequency (env steps per update).") var trainFrequency: Int?
    @Option(help: "Override double DQN (true/false).") var doubleDqn: Bool?
    @Option(help: "Override the loss (huber/mse).") var loss: String?

    /// The preset with any overrides applied, validated.
    func dqnConfig() throws -> DQNConfig {
        var c = preset == .solver ? DQNConfig.cartPoleSolver : DQNConfig()
        if let lr { c.learningRate = lr }
        if let hidden {
            let widths = hidden.split(separator: ",").compactMap { Int($0) }
            guard !widths.isEmpty else { throw ValidationError("--hidden must be widths like 64,64, got '\(hidden)'") }
            c.hiddenLayers = widths
        }
        if let batch { c.batchSize = batch }
        if let targetInterval { c.targetUpdateInterval = targetInterval }
        if let explorationFraction { c.explorationFraction = explorationFraction }
        if let trainFrequency { c.trainFrequency = trainFrequency }
        if let doubleDqn { c.doubleDQN = doubleDqn }
        if let loss {
            guard let l = RegressionLoss(rawValue: loss) else { throw ValidationError("--loss must be huber or mse") }
            c.loss = l
        }
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }

    func run() throws {
        var task = TaskSpec.defaultTask(kind: env)
        if env.hasPrefix("gymnasium:") {
            let id = String(env.dropFirst("gymnasium:".count))
            task = .gymnasium(GymnasiumTask(environmentID: id))
            ExternalEnvironments.install(EnvironmentServerPool(options: environmentServer.options))
        }
        guard task != nil else {
            throw ValidationError("unknown environment '\(env)'; choose one of \(TaskSpec.kindNames.joined(separator: ", ")), or gymnasium:ID")
        }
        if env == "goal_navigation" {
            let parts = goal.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2 else { throw ValidationError("--goal must be x,y, got '\(goal)'") }
            task = .goalNavigation(GoalNavigationParameters(goalX: parts[0], goalY: parts[1]))
        }
        guard steps >= 0 else { throw ValidationError("--steps must be ≥ 0") }
        let config = try dqnConfig()
        let spec = task!
        let mlp = try makeNetwork(for: spec, config: config)
        var rng = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .networkInit))
        let initial = mlp.initialParameters(using: &rng)

        var window: [Double] = []
        var lastPrint = 0
        var reachedAt: Int? = nil
        let target = targetReturn
        let quiet = json
        let result = try adapt(initial: initial, task: spec, budget: steps, seed: seed, config: config) { step, ret in
            window.append(ret)
            if window.count > 20 { window.removeFirst() }
            if reachedAt == nil && window.count == 20 && window.reduce(0, +) / 20 >= target { reachedAt = step }
            if !quiet && step - lastPrint >= max(steps / 20, 1) {
                lastPrint = step
                let mean = window.reduce(0, +) / Double(window.count)
                print(String(format: "step %7d  mean return of the last %2d episodes %8.2f", step, window.count, mean))
            }
        }
        let greedy = try evaluateGreedy(result.parameters, task: spec, episodes: evalEpisodes, seed: seed, config: config)
        let best20 = bestWindowMean(result.episodeReturns, window: 20)
        let greedyMean = greedy.isEmpty ? 0 : greedy.reduce(0, +) / Double(greedy.count)
        let random = try evaluateRandom(task: spec, episodes: max(evalEpisodes, 1), seed: seed)
        let randomMean = random.reduce(0, +) / Double(random.count)
        if json {
            let out: [String: Any] = [
                "env": env, "steps": steps, "seed": seed, "preset": preset.rawValue,
                "episodes": result.episodeReturns.count, "gradient_updates": result.gradientUpdates,
                "seconds": result.seconds, "env_steps_per_second": Double(steps) / max(result.seconds, 1e-9),
                "mean_loss": result.meanLoss, "best_mean_return_20": best20 as Any,
                "last_returns": Array(result.episodeReturns.suffix(20)), "greedy_mean_return": greedyMean,
                "random_mean_return": randomMean, "target_return": target, "target_reached_at_step": reachedAt as Any,
            ]
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "trained %d env steps, %d episodes, %d updates in %.2f s (%.0f env steps/s)",
                         steps, result.episodeReturns.count, result.gradientUpdates, result.seconds,
                         Double(steps) / max(result.seconds, 1e-9)))
            if let best20 { print(String(format: "best mean return over 20 consecutive training episodes: %.2f", best20)) }
            print("mean of 20 consecutive episodes first ≥ \(target) at env step: \(reachedAt.map(String.init) ?? "never")")
            print("last returns: \(result.episodeReturns.suffix(10).map { String(format: "%.1f", $0) }.joined(separator: " "))")
            print(String(format: "greedy mean return over %d episodes: %.2f (random policy: %.2f)", greedy.count, greedyMean, randomMean))
        }
    }
}

/// The best mean over `window` consecutive values, or nil if there are fewer than `window`.
func bestWindowMean(_ values: [Double], window: Int) -> Double? {
    guard values.count >= window else { return nil }
    var sum = values[0..<window].reduce(0, +), best = sum
    for i in window..<values.count {
        sum += values[i] - values[i - window]
        best = max(best, sum)
    }
    return best / Double(window)
}
