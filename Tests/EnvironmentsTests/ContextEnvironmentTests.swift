import Environments
import NeuralNet
import Testing

/// The context wrapper: the base observation first, then the last transitions newest first, cleared at reset.
@Suite struct ContextEnvironmentTests {
    static func goal() throws -> GoalNavigation2D {
        try GoalNavigation2D(GoalNavigationParameters(goalX: 0.1, goalY: 0, directions: 4, stepSize: 0.1, horizon: 10,
                                                      reward: .sparse, successRadius: 0.05, stayAction: true))
    }

    @Test func observationHoldsTheLastTransitionsNewestFirst() throws {
        var env = ContextEnvironment(try Self.goal(), window: 2)
        let actions = env.actionCount  // 4 moves + stay
        #expect(actions == 5)
        #expect(env.observationSize == 2 + 2 * (2 + actions + 1))
        var rng = SeededRNG(seed: 1)
        env.reset(using: &rng)
        #expect(env.observation.dropFirst(2).allSatisfy { $0 == 0 }, "no context before the first step")
        let start = Array(env.observation.prefix(2))
        // Move toward the goal at (0.1, 0): which move that is, the base decides; find it by trying each.
        let right = try (0..<actions).first { a in
            var e = try Self.goal(); var r = SeededRNG(seed: 1); e.reset(using: &r)
            return e.step(a).reward > 0
        }
        let move = try #require(right)
        let first = env.step(move)
        #expect(first.reward == 1)
        let after = env.observation
        let entry = 2 + actions + 1
        // Entry 0: the observation acted on, the action one-hot, the reward; entry 1 still empty.
        #expect(Array(after[2..<4]) == start)
        #expect((0..<actions).map { after[4 + $0] } == (0..<actions).map { $0 == move ? 1 : 0 })
        #expect(after[4 + actions] == 1)
        #expect(after[(2 + entry)...].allSatisfy { $0 == 0 })
        // A second step pushes the first back.
        let stay = actions - 1
        _ = env.step(stay)
        let later = env.observation
        #expect(Array(later[(2 + entry)..<(2 + 2 * entry)]) == Array(after[2..<(2 + entry)]))
        #expect(later[4 + stay] == 1)
        // Reset clears the context; the base environment is the same as unwrapped.
        env.reset(using: &rng)
        #expect(env.observation.dropFirst(2).allSatisfy { $0 == 0 })
        #expect(Array(env.observation.prefix(2)) == env.base.observation)
    }

    @Test func sizesFollowTheBase() throws {
        #expect(ContextEnvironment<GoalNavigation2D>.observationSize(base: 2, actions: 9, window: 4) == 2 + 4 * 12)
        let cart = ContextEnvironment(try CartPole(CartPoleParameters()), window: 3)
        #expect(cart.observationSize == 4 + 3 * (4 + 2 + 1) && cart.actionCount == 2)
    }
}
