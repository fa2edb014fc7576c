import Foundation
import Environments

/// The report as a table, CSV, an SVG plot and the JSON object `metatrain eval --json` prints.
extension EvaluationReport {
    /// A Markdown table: one row per init, mean ± 95% CI at a few points, and steps to the target.
    public func table(points: Int = 6) -> String {
        let steps = plan.steps
        let stride = max(1, (steps.count - 1 + points - 2) / max(points - 1, 1))
        var shown = Array(Swift.stride(from: 0, to: steps.count, by: stride))
        if shown.last != steps.count - 1 { shown.append(steps.count - 1) }
        var lines = ["| init | " + shown.map { "step \(steps[$0])" }.joined(separator: " | ")
                     + " | steps to \(plan.targetReturn.map { format($0) } ?? "target") (median) | tasks reaching it |"]
        lines.append("|---|" + String(repeating: "---|", count: shown.count + 2))
        for k in names.indices {
            let summary = summary(k), reached = stepsToTarget(k)
            let median = medianSteps(reached).map { format($0) } ?? "never"
            let count = plan.targetReturn == nil ? "—" : "\(reached.compactMap { $0 }.count)/\(plan.tasks)"
            lines.append("| \(names[k]) | " + shown.map { "\(format(summary[$0].meanReturn)) ± \(summary[$0].ci95.isFinite ? format(summary[$0].ci95) : "—")" }
                .joined(separator: " | ") + " | \(plan.targetReturn == nil ? "—" : median) | \(count) |")
        }
        return lines.joined(separator: "\n")
    }

    /// init,step,mean_return,ci95,tasks — one row per init and point.
    public func summaryCSV() -> String {
        var rows = ["init,step,mean_return,ci95,tasks"]
        for k in names.indices {
            for p in summary(k) { rows.append("\(names[k]),\(p.step),\(p.meanReturn),\(p.ci95),\(plan.tasks)") }
        }
        return rows.joined(separator: "\n") + "\n"
    }

    /// init,task,step,return — every point of every curve.
    public func tasksCSV() -> String {
        var rows = ["init,task,step,return"]
        for k in names.indices {
            for (i, curve) in curves[k].enumerated() {
                for (j, r) in curve.enumerated() { rows.append("\(names[k]),\(i),\(plan.steps[j]),\(r)") }
            }
        }
        return rows.joined(separator: "\n") + "\n"
    }

