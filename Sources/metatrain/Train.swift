import ArgumentParser
import DQN
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

    @Option(help: "Environment: \(TaskSpec.kindNames.joined(separator: ", ")).")
    var env = "cartpole"
    @Option(help: "Env steps to train.")
    var steps = 50_000
    @Option(help: "Seed of the network initialisation and the inner loop.")
    var seed: UInt64 = 1
    @Option(help: "DQN settings: reference (the PyTorch peer's) or solver (tuned for CartPole).")
    var preset: Preset = .solver
    @Option(help: "Goal of goal_navigation as x,y.")
    var goal = "0.3,0.3"
    @Option(help: "Greedy evaluation episodes after training.")
    var evalEpisodes = 20
    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        var task = TaskSpec.defaultTask(kind: env)
        guard task != nil else {
            throw ValidationError("unknown environment '\(env)'; choose one of \(TaskSpec.kindNames.joined(separator: ", "))")
        }
        if env == "goal_navigation" {
            let parts = goal.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2 else { throw ValidationError("--goal must be x,y, got '\(goal)'") }
            task = .goalNavigation(GoalNavigationParameters(goalX: parts[0], goalY: parts[1]))
        }
        guard steps >= 0 else { throw ValidationError("--steps must be ≥ 0") }
        let config = preset == .solver ? DQNConfig.cartPoleSolver : DQNConfig()
        let spec = task!
        let mlp = try makeNetwork(for: spec, config: config)
        var rng = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .networkInit))
        let initial = mlp.initialParameters(using: &rng)

        var window: [Double] = []
        var lastPrint = 0
        let quiet = json
        let result = try adapt(initial: initial, task: spec, budget: steps, seed: seed, config: config) { step, ret in
            window.append(ret)
            if window.count > 20 { window.removeFirst() }
            if !quiet && step - lastPrint >= max(steps / 20, 1) {
                lastPrint = step
                let mean = window.reduce(0, +) / Double(window.count)
                print(String(format: "step %7d  episodes-so-far window mean return (last %2d) %8.2f", step, window.count, mean))
            }
        }
        let greedy = try evaluateGreedy(result.parameters, task: spec, episodes: evalEpisodes, seed: seed, config: config)
        let best20 = bestWindowMean(result.episodeReturns, window: 20)
        let greedyMean = greedy.isEmpty ? 0 : greedy.reduce(0, +) / Double(greedy.count)
        if json {
            let out: [String: Any] = [
                "env": env, "steps": steps, "seed": seed, "preset": preset.rawValue,
                "episodes": result.episodeReturns.count, "gradient_updates": result.gradientUpdates,
                "seconds": result.seconds, "env_steps_per_second": Double(steps) / max(result.seconds, 1e-9),
                "mean_loss": result.meanLoss, "best_mean_return_20": best20 as Any,
                "last_returns": Array(result.episodeReturns.suffix(20)), "greedy_mean_return": greedyMean,
            ]
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "trained %d env steps, %d episodes, %d updates in %.2f s (%.0f env steps/s)",
                         steps, result.episodeReturns.count, result.gradientUpdates, result.seconds,
                         Double(steps) / max(result.seconds, 1e-9)))
            if let best20 { print(String(format: "best mean return over 20 consecutive training episodes: %.2f", best20)) }
            print("last returns: \(result.episodeReturns.suffix(10).map { String(format: "%.1f", $0) }.joined(separator: " "))")
            print(String(format: "greedy mean return over %d episodes: %.2f", greedy.count, greedyMean))
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
