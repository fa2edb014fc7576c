import Foundation
@testable import MetaLearning
import Testing

/// `SeedComparison`: pooled medians, ratios, paired counts and the bootstrap are checked on hand-made runs.
@Suite struct SeedComparisonTests {
    /// An eval JSON object whose init `name` reaches target 1 at step `steps[name][i]` on task i (nil: never).
    static func run(seed: Int, budget: Int = 400, every: Int = 100, _ steps: [(String, [Int?])], split: String = "test") -> Data {
        let points = budget / every + 1
        func curve(_ s: Int?) -> String {
            "[" + (0..<points).map { j in s.map { j * every >= $0 ? "1.0" : "0.0" } ?? "0.0" }.joined(separator: ", ") + "]"
        }
        let names = steps.map(\.0)
        let inits = names.map { "\"\($0)\": [{\"step\": 0, \"mean_return\": 0, \"ci95\": null}]" }.joined(separator: ", ")
        let curves = steps.map { "\"\($0.0)\": [" + $0.1.map(curve).joined(separator: ", ") + "]" }.joined(separator: ", ")
        return Data(("{\"family\": \"goal_navigation\", \"budget\": \(budget), \"every\": \(every), \"target_return\": 1.0, "
                     + "\"init_names\": [" + names.map { "\"\($0)\"" }.joined(separator: ", ") + "], \"inits\": {\(inits)}, "
                     + "\"curves_per_task\": {\(curves)}, \"split\": \"\(split)\", \"run_seed\": \(seed), \"algorithm\": \"reptile\"}").utf8)
    }

