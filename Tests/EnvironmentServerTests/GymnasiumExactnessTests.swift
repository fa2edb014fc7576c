import DQN
import Environments
import EnvironmentServer
import NeuralNet
import Testing

@Suite(.serialized) struct GymnasiumExactnessTests {
    static let physics = CartPoleParameters(gravity: 12.5, forceMagnitude: 7.25)

    static func remote(_ pool: EnvironmentServerPool, _ p: CartPoleParameters) throws -> CartPoleStartedLikeOurs {
        let task = GymnasiumTask(environmentID: "CartPole-v1",
                                 attributes: ["gravity": .double(p.gravity), "force_mag": .double(p.forceMagnitude)])
        return CartPoleStartedLikeOurs(remote: try pool.makeGymnasiumEnvironment(for: task), local: try CartPole(p))
    }

    @Test func gymnasiumCartPoleThroughTheServerStepsExactlyLikeOurs() throws {
        let pool = try ServerTestSupport.pool()
        var ours = try CartPole(Self.physics)
        var theirs = try Self.remote(pool, Self.physics)
        var a = SeededRNG(seed: 5), b = SeededRNG(seed: 5), actions = SeededRNG(seed: 6)
        ours.reset(using: &a); theirs.reset(using: &b)
        var episodes = 0, steps = 0
        while episodes < 12 {
            #expect(ours.observation == theirs.observation)
            let action = actions.nextInt(below: 2)
            let x = ours.step(action), y = theirs.step(action)
            #expect(x == y, "step \(steps): \(x) vs \(y)")
            steps += 1
            if x.terminated || x.truncated { episodes += 1; ours.reset(using: &a); theirs.reset(using: &b) }
        }
        #expect(steps > 100)
        #expect(theirs.fault == nil)
    }

    @Test func dqnAndReptileGiveTheSameParametersThroughTheServer() throws {
        let pool = try ServerTestSupport.pool()
        var config = DQNConfig()
        config.learningStarts = 50
        let tasks = [Self.physics, CartPoleParameters(gravity: 8.0, forceMagnitude: 12.0)]
        let mlp = try MLP(sizes: [4] + config.hiddenLayers + [2])
        var rng = SeededRNG(seed: 1)
        let theta0 = mlp.initialParameters(using: &rng)
        // Two iterations of batched Reptile (outer step 1: θ ← mean φ) over both tasks, each inner loop 400 steps.
        func reptile(_ adapt: (ParameterVector, CartPoleParameters, UInt64) throws -> ParameterVector) rethrows -> ParameterVector {
            var theta = theta0
            for iteration in 0..<2 {
                var updates: [ParameterVector] = []
                for (slot, task) in tasks.enumerated() {
                    let phi = try adapt(theta, task, deriveSeed(9, iteration: UInt64(iteration), slot: UInt64(slot), purpose: .innerLoop))
                    updates.append(difference(phi, theta))
                }
                axpy(1, mean(updates), &theta)
            }
            return theta
        }
        let ours = try reptile { theta, task, seed in
            var env = try CartPole(task)
            return try DQN.adapt(initial: theta, environment: &env, budget: 400, seed: seed, config: config).parameters
        }
        let theirs = try reptile { theta, task, seed in
            var env = try Self.remote(pool, task)
            return try DQN.adapt(initial: theta, environment: &env, budget: 400, seed: seed, config: config).parameters
        }
        #expect(ours.values.map(\.bitPattern) == theirs.values.map(\.bitPattern))
        #expect(ours.values != theta0.values)
    }
}
