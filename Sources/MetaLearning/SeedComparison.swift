import Foundation
import NeuralNet

/// One evaluation run as `metatrain eval --json` wrote it: every init's per-task curve on one run's tasks.
///
/// A meta-training seed gives one run; `SeedComparison` pools several. Parsed from the JSON object so that
/// `metatrain compare` works on files a user kept, and checked field by field (a clear error, never a crash).
public struct EvaluationRun: Sendable, Equatable {
    public var source: String
    public var family: String
    public var split: String
    public var budget: Int
    public var every: Int
    public var target: Double
    public var runSeed: UInt64?
    public var algorithm: String?
    /// The kernel and CPU the evaluation ran on (nil in files written before they were recorded).
    public var kernel: String?
    public var cpu: String?
    /// Init names in file order.
    public var names: [String]
    /// curves[init][task][point]: greedy return at steps 0, every, …, budget.
    public var curves: [[[Double]]]

    public var steps: [Int] { Array(stride(from: 0, through: budget, by: every)) }
    public var tasks: Int { curves.first?.count ?? 0 }

    /// Reads the object `metatrain eval --json` prints; `source` names it in errors.
    public init(json data: Data, source: String) throws {
        func fail(_ why: String) -> EvaluationError { .invalid("\(source): \(why)") }
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object (expected the output of `metatrain eval --json` or an eval-*.json file)")
        }
        guard let family = o["family"] as? String, let budget = o["budget"] as? Int, let every = o["every"] as? Int,
              budget >= 1, every >= 1, budget % every == 0 else { throw fail("no valid family, budget and every") }
        guard let target = o["target_return"] as? Double, target.isFinite else {
            throw fail("no target_return: steps to target need one (eval --target)")
        }
        guard let curves = o["curves_per_task"] as? [String: Any] else {
            throw fail("no curves_per_task: written by an older metatrain; re-run `metatrain eval --json`")
        }
        guard let names = o["init_names"] as? [String], !names.isEmpty, Set(names).count == names.count else {
            throw fail("no init_names: written by an older metatrain; re-run `metatrain eval --json`")
        }
        let points = budget / every + 1
        var all: [[[Double]]] = []
        for name in names {
            guard let perTask = curves[name] as? [Any], !perTask.isEmpty else { throw fail("curves_per_task has no tasks for '\(name)'") }
            all.append(try perTask.map { row in
                guard let values = row as? [Any], values.count == points else {
                    throw fail("a '\(name)' curve does not have \(points) points (0 to \(budget) every \(every))")
                }
                return try values.map { v in
                    guard let x = v as? Double else { throw fail("a '\(name)' curve holds a non-number or a non-finite return") }
                    return x
                }
            })
        }
        guard Set(all.map(\.count)).count == 1 else { throw fail("the inits were scored on different numbers of tasks") }
        self.source = source; self.family = family; self.split = (o["split"] as? String) ?? "test"
        self.budget = budget; self.every = every; self.target = target
        self.runSeed = (o["run_seed"] as? NSNumber)?.uint64Value
        self.algorithm = o["algorithm"] as? String
        self.kernel = o["kernel"] as? String
        self.cpu = o["cpu"] as? String
        self.names = names; self.curves = all
    }

    /// Per task, the first scored step at which init `name` reached the target, raised to `floor`; a task that
    /// never did counts as `censoredAt` (budget + every, the first step not scored): a lower bound on its true steps.
    func steps(_ name: String, floor: Int = 0) -> [Double] {
        guard let k = names.firstIndex(of: name) else { return [] }
        return curves[k].map { curve in
            stepsToTarget(curve, steps: steps, target: target).map { Double(max($0, floor)) } ?? Double(budget + every)
        }
    }
}