    @Test func pooledMediansRatiosAndPairedCountsMatchHandComputedValues() throws {
        let a = try EvaluationRun(json: Self.run(seed: 1, [("meta", [100, 100, 200]), ("random", [300, 400, nil]),
                                                           ("multitask", [200, 300, 100])]), source: "a")
        let b = try EvaluationRun(json: Self.run(seed: 2, [("meta", [100, nil, 100]), ("random", [400, 400, 300]),
                                                           ("multitask", [300, 200, 200])]), source: "b")
        #expect(a.names == ["meta", "random", "multitask"] && a.runSeed == 1)
        let c = try SeedComparison(runs: [a, b], resamples: 2000, bootstrapSeed: 7)
        #expect(c.baselines == ["random", "multitask"] && c.censoredAt == 500)
        let (inits, ratios) = c.summarise()
        // meta: 100, 100, 200, 100, 500 (never), 100 → median 100; random: 300 400 500 400 400 300 → 400; multitask: 200 300 100 300 200 200 → 200.
        #expect(inits.map(\.median.value) == [100, 400, 200])
        #expect(inits[0].reached == 5 && inits[0].tasks == 6 && inits[1].reached == 5)
        #expect(inits[0].perRun == [100, 100])
        #expect(ratios.map(\.baseline) == ["random", "multitask", "best baseline"])
        #expect(ratios.map(\.ratio.value) == [4, 2, 2])
        // Paired against multitask: meta sooner on tasks 1, 2, 4, 6; tied on none; later on 3 (200 vs 100) and 5 (never vs 200).
        #expect(ratios[1].wins == 4 && ratios[1].ties == 0 && ratios[1].losses == 2)
        for e in inits.map(\.median) + ratios.map(\.ratio) { #expect(e.low <= e.value && e.value <= e.high) }
        // No curve starts at the target (1), so no task stays at or above it throughout; every task stays ≥ 0.
        #expect(c.staysAbove(1).allSatisfy { $0.count == 0 } && c.staysAbove(0).allSatisfy { $0.count == 6 && $0.fraction.value == 1 })
        // The bootstrap is seeded: the same seed, the same intervals.
        let again = try SeedComparison(runs: [a, b], resamples: 2000, bootstrapSeed: 7).summarise()
        #expect(again.ratios == ratios && again.inits == inits)
    }

    @Test func zeroShotReturnIsTheMeanAtStepZeroWithItsInterval() throws {
        // meta solves tasks 1 and 3 before any step (return 1 at step 0), random none; at step 100 meta all, random 2 of 3.
        let r = try EvaluationRun(json: Self.run(seed: 1, [("meta", [0, 100, 0]), ("random", [100, 100, nil])]), source: "r")
        let c = try SeedComparison(runs: [r], resamples: 1000, bootstrapSeed: 3)
        let zero = c.meanReturn(atPoint: 0), later = c.meanReturn(atPoint: 1)
        #expect(zero.map(\.name) == ["meta", "random"])
        #expect(abs(zero[0].mean.value - 2.0 / 3) < 1e-12 && zero[1].mean.value == 0)
        #expect(zero[0].mean.low <= zero[0].mean.value && zero[0].mean.value <= zero[0].mean.high && zero[0].mean.high <= 1)
        #expect(later[0].mean.value == 1 && abs(later[1].mean.value - 2.0 / 3) < 1e-12)
    }

    /// An init at the target before any adaptation makes a median of 0: the ratio is infinite (or 0/0) as measured,
    /// and finite with a floor of one scoring interval, which also turns a 0-versus-100 task into a tie.
    @Test func aStepsFloorCountsTasksReachedAtStepZeroAsTheFirstScoredPoint() throws {
        let json = Self.run(seed: 1, [("meta", [0, 0, 100]), ("random", [200, 0, 300])])
        let r = try EvaluationRun(json: json, source: "zero")
        let raw = try SeedComparison(runs: [r], resamples: 500).summarise()
        #expect(raw.inits[0].median.value == 0 && raw.ratios[0].ratio.value.isInfinite)
        let c = try SeedComparison(runs: [r], resamples: 500, stepsFloor: 100)
        let (inits, ratios) = c.summarise()
        // meta 100, 100, 100 → 100; random 200, 100, 300 → 200.
        #expect(inits.map(\.median.value) == [100, 200] && ratios[0].ratio.value == 2)
        #expect(ratios[0].wins == 2 && ratios[0].ties == 1 && ratios[0].losses == 0)
        #expect(c.seedLevelRatios()[0].perSeed == [2])
        #expect(inits[0].reached == 3, "a floored task still counts as reached")
        #expect(throws: EvaluationError.self) { try SeedComparison(runs: [r], stepsFloor: -1) }
        #expect(throws: EvaluationError.self) { try SeedComparison(runs: [r], stepsFloor: 401) }
    }

    @Test func onlyLikeRunsPoolAndBadFilesAreClearErrors() throws {
        let a = try EvaluationRun(json: Self.run(seed: 1, [("meta", [100]), ("random", [200])]), source: "a")
        let other = try EvaluationRun(json: Self.run(seed: 2, budget: 800, [("meta", [100]), ("random", [200])]), source: "b")
        #expect(throws: EvaluationError.self) { try SeedComparison(runs: [a, other]) }
        let validation = try EvaluationRun(json: Self.run(seed: 2, [("meta", [100]), ("random", [200])], split: "validation"), source: "v")
        #expect(throws: EvaluationError.self) { try SeedComparison(runs: [a, validation]) }
        #expect(throws: EvaluationError.self) { try SeedComparison(runs: [a], baselines: ["multitask"]) }
        #expect(throws: EvaluationError.self) { try SeedComparison(runs: []) }
        for bad in ["", "[]", "{\"family\": \"x\"}", "{\"family\": \"x\", \"budget\": 100, \"every\": 30, \"target_return\": 1}"] {
            #expect(throws: EvaluationError.self) { try EvaluationRun(json: Data(bad.utf8), source: "bad") }
        }
        // An older eval file without per-task curves says what to do.
        let old = Data("{\"family\": \"x\", \"budget\": 100, \"every\": 50, \"target_return\": 1, \"inits\": {}}".utf8)
        #expect(throws: EvaluationError.self) { try EvaluationRun(json: old, source: "old") }
    }

    /// The seed-level ratio takes each seed's ratio of medians as one observation: a t interval on their mean log,
    /// hand-computed here, and a seed bootstrap that never leaves the per-seed range.
    @Test func seedLevelRatiosTreatEachSeedAsOneObservation() throws {
        // Per seed, meta's median is 100 and random's 400, 200 and 800: ratios 4, 2, 8.
        let runs = try [(1, 400), (2, 200), (3, 800)].map { seed, r in
            try EvaluationRun(json: Self.run(seed: seed, budget: 1000, every: 100,
                                             [("meta", [100, 100, 100]), ("random", [r, r, r])]), source: "s\(seed)")
        }
        let c = try SeedComparison(runs: runs, resamples: 2000, bootstrapSeed: 5)
        let level = try #require(c.seedLevelRatios().first)
        #expect(level.baseline == "random" && level.perSeed == [4, 2, 8])
        // log ratios: ln 4, ln 2, ln 8 = 2, 1, 3 × ln 2; mean 2 ln 2 (geometric mean 4); sd ln 2; half-width
        // 4.303 × ln 2 / √3.
        let half = 4.303 * log(2.0) / 3.0.squareRoot()
        #expect(abs(level.geometricMean.value - 4) < 1e-9)
        #expect(abs(level.geometricMean.low - exp(2 * log(2.0) - half)) < 1e-6)
        #expect(abs(level.geometricMean.high - exp(2 * log(2.0) + half)) < 1e-6)
        #expect(level.seedBootstrap.low >= 2 && level.seedBootstrap.high <= 8 && level.seedBootstrap.value == 4)
        // One seed: the t interval is undefined (NaN ends), not a zero-width certainty.
        let one = try SeedComparison(runs: [runs[0]], resamples: 500).seedLevelRatios()[0]
        #expect(one.geometricMean.value == 4 && one.geometricMean.low.isNaN)
    }

    @Test func censoredFractionsCountTheTasksThatNeverReachedTheTarget() throws {
        let run = try EvaluationRun(json: Self.run(seed: 1, [("meta", [100, nil, 200, nil]), ("random", [nil, nil, nil, 300])]), source: "c")
        let c = try SeedComparison(runs: [run], resamples: 500)
        let fractions = c.censoredFractions()
        #expect(fractions.map(\.name) == ["meta", "random"])
        #expect(fractions.map(\.censored) == [2, 3] && fractions.allSatisfy { $0.tasks == 4 })
    }
}
