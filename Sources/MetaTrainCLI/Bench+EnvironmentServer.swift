import DQN
import EnvironmentServer
import Environments
import Foundation
import NeuralNet

/// `metatrain bench`'s environment-server lines: what a step through the pipe costs, and the DQN inner loop on
/// gymnasium's own CartPole through it (against `adapt.cartpole`, the same loop on the built-in CartPole).
extension Bench {
    func benchEnvironmentServer() {
        var options = EnvironmentServerPool.Options(python: EnvironmentServerPool.Options.defaultPython,
                                                    allowedModules: ["metatrain_envserver.bench"])
        options.startTimeoutMs = 60_000
        let pool = EnvironmentServerPool(options: options)
        do {
            emit("envserver.ping", try pool.pingSeconds(count: 20_000) * 1e6, "us")
            emit("envserver.step.empty", try stepMicroseconds(pool, GymnasiumTask(entryPoint: "metatrain_envserver.bench:make_empty")), "us")
            emit("envserver.step.cartpole", try stepMicroseconds(pool, GymnasiumTask(environmentID: "CartPole-v1")), "us")
            let task = TaskSpec.gymnasium(GymnasiumTask(environmentID: "CartPole-v1"))
            ExternalEnvironments.install(pool)
            defer { ExternalEnvironments.install(nil) }
            let config = DQNConfig()
            let mlp = try makeNetwork(for: task, config: config)
            var rng = SeededRNG(seed: 4)
            let result = try adapt(initial: mlp.initialParameters(using: &rng), task: task, budget: adaptSteps, seed: 1, config: config)
            emit("adapt.gymnasium.cartpole", Double(result.environmentSteps) / result.seconds, "steps/s")
        } catch {
            emitText("envserver", "unavailable with python '\(options.python)': \(error) (scripts/envserver-venv.sh makes one)", "error")
        }
    }

    /// Mean microseconds per random-action step (resets included) over 20,000 steps.
    func stepMicroseconds(_ pool: EnvironmentServerPool, _ task: GymnasiumTask) throws -> Double {
        var env = try pool.makeGymnasiumEnvironment(for: task)
        var rng = SeededRNG(seed: 3)
        env.reset(using: &rng)
        let n = 20_000
        var observation = [Float](repeating: 0, count: env.observationSize)
        let seconds = time {
            for _ in 0..<n {
                let outcome = env.step(Int(rng.next() & 1))
                env.writeObservation(to: &observation)
                if outcome.terminated || outcome.truncated { env.reset(using: &rng) }
            }
        }
        try env.checkFault()
        return seconds / Double(n) * 1e6
    }
}