/// Several evaluation runs (meta-training seeds) pooled: medians, ratios and their bootstrap 95% CIs.
///
/// Steps to target are compared task by task (every init adapts on the same tasks with the same seeds
/// within a run). The CIs come from a two-level bootstrap — resample the runs, then each picked run's
/// tasks, keeping an (init × task) row together — so they cover both the spread of tasks and the spread
/// of meta-training seeds. A never-reached task counts as budget + every (censored): baseline medians
/// are then lower bounds and baseline ÷ meta ratios conservative, unless meta's own median is censored
/// (reported as `meta_censored`).
public struct SeedComparison: Sendable {
    public var runs: [EvaluationRun]
    public var meta: String
    public var baselines: [String]
    public var resamples: Int
    public var bootstrapSeed: UInt64
    /// Steps to target below this count as this many, in every median and ratio: an init at the target before any
    /// adaptation (step 0) would make a median of 0 and its ratios infinite or undefined, so a pre-registration
    /// that expects it can count such a task as reached at the first scored point. 0: as measured.
    public var stepsFloor: Int

    public struct Estimate: Sendable, Equatable {
        public var value: Double
        public var low: Double
        public var high: Double
    }

    public struct InitSummary: Sendable, Equatable {
        public var name: String
        public var median: Estimate
        public var perRun: [Double]
        public var reached: Int
        public var tasks: Int
    }

    public struct Ratio: Sendable, Equatable {
        /// A baseline's name, or "best baseline" (per resample, the baseline with the smaller median).
        public var baseline: String
        /// Baseline median steps ÷ meta median steps (> 1: meta reaches the target sooner).
        public var ratio: Estimate
        /// Tasks on which meta reached the target strictly sooner, as soon, and later than the baseline.
        public var wins: Int, ties: Int, losses: Int
    }

    public init(runs: [EvaluationRun], meta: String = "meta", baselines: [String]? = nil, resamples: Int = 10_000,
                bootstrapSeed: UInt64 = 1, stepsFloor: Int = 0) throws {
        guard let first = runs.first else { throw EvaluationError.invalid("no evaluation runs to compare") }
        for r in runs.dropFirst() {
            guard r.family == first.family, r.budget == first.budget, r.every == first.every, r.target == first.target,
                  r.split == first.split else {
                throw EvaluationError.invalid("\(r.source) differs from \(first.source) in family, budget, every, target or split: only like runs pool")
            }
        }
        let common = runs.map { Set($0.names) }.reduce(Set(first.names)) { $0.intersection($1) }
        guard common.contains(meta) else { throw EvaluationError.invalid("not every run has the init '\(meta)'") }
        let chosen = baselines ?? first.names.filter { $0 != meta && $0 != "nearest" && common.contains($0) }
        for b in chosen where !common.contains(b) { throw EvaluationError.invalid("not every run has the init '\(b)'") }
        guard !chosen.isEmpty else { throw EvaluationError.invalid("no baseline init to compare '\(meta)' with") }
        guard resamples >= 100 && resamples <= 1_000_000 else { throw EvaluationError.invalid("resamples must be in 100...1000000") }
        guard stepsFloor >= 0 && stepsFloor <= first.budget else {
            throw EvaluationError.invalid("the steps floor must be in 0...\(first.budget) (the budget), not \(stepsFloor)")
        }
        self.runs = runs; self.meta = meta; self.baselines = chosen; self.resamples = resamples; self.bootstrapSeed = bootstrapSeed
        self.stepsFloor = stepsFloor
    }

    /// Every init compared (meta first, then the baselines).
    public var names: [String] { [meta] + baselines }
    public var censoredAt: Double { Double(runs[0].budget + runs[0].every) }

    /// steps[init][run][task].
    private var steps: [[[Double]]] { names.map { n in runs.map { $0.steps(n, floor: stepsFloor) } } }

    /// The statistics of the pooled (run, task) rows `rows`: each init's median, and each ratio.
    private func statistics(_ steps: [[[Double]]], rows: [(Int, Int)]) -> (medians: [Double], ratios: [Double]) {
        let medians = steps.map { perRun in median(rows.map { perRun[$0.0][$0.1] }) }
        let baselineMedians = Array(medians.dropFirst())
        let ratios = baselineMedians.map { $0 / medians[0] } + [(baselineMedians.min() ?? .nan) / medians[0]]
        return (medians, ratios)
    }

