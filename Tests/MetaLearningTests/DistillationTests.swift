import DQN
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Testing

/// Policy distillation (`meta.algorithm: distill`): the student moves to its teachers' Q-values, deterministically.
@Suite struct DistillationTests {
    static var config: DQNConfig {
        var c = DQNConfig()
        c.hiddenLayers = [16, 16]
        return c
    }

    static let tasks: [TaskSpec] = [
        .goalNavigation(GoalNavigationParameters(goalX: 0.4, goalY: 0.1)),
        .goalNavigation(GoalNavigationParameters(goalX: -0.3, goalY: 0.35)),
    ]

    static func network(seed: UInt64) throws -> (MLP, ParameterVector) {
        let mlp = try makeNetwork(for: tasks[0], config: config)
        var rng = SeededRNG(seed: seed)
        return (mlp, mlp.initialParameters(using: &rng))
    }

    /// Mean squared difference of two networks' Q-values over `inputs`.
    static func gap(_ mlp: MLP, _ a: ParameterVector, _ b: ParameterVector, _ inputs: [Float]) -> Float {
        let ws = MLPWorkspace(mlp: mlp, capacity: inputs.count / mlp.inputSize)
        let qa = mlp.predict(a, inputs: inputs, workspace: ws), qb = mlp.predict(b, inputs: inputs, workspace: ws)
        return zip(qa, qb).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(qa.count)
    }

    @Test func studentMovesToItsTeacher() throws {
        let (mlp, theta) = try Self.network(seed: 1)
        let (_, teacher) = try Self.network(seed: 2)
        var settings = DistillationSettings()
        settings.states = 400
        settings.steps = 400
        settings.batchSize = 64
        let student = try distill(student: theta, experts: [(teacher, Self.tasks[0])], config: Self.config, settings: settings, seed: 9)
        // Held-out inputs: a grid over the arena, not the states it was fitted on.
        let grid = stride(from: Float(-1), through: 1, by: 0.25).flatMap { x in stride(from: Float(-1), through: 1, by: 0.25).flatMap { y in [x, y] } }
        let before = Self.gap(mlp, theta, teacher, grid), after = Self.gap(mlp, student, teacher, grid)
        #expect(after < before / 4, "Q gap to the teacher \(before) → \(after)")
    }

    /// Matching advantages moves the student's action preferences to the teacher's and leaves the level of its values.
    @Test func advantageStudentMatchesPreferencesNotLevels() throws {
        let (mlp, theta) = try Self.network(seed: 1)
        var (_, teacher) = try Self.network(seed: 2)
        // Lift every teacher Q by 50 (the output biases): values differ hugely, advantages not at all.
        let biases = mlp.parameterCount - mlp.outputSize
        for a in 0..<mlp.outputSize { teacher.values[biases + a] += 50 }
        var settings = DistillationSettings()
        settings.states = 400
        settings.steps = 400
        settings.batchSize = 64
        settings.match = .advantages
        let student = try distill(student: theta, experts: [(teacher, Self.tasks[0])], config: Self.config, settings: settings, seed: 9)
        let grid = stride(from: Float(-1), through: 1, by: 0.25).flatMap { x in stride(from: Float(-1), through: 1, by: 0.25).flatMap { y in [x, y] } }
        func centred(_ p: ParameterVector) -> [Float] {
            let q = mlp.predict(p, inputs: grid, workspace: MLPWorkspace(mlp: mlp, capacity: grid.count / mlp.inputSize))
            return stride(from: 0, to: q.count, by: mlp.outputSize).flatMap { r -> [Float] in
                let row = q[r..<(r + mlp.outputSize)], mean = row.reduce(0, +) / Float(mlp.outputSize)
                return row.map { $0 - mean }
            }
        }
        func distance(_ x: [Float], _ y: [Float]) -> Float { zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(x.count) }
        #expect(distance(centred(student), centred(teacher)) < distance(centred(theta), centred(teacher)) / 4)
        // The level stays near θ's, 50 below the teacher's.
        #expect(Self.gap(mlp, student, teacher, grid) > 1_000, "values were fitted, not only advantages")
    }

    @Test func deterministicInItsInputsAndSeed() throws {
        let (_, theta) = try Self.network(seed: 1)
        let experts = try (0..<2).map { i in (try Self.network(seed: 10 + UInt64(i)).1, Self.tasks[i]) }
        var settings = DistillationSettings()
        settings.states = 100
        settings.steps = 20
        let a = try distill(student: theta, experts: experts, config: Self.config, settings: settings, seed: 5)
        let b = try distill(student: theta, experts: experts, config: Self.config, settings: settings, seed: 5)
        let c = try distill(student: theta, experts: experts, config: Self.config, settings: settings, seed: 6)
        let swapped = try distill(student: theta, experts: experts.reversed(), config: Self.config, settings: settings, seed: 5)
        #expect(a.values.map(\.bitPattern) == b.values.map(\.bitPattern))
        #expect(a != c && a != swapped)
        #expect(try distill(student: theta, experts: [], config: Self.config, settings: settings, seed: 5) == theta)
    }

    @Test func refusesWhatDoesNotFit() throws {
        let (_, theta) = try Self.network(seed: 1)
        var bad = DistillationSettings()
        bad.epsilon = 1.5
        #expect(throws: (any Error).self) { try distill(student: theta, experts: [(theta, Self.tasks[0])], config: Self.config, settings: bad, seed: 1) }
        // An expert for a task whose network has another shape (CartPole: 4 inputs, 2 actions).
        #expect(throws: (any Error).self) {
            try distill(student: theta, experts: [(theta, .cartPole(CartPoleParameters()))], config: Self.config, settings: DistillationSettings(), seed: 1)
        }
        #expect(throws: (any Error).self) {
            try distill(student: ParameterVector([1, 2]), experts: [(theta, Self.tasks[0])], config: Self.config, settings: DistillationSettings(), seed: 1)
        }
    }
}
