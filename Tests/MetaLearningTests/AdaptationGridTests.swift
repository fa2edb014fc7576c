import DQN
import MetaLearning
import Testing

/// The tuning grid of `metatrain eval --tune` (issue 36): parsing, expansion, settings and the ranking that picks.
@Suite struct AdaptationGridTests {
    @Test func parsesExpandsAndApplies() throws {
        let grid = try AdaptationGrid(parsing: "learning_rate=3e-4,1e-3; start_epsilon=1,0.5 ez_max_repeat=0,16")
        #expect(grid.axes.map(\.key) == ["learning_rate", "start_epsilon", "ez_max_repeat"])
        let points = grid.points
        #expect(points.count == 8 && points[0] == [3e-4, 1, 0] && points[1] == [3e-4, 1, 16] && points[7] == [1e-3, 0.5, 16])
        let d = try grid.apply(points[7], to: DQNConfig())
        #expect(d.learningRate == Float(1e-3) && d.startEpsilon == 0.5 && d.ezMaxRepeat == 16)
        #expect(try grid.apply(points[0], to: d).ezMaxRepeat == nil, "0 turns ε-z-greedy off")
        #expect(grid.describe(points[1]) == "{\"learning_rate\": 0.0003, \"start_epsilon\": 1, \"ez_max_repeat\": 16}")
    }

    @Test func refusesWhatItCannotSet() throws {
        for bad in ["", "learning_rate", "momentum=0.9", "learning_rate=1e-3,x", "learning_rate=1,1", "start_epsilon=1 start_epsilon=0.5"] {
            #expect(throws: GridError.self, "\(bad)") { try AdaptationGrid(parsing: bad) }
        }
        let grid = try AdaptationGrid(parsing: "learning_starts=50.5 start_epsilon=2")
        #expect(throws: GridError.self) { try grid.apply(grid.points[0], to: DQNConfig()) }
        #expect(throws: GridError.self) { try AdaptationGrid(parsing: "ez_max_repeat=1").apply([1], to: DQNConfig()) }
    }

    @Test func ranksByMedianThenReachedThenSmallerLearningRate() throws {
        let grid = try AdaptationGrid(parsing: "learning_rate=3e-3,1e-3 start_epsilon=1,0.5")
        let scores = [AdaptationGrid.Score(point: 0, medianSteps: 500, reached: 9, tasks: 10),
                      AdaptationGrid.Score(point: 1, medianSteps: 400, reached: 8, tasks: 10),
                      AdaptationGrid.Score(point: 2, medianSteps: 500, reached: 9, tasks: 10),
                      AdaptationGrid.Score(point: 3, medianSteps: 500, reached: 10, tasks: 10)]
        #expect(grid.ranked(scores).map(\.point) == [1, 3, 2, 0])
        // Never-reached tasks count as budget + every.
        let s = AdaptationGrid.Score(point: 0, steps: [100, nil, 300, nil], censoredAt: 8050)
        #expect(s.medianSteps == (300 + 8050) / 2 && s.reached == 2 && s.tasks == 4)
    }
}