    /// The JSON object of `metatrain eval --json`, keys in a fixed order.
    public func json(extra: [(String, String)] = []) -> String {
        func number(_ x: Double?) -> String { jsonNumber(x) }
        func curve(_ k: Int) -> String {
            "[" + summary(k).map { "{\"step\": \($0.step), \"mean_return\": \(number($0.meanReturn)), \"ci95\": \(number($0.ci95))}" }
                .joined(separator: ", ") + "]"
        }
        func object(_ pairs: [(String, String)]) -> String {
            "{" + pairs.map { "\(jsonString($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
        }
        var fields: [(String, String)] = [
            ("family", jsonString(plan.family.kindName)), ("tasks", "\(plan.tasks)"), ("budget", "\(plan.budget)"),
            ("every", "\(plan.every)"), ("episodes", "\(plan.episodes)"), ("target_return", number(plan.targetReturn)),
            ("init_names", "[" + names.map(jsonString).joined(separator: ", ") + "]"),
            ("inits", object(names.indices.map { (names[$0], curve($0)) })),
            ("steps_to_target", object(names.indices.map { (names[$0], number(medianSteps(stepsToTarget($0)))) })),
            ("tasks_reaching_target", object(names.indices.map {
                (names[$0], plan.targetReturn == nil ? "null" : "\(stepsToTarget($0).compactMap { $0 }.count)")
            })),
            ("steps_to_target_per_task", object(names.indices.map {
                (names[$0], "[" + stepsToTarget($0).map { $0.map(String.init) ?? "null" }.joined(separator: ", ") + "]")
            })),
            // Every task's whole curve, so `metatrain compare` can pool runs (seeds) task by task.
            ("curves_per_task", object(names.indices.map { k in
                (names[k], "[" + curves[k].map { "[" + $0.map { number($0) }.joined(separator: ", ") + "]" }.joined(separator: ", ") + "]")
            })),
            ("split", jsonString(plan.split.rawValue)),
            // What each task was (its kind and parameters), so per-task results can be read against the task: e.g.
            // which goals an init was slow on.
            ("task_specs", "[" + (0..<plan.tasks).map { i in (try? plan.task(i)).flatMap { taskSpecJSON($0) } ?? "null" }
                .joined(separator: ", ") + "]"),
        ]
        if let retrieval {
            fields.append(("retrieval_distance", object(
                EmbeddingMetric.allCases.map { ($0.rawValue, number(retrieval.byMetric[$0])) }
                    + [("oracle", number(retrieval.oracle)), ("random", number(retrieval.random))])))
        }
        fields.append(("seconds", number(seconds)))
        return object(fields + extra)
    }

    /// The adaptation curves (mean with a shaded 95% CI band per init) as a standalone SVG.
    public func svg(title: String) -> String {
        curvesSVG(title: title, names: names, summaries: names.indices.map { summary($0) }, budget: plan.budget,
                  target: plan.targetReturn, bandLabel: "mean ± 95% CI over \(plan.tasks) tasks")
    }
}

/// Adaptation curves (one mean line with a shaded band per init) as a standalone SVG; `bandLabel` says what the band is.
public func curvesSVG(title: String, names: [String], summaries: [[EvaluationReport.Point]], budget: Int, target: Double?,
                  bandLabel: String) -> String {
    let width = 760.0, height = 460.0, left = 70.0, right = 170.0, top = 40.0, bottom = 50.0
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    func band(_ p: EvaluationReport.Point) -> Double { p.ci95.isFinite ? p.ci95 : 0 }
    var lo = summaries.flatMap { $0.map { $0.meanReturn - band($0) } }.min() ?? 0
    var hi = summaries.flatMap { $0.map { $0.meanReturn + band($0) } }.max() ?? 1
    if let t = target { lo = min(lo, t); hi = max(hi, t) }
    if hi - lo < 1e-9 { hi = lo + 1 }
    let pad = (hi - lo) * 0.05
    lo -= pad; hi += pad
    let plotW = width - left - right, plotH = height - top - bottom
    func x(_ step: Int) -> Double { left + plotW * Double(step) / Double(max(budget, 1)) }
    func y(_ v: Double) -> Double { top + plotH * (1 - (v - lo) / (hi - lo)) }
    func pt(_ a: Double, _ b: Double) -> String { format(a, digits: 1) + "," + format(b, digits: 1) }
    var svg = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
               "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
               "<text x=\"\(left)\" y=\"22\" font-size=\"14\">\(escape(title))</text>"]
    for i in 0...5 {
        let v = lo + (hi - lo) * Double(i) / 5, yy = y(v)
        svg.append("<line x1=\"\(left)\" y1=\"\(format(yy, digits: 1))\" x2=\"\(left + plotW)\" y2=\"\(format(yy, digits: 1))\" stroke=\"#eee\"/>")
        svg.append("<text x=\"\(left - 6)\" y=\"\(format(yy + 4, digits: 1))\" text-anchor=\"end\">\(format(v))</text>")
        let s = budget * i / 5
        svg.append("<text x=\"\(format(x(s), digits: 1))\" y=\"\(top + plotH + 18)\" text-anchor=\"middle\">\(s)</text>")
    }
    svg.append("<rect x=\"\(left)\" y=\"\(top)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#333\"/>")
    svg.append("<text x=\"\(left + plotW / 2)\" y=\"\(height - 10)\" text-anchor=\"middle\">adaptation env steps</text>")
    svg.append("<text x=\"16\" y=\"\(top + plotH / 2)\" transform=\"rotate(-90 16 \(top + plotH / 2))\" text-anchor=\"middle\">greedy return (\(escape(bandLabel)))</text>")
    if let t = target {
        svg.append("<line x1=\"\(left)\" y1=\"\(format(y(t), digits: 1))\" x2=\"\(left + plotW)\" y2=\"\(format(y(t), digits: 1))\" stroke=\"#555\" stroke-dasharray=\"5,4\"/>")
        svg.append("<text x=\"\(left + plotW + 6)\" y=\"\(format(y(t) + 4, digits: 1))\">target \(format(t))</text>")
    }
    for (k, s) in summaries.enumerated() {
        let c = colours[k % colours.count]
        let outline = s.map { pt(x($0.step), y($0.meanReturn + band($0))) } + s.reversed().map { pt(x($0.step), y($0.meanReturn - band($0))) }
        svg.append("<polygon points=\"\(outline.joined(separator: " "))\" fill=\"\(c)\" fill-opacity=\"0.15\" stroke=\"none\"/>")
        svg.append("<polyline points=\"\(s.map { pt(x($0.step), y($0.meanReturn)) }.joined(separator: " "))\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\"/>")
        let ly = top + 20 + Double(k) * 20
        svg.append("<line x1=\"\(left + plotW + 10)\" y1=\"\(ly)\" x2=\"\(left + plotW + 34)\" y2=\"\(ly)\" stroke=\"\(c)\" stroke-width=\"3\"/>")
        svg.append("<text x=\"\(left + plotW + 40)\" y=\"\(ly + 4)\">\(escape(names[k]))</text>")
    }
    svg.append("</svg>")
    return svg.joined(separator: "\n") + "\n"
}

/// A task as one line of JSON: `{"kind": "goal_navigation", "parameters": {...}}` with the parameters' own coding
/// (keys sorted; fields at their defaults may be left out, as in a checkpoint), or nil if it cannot be encoded.
func taskSpecJSON(_ task: TaskSpec) -> String? {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    func encoded<P: Encodable>(_ parameters: P) -> String? {
        (try? encoder.encode(parameters)).flatMap { String(data: $0, encoding: .utf8) }
    }
    let parameters: String?
    switch task {
    case .cartPole(let p): parameters = encoded(p)
    case .acrobot(let p): parameters = encoded(p)
    case .mountainCar(let p): parameters = encoded(p)
    case .goalNavigation(let p): parameters = encoded(p)
    case .tabularMDP(let p): parameters = encoded(p)
    case .gymnasium(let p): parameters = p.json
    }
    return parameters.map { "{\"kind\": \(jsonString(task.kindName)), \"parameters\": \($0)}" }
}

/// A JSON number, or null where it is not finite (JSON has neither NaN nor infinity).
public func jsonNumber(_ x: Double?, digits: Int = 4) -> String {
    guard let x, x.isFinite else { return "null" }
    return format(x, digits: digits)
}

func format(_ x: Double, digits: Int = 1) -> String {
    if x == x.rounded() && abs(x) < 1e15 && digits <= 1 { return String(Int(x)) }
    return String(format: "%.\(digits)f", x)
}

private func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
}