    /// One two-level bootstrap sample: as many runs as there are, drawn with replacement, and for each drawn run as
    /// many of its tasks as it has, drawn with replacement; (run, task) rows.
    private func resampledRows(_ rng: inout SeededRNG) -> [(Int, Int)] {
        var rows: [(Int, Int)] = []
        for _ in runs.indices {
            let r = Int(rng.next() % UInt64(runs.count))
            for _ in 0..<runs[r].tasks { rows.append((r, Int(rng.next() % UInt64(runs[r].tasks)))) }
        }
        return rows
    }

    /// `value` with the 2.5th and 97.5th percentiles of its bootstrap `draws`.
    private static func estimate(_ value: Double, _ draws: [Double]) -> Estimate {
        let sorted = draws.sorted()
        func q(_ p: Double) -> Double { sorted[min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.down))))] }
        return Estimate(value: value, low: q(0.025), high: q(0.975))
    }

    /// Medians and ratios with percentile-bootstrap 95% CIs, and the paired task counts.
    public func summarise() -> (inits: [InitSummary], ratios: [Ratio]) {
        let steps = self.steps
        let all = runs.indices.flatMap { r in (0..<runs[r].tasks).map { (r, $0) } }
        let point = statistics(steps, rows: all)
        var rng = SeededRNG(seed: bootstrapSeed)
        var medianDraws = names.map { _ in [Double]() }, ratioDraws = (0...baselines.count).map { _ in [Double]() }
        for _ in 0..<resamples {
            let s = statistics(steps, rows: resampledRows(&rng))
            for k in s.medians.indices { medianDraws[k].append(s.medians[k]) }
            for k in s.ratios.indices { ratioDraws[k].append(s.ratios[k]) }
        }
        let estimate = Self.estimate
        let inits = names.indices.map { k in
            InitSummary(name: names[k], median: estimate(point.medians[k], medianDraws[k]),
                        perRun: steps[k].map { median($0) },
                        reached: steps[k].joined().filter { $0 < censoredAt }.count, tasks: all.count)
        }
        let metaSteps = Array(steps[0].joined())
        func paired(_ other: [Double]) -> (Int, Int, Int) {
            zip(metaSteps, other).reduce((0, 0, 0)) { c, p in
                p.0 < p.1 ? (c.0 + 1, c.1, c.2) : p.0 == p.1 ? (c.0, c.1 + 1, c.2) : (c.0, c.1, c.2 + 1)
            }
        }
        var ratios = baselines.indices.map { b -> Ratio in
            let (w, t, l) = paired(Array(steps[b + 1].joined()))
            return Ratio(baseline: baselines[b], ratio: estimate(point.ratios[b], ratioDraws[b]), wins: w, ties: t, losses: l)
        }
        if baselines.count > 1 {
            // Paired against whichever baseline did better on that task: the hardest comparison for meta.
            let best = (0..<metaSteps.count).map { i in baselines.indices.map { Array(steps[$0 + 1].joined())[i] }.min()! }
            let (w, t, l) = paired(best)
            ratios.append(Ratio(baseline: "best baseline", ratio: estimate(point.ratios[baselines.count], ratioDraws[baselines.count]),
                                wins: w, ties: t, losses: l))
        }
        return (inits, ratios)
    }

    /// Per init, the fraction of tasks whose greedy return is ≥ `threshold` at every scored point (step 0
    /// included), with its two-level bootstrap 95% CI: does fine-tuning keep a policy that already solves?
    public func staysAbove(_ threshold: Double) -> [(name: String, count: Int, tasks: Int, fraction: Estimate)] {
        names.map { name in
            let held = runs.map { run in run.curves[run.names.firstIndex(of: name)!].map { $0.min()! >= threshold ? 1.0 : 0.0 } }
            let all = held.flatMap { $0 }
            var rng = SeededRNG(seed: bootstrapSeed)
            let draws = (0..<resamples).map { _ in
                let rows = resampledRows(&rng)
                return rows.reduce(0.0) { $0 + held[$1.0][$1.1] } / Double(max(rows.count, 1))
            }
            let value = all.reduce(0, +) / Double(all.count)
            return (name, Int(all.reduce(0, +)), all.count, Self.estimate(value, draws))
        }
    }

    /// Per init, the mean greedy return at scored point `point` (0: before any gradient step, what an init or a
    /// context-conditioned network does zero-shot) over every run's tasks, with its two-level bootstrap 95% CI.
    public func meanReturn(atPoint point: Int = 0) -> [(name: String, mean: Estimate)] {
        names.map { name in
            let values = runs.map { run in run.curves[run.names.firstIndex(of: name)!].map { $0[min(point, $0.count - 1)] } }
            let all = values.flatMap { $0 }
            var rng = SeededRNG(seed: bootstrapSeed)
            let draws = (0..<resamples).map { _ in
                let rows = resampledRows(&rng)
                return rows.reduce(0.0) { $0 + values[$1.0][$1.1] } / Double(max(rows.count, 1))
            }
            return (name, Self.estimate(all.reduce(0, +) / Double(max(all.count, 1)), draws))
        }
    }

    /// Mean ± 95% CI (Student t over every run's tasks) of each init's greedy return at every point.
    public func pooledCurves() -> [[EvaluationReport.Point]] {
        names.map { name in
            let rows = runs.flatMap { run in run.curves[run.names.firstIndex(of: name)!] }
            return runs[0].steps.enumerated().map { j, step in
                let (m, ci) = meanAndCI95(rows.map { $0[j] })
                return EvaluationReport.Point(step: step, meanReturn: m, ci95: ci)
            }
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN for none.
public func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let s = values.sorted(), n = s.count
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

/// Seed-level statistics: the meta-training seed, not the task, as the unit (issue 36). Tasks of one seed share its θ,
/// so a task-level interval over 3 seeds says little about another seed's θ; these say how the ratio varies between
/// seeds.
extension SeedComparison {
    public struct SeedLevelRatio: Sendable, Equatable {
        /// A baseline's name, or "best baseline" (per seed, the baseline with the smaller median).
        public var baseline: String
        /// Per seed: the baseline's median steps ÷ meta's (censored tasks count as `censoredAt`).
        public var perSeed: [Double]
        /// The geometric mean of the per-seed ratios with the 95% Student-t interval of the mean log ratio,
        /// exponentiated (NaN ends for one seed).
        public var geometricMean: Estimate
        /// The same geometric mean with a 95% percentile-bootstrap interval over seeds (seeds drawn with replacement).
        public var seedBootstrap: Estimate
    }

    /// Per baseline (and the best baseline, when there are several), the ratio of medians seed by seed, with a t and
    /// a seed-bootstrap interval.
    public func seedLevelRatios() -> [SeedLevelRatio] {
        let steps = names.map { n in runs.map { $0.steps(n, floor: stepsFloor) } }
        let medians = steps.map { perRun in perRun.map { median($0) } }   // medians[init][run]
        var rows: [(String, [Double])] = baselines.indices.map { b in
            (baselines[b], runs.indices.map { medians[b + 1][$0] / medians[0][$0] })
        }
        if baselines.count > 1 {
            rows.append(("best baseline", runs.indices.map { r in baselines.indices.map { medians[$0 + 1][r] }.min()! / medians[0][r] }))
        }
        return rows.map { name, perSeed in
            let logs = perSeed.map { Foundation.log($0) }
            let (mean, half) = meanAndCI95(logs)
            let t = Estimate(value: exp(mean), low: exp(mean - half), high: exp(mean + half))
            var rng = SeededRNG(seed: bootstrapSeed)
            let draws = (0..<resamples).map { _ -> Double in
                let drawn = (0..<logs.count).map { _ in logs[Int(rng.next() % UInt64(logs.count))] }
                return exp(drawn.reduce(0, +) / Double(drawn.count))
            }
            return SeedLevelRatio(baseline: name, perSeed: perSeed, geometricMean: t, seedBootstrap: Self.estimate(exp(mean), draws))
        }
    }

    /// Per init, the fraction of (seed, task) pairs that never reached the target within the budget (censored).
    public func censoredFractions() -> [(name: String, censored: Int, tasks: Int)] {
        names.map { n in
            let all = runs.flatMap { $0.steps(n, floor: stepsFloor) }
            return (n, all.filter { $0 >= censoredAt }.count, all.count)
        }
    }
}
