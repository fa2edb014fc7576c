import ArgumentParser
import Environments
import Foundation
import MetaLearning

/// `metatrain compare`: pools the evaluations of several meta-training seeds into one verdict with bootstrap CIs.
///
/// Each file is one run's `metatrain eval --json` output; the report gives every init's median steps to
/// target, the ratio of each baseline's median to meta's, their 95% CIs from a two-level bootstrap (runs,
/// then tasks), the per-task win/tie/loss counts, and — when the pre-registered thresholds are passed as
/// options — whether each criterion held.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pool several runs' `metatrain eval --json` outputs (one per meta-training seed): median steps to target and baseline ÷ meta ratios with bootstrap 95% CIs, and a verdict against pre-registered thresholds.")

    @Argument(help: "eval JSON files (eval-iter*.json, or what `metatrain eval --json` printed), one per meta-training seed.")
    var files: [String]
    @Option(help: "The init under test.") var meta = "meta"
    @Option(help: "Comma-separated baseline inits (default: every init but meta and nearest).") var baselines: String?
    @Option(help: "Bootstrap resamples.") var resamples = 10_000
    @Option(help: "Seed of the bootstrap's resampling (the report is deterministic).") var bootstrapSeed: UInt64 = 1
    @Option(help: "Criterion: the better baseline's median ÷ meta's median must be at least this.") var requireRatio: Double?
    @Option(help: "Criterion: the lower end of that ratio's 95% CI must be above this.") var requireCiLow: Double?
    @Option(help: "Criterion: every baseline's median steps to target must be at least this.") var requireBaselineSteps: Double?
    @Option(help: "Criterion: the lower end of the seed-level 95% interval of the better baseline's ratio (Student t over the per-seed log ratios of medians) must be above this.") var requireSeedCiLow: Double?
    @Option(help: "Criterion: meta's fraction of censored (seed, task) pairs — never reaching the target within the budget — must be at most this.") var requireCensoredAtMost: Double?
    @Option(help: "Also report, per init, the fraction of tasks whose return is ≥ this at every scored point (does fine-tuning keep a solving policy?).") var staysAbove: Double?
    @Option(help: "Criterion (with --stays-above): meta's fraction of such tasks must be at least this.") var requireStaysFraction: Double?
    @Option(help: "Count a task reached in fewer steps than this (e.g. at step 0, before any adaptation) as reached at this many, in every median and ratio: a median of 0 would make ratios infinite or undefined. 0: as measured.") var stepsFloor = 0
    @Option(help: "Folder for compare.md/.csv/.json/.svg (default: write nothing).") var out: String?
    @Option(help: "File name stem in --out.") var name = "compare"
    @Flag(help: "Print only the JSON object.") var json = false

    func run() throws {
        try userFacing {
            guard !files.isEmpty else { throw ValidationError("give at least one eval JSON file") }
            let runs = try files.map { path -> EvaluationRun in
                guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
                return try EvaluationRun(json: data, source: path)
            }
            let chosen = baselines?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let comparison = try SeedComparison(runs: runs, meta: meta, baselines: chosen, resamples: resamples,
                                                bootstrapSeed: bootstrapSeed, stepsFloor: stepsFloor)
            let (inits, ratios) = comparison.summarise()
            if requireStaysFraction != nil && staysAbove == nil { throw ValidationError("--require-stays-fraction needs --stays-above") }
            let stays = staysAbove.map { comparison.staysAbove($0) } ?? []
            // Seed-level ratios (a seed bootstrap each) and censored fractions, computed once for the verdicts and reports.
            let seedLevel = comparison.seedLevelRatios(), censored = comparison.censoredFractions()
            var criteria = verdicts(inits: inits, ratios: ratios, seedLevel: seedLevel, censored: censored, comparison: comparison)
            if let f = requireStaysFraction, let t = staysAbove, let m = stays.first {
                criteria.append(("\(comparison.meta): tasks ≥ \(number(t)) at every point, fraction ≥", f, m.fraction.value, m.fraction.value >= f))
            }
            var object = jsonObject(comparison, inits: inits, ratios: ratios, seedLevel: seedLevel, censored: censored, criteria: criteria)
            var table = markdown(comparison, inits: inits, ratios: ratios, seedLevel: seedLevel, censored: censored, criteria: criteria)
            // Zero-shot: the return before any gradient step (a context-conditioned network adapts here or not at all).
            let zeroShot = comparison.meanReturn(atPoint: 0)
            table += "\n\n| init | mean greedy return at step 0 [95% CI] |\n|---|---|\n"
                + zeroShot.map { "| \($0.name) | \(interval($0.mean, digits: 1)) |" }.joined(separator: "\n")
            let zeroItems = zeroShot.map { "\(jsonString($0.name)): {\"value\": \(jsonNumber($0.mean.value)), \"ci95\": [\(jsonNumber($0.mean.low)), \(jsonNumber($0.mean.high))]}" }
            object = String(object.dropLast()) + ", \"return_at_step0\": {\(zeroItems.joined(separator: ", "))}}"
            if let t = staysAbove {
                let rows = stays.map { "| \($0.name) | \($0.count)/\($0.tasks) | \(interval($0.fraction, digits: 2)) |" }
                table += "\n\n| init | tasks ≥ \(number(t)) at every scored point | fraction [95% CI] |\n|---|---|---|\n" + rows.joined(separator: "\n")
                let items = stays.map { "\(jsonString($0.name)): {\"count\": \($0.count), \"tasks\": \($0.tasks), \"fraction\": {\"value\": \(jsonNumber($0.fraction.value)), \"ci95\": [\(jsonNumber($0.fraction.low)), \(jsonNumber($0.fraction.high))]}}" }
                object = String(object.dropLast()) + ", \"stays_above\": {\"threshold\": \(jsonNumber(t)), \"inits\": {\(items.joined(separator: ", "))}}}"
            }
            if let out {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                let stem = (out as NSString).appendingPathComponent(name)
                try Data((object + "\n").utf8).write(to: URL(fileURLWithPath: stem + ".json"))
                try Data((table + "\n").utf8).write(to: URL(fileURLWithPath: stem + ".md"))
                try Data(csv(inits: inits, ratios: ratios).utf8).write(to: URL(fileURLWithPath: stem + ".csv"))
                let first = runs[0]
                let svg = curvesSVG(title: "\(first.family), \(runs.count) run(s) pooled, \(first.split) tasks",
                                    names: comparison.names, summaries: comparison.pooledCurves(), budget: first.budget,
                                    target: first.target, bandLabel: "mean ± 95% CI over \(inits[0].tasks) run-task pairs")
                try Data(svg.utf8).write(to: URL(fileURLWithPath: stem + ".svg"))
            }
            print(json ? object : table)
        }
    }

    /// Each criterion given on the command line, with what was measured and whether it held.
    func verdicts(inits: [SeedComparison.InitSummary], ratios: [SeedComparison.Ratio], seedLevel: [SeedComparison.SeedLevelRatio],
                  censored: [(name: String, censored: Int, tasks: Int)], comparison: SeedComparison)
        -> [(String, Double, Double, Bool)] {
        let best = ratios.last!
        var out: [(String, Double, Double, Bool)] = []
        if let r = requireRatio { out.append(("ratio vs \(best.baseline) ≥", r, best.ratio.value, best.ratio.value >= r)) }
        if let r = requireCiLow { out.append(("ratio vs \(best.baseline): CI low >", r, best.ratio.low, best.ratio.low > r)) }
        if let r = requireSeedCiLow {
            let seed = seedLevel.last!
            out.append(("ratio vs \(seed.baseline): seed-level CI low >", r, seed.geometricMean.low,
                        seed.geometricMean.low.isFinite && seed.geometricMean.low > r))
        }
        if let f = requireCensoredAtMost {
            let meta = censored[0]
            let fraction = Double(meta.censored) / Double(max(meta.tasks, 1))
            out.append(("\(comparison.meta): censored fraction ≤", f, fraction, fraction <= f))
        }
        if let r = requireBaselineSteps {
            let lowest = inits.dropFirst().map(\.median.value).min() ?? .nan
            out.append(("every baseline's median steps ≥", r, lowest, lowest >= r))
        }
        return out
    }

    func markdown(_ c: SeedComparison, inits: [SeedComparison.InitSummary], ratios: [SeedComparison.Ratio],
                  seedLevel: [SeedComparison.SeedLevelRatio], censored: [(name: String, censored: Int, tasks: Int)],
                  criteria: [(String, Double, Double, Bool)]) -> String {
        let r0 = c.runs[0]
        let seeds = c.runs.map { $0.runSeed.map(String.init) ?? "?" }.joined(separator: ", ")
        var lines = ["\(c.runs.count) run(s) (seeds \(seeds)), \(inits[0].tasks) \(r0.split) tasks in all; steps to \(number(r0.target)) "
                     + "(budget \(r0.budget), scored every \(r0.every); never = \(Int(c.censoredAt)), censored"
                     + (c.stepsFloor > 0 ? "; fewer than \(c.stepsFloor) counted as \(c.stepsFloor)" : "") + "); "
                     + "95% CIs: two-level bootstrap, \(c.resamples) resamples, seed \(c.bootstrapSeed); "
                     + "computed with \(Set(c.runs.map { "kernel \($0.kernel ?? "?") on \($0.cpu ?? "?")" }).sorted().joined(separator: " and "))", "",
                     "| init | median steps to target [95% CI] | per run | tasks reaching it |", "|---|---|---|---|"]
        for s in inits {
            lines.append("| \(s.name) | \(interval(s.median)) | \(s.perRun.map(number).joined(separator: ", ")) | \(s.reached)/\(s.tasks) |")
        }
        lines += ["", "| baseline ÷ \(c.meta) | ratio of medians [95% CI] | \(c.meta) sooner / tie / later (tasks) |", "|---|---|---|"]
        for r in ratios {
            lines.append("| \(r.baseline) | \(interval(r.ratio, digits: 2)) | \(r.wins) / \(r.ties) / \(r.losses) |")
        }
        lines += ["", "| init | censored (never reached the target) |", "|---|---|"]
        for x in censored {
            lines.append("| \(x.name) | \(x.censored)/\(x.tasks) (\(String(format: "%.0f", 100 * Double(x.censored) / Double(max(x.tasks, 1))))%) |")
        }
        lines += ["", "Seed-level: each meta-training seed's ratio of medians is one observation (\(c.runs.count) seed(s)).", "",
                  "| baseline ÷ \(c.meta) | per seed | geometric mean [t 95% CI] | [seed bootstrap 95% CI] |", "|---|---|---|---|"]
        for r in seedLevel {
            lines.append("| \(r.baseline) | \(r.perSeed.map { String(format: "%.2f", $0) }.joined(separator: ", ")) | \(interval(r.geometricMean, digits: 2)) | \(interval(r.seedBootstrap, digits: 2)) |")
        }
        if inits[0].median.value >= c.censoredAt {
            lines.append("\n\(c.meta)'s own median is censored (it never reached the target on most tasks): the ratios are not lower bounds.")
        }
        if !criteria.isEmpty {
            lines += ["", "| criterion | required | measured | verdict |", "|---|---|---|---|"]
            for (what, required, measured, ok) in criteria {
                lines.append("| \(what) | \(number(required)) | \(number(measured)) | \(ok ? "met" : "NOT met") |")
            }
        }
        return lines.joined(separator: "\n")
    }

    func csv(inits: [SeedComparison.InitSummary], ratios: [SeedComparison.Ratio]) -> String {
        var rows = ["kind,name,value,ci_low,ci_high"]
        for s in inits { rows.append("median_steps,\(s.name),\(s.median.value),\(s.median.low),\(s.median.high)") }
        for r in ratios { rows.append("ratio,\(r.baseline),\(r.ratio.value),\(r.ratio.low),\(r.ratio.high)") }
        return rows.joined(separator: "\n") + "\n"
    }

    func jsonObject(_ c: SeedComparison, inits: [SeedComparison.InitSummary], ratios: [SeedComparison.Ratio],
                    seedLevel: [SeedComparison.SeedLevelRatio], censored: [(name: String, censored: Int, tasks: Int)],
                    criteria: [(String, Double, Double, Bool)]) -> String {
        func estimate(_ e: SeedComparison.Estimate) -> String {
            "{\"value\": \(jsonNumber(e.value)), \"ci95\": [\(jsonNumber(e.low)), \(jsonNumber(e.high))]}"
        }
        let r0 = c.runs[0]
        let runs = c.runs.map { "{\"file\": \(jsonString($0.source)), \"run_seed\": \($0.runSeed.map(String.init) ?? "null"), \"algorithm\": \($0.algorithm.map(jsonString) ?? "null"), \"kernel\": \($0.kernel.map(jsonString) ?? "null"), \"cpu\": \($0.cpu.map(jsonString) ?? "null"), \"tasks\": \($0.tasks)}" }
        let initObjects = inits.map { s in
            "\(jsonString(s.name)): {\"median_steps\": \(estimate(s.median)), \"per_run\": [\(s.perRun.map { jsonNumber($0) }.joined(separator: ", "))], \"reached\": \(s.reached), \"tasks\": \(s.tasks)}"
        }
        let ratioObjects = ratios.map { r in
            "\(jsonString(r.baseline)): {\"ratio\": \(estimate(r.ratio)), \"meta_sooner\": \(r.wins), \"ties\": \(r.ties), \"meta_later\": \(r.losses)}"
        }
        let seedObjects = seedLevel.map { r in
            "\(jsonString(r.baseline)): {\"per_seed\": [\(r.perSeed.map { jsonNumber($0) }.joined(separator: ", "))], \"geometric_mean_t\": \(estimate(r.geometricMean)), \"seed_bootstrap\": \(estimate(r.seedBootstrap))}"
        }
        let censoredObjects = censored.map { "\(jsonString($0.name)): {\"censored\": \($0.censored), \"tasks\": \($0.tasks)}" }
        let criteriaObjects = criteria.map { "{\"criterion\": \(jsonString($0.0)), \"required\": \(jsonNumber($0.1)), \"measured\": \(jsonNumber($0.2)), \"met\": \($0.3)}" }
        return "{\"family\": \(jsonString(r0.family)), \"split\": \(jsonString(r0.split)), \"budget\": \(r0.budget), \"every\": \(r0.every), "
            + "\"target_return\": \(jsonNumber(r0.target)), \"censored_at\": \(Int(c.censoredAt)), \"steps_floor\": \(c.stepsFloor), \"meta\": \(jsonString(c.meta)), "
            + "\"resamples\": \(c.resamples), \"bootstrap_seed\": \(c.bootstrapSeed), \"runs\": [\(runs.joined(separator: ", "))], "
            + "\"inits\": {\(initObjects.joined(separator: ", "))}, \"ratios\": {\(ratioObjects.joined(separator: ", "))}, "
            + "\"seed_level_ratios\": {\(seedObjects.joined(separator: ", "))}, \"censored\": {\(censoredObjects.joined(separator: ", "))}, "
            + "\"meta_censored\": \(inits[0].median.value >= c.censoredAt), \"criteria\": [\(criteriaObjects.joined(separator: ", "))]}"
    }

    func number(_ x: Double) -> String { x.isFinite ? (x == x.rounded() ? String(Int(x)) : String(format: "%.2f", x)) : (x > 0 ? "∞" : "—") }
    func interval(_ e: SeedComparison.Estimate, digits: Int = 0) -> String {
        func f(_ x: Double) -> String { !x.isFinite ? (x > 0 ? "∞" : "—") : digits == 0 ? String(format: "%.0f", x) : String(format: "%.\(digits)f", x) }
        return "\(f(e.value)) [\(f(e.low)), \(f(e.high))]"
    }
}
