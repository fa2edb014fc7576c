import DQN
import Foundation
import Logging
import MetaLearning
import NeuralNet

/// The coordinator's meta-evaluation during training: every `evaluation.interval` meta-iterations, θ is
/// adapted on the held-out tasks and the greedy return before and after is logged and appended to
/// eval.jsonl, so users watch meta-test return rise while the run goes on.
///
/// It runs on a thread of its own so the coordinator keeps answering heartbeats; θ is copied, so the
/// meta-parameter trajectory is untouched. If an evaluation is still running when the next is due, the
/// new one is skipped (and logged), never queued: evaluation must not fall ever further behind.
final class PeriodicEvaluation: @unchecked Sendable {
    let config: ClusterConfig
    let path: String
    let logger: Logger
    private let idle = DispatchSemaphore(value: 1)

    init(config: ClusterConfig, runDirectory: String, logger: Logger) {
        self.config = config
        path = (runDirectory as NSString).appendingPathComponent("eval.jsonl")
        self.logger = logger
    }

    /// Whether iteration `iteration` (meta-updates applied) is due for an evaluation.
    func isDue(_ iteration: Int) -> Bool {
        config.evaluation.interval > 0 && config.evaluation.tasks > 0 && iteration % config.evaluation.interval == 0
    }

    /// Starts evaluating θ after `iteration` meta-updates, unless one is still running.
    func start(iteration: Int, theta: ParameterVector) {
        guard idle.wait(timeout: .now()) == .success else {
            logger.notice("meta-eval for iteration \(iteration) skipped: the previous one is still running")
            return
        }
        let budget = config.evaluation.budget
        // Four points along the way when the budget divides evenly, else before and after.
        let every = budget % 4 == 0 ? budget / 4 : budget
        let plan = EvaluationPlan(family: config.family, runSeed: config.run.seed, tasks: config.evaluation.tasks,
                                  budget: budget, every: every, episodes: 5, dqn: config.innerLoop.dqn,
                                  targetReturn: config.evaluation.targetReturn ?? defaultTargetReturn(family: config.family))
        let thread = Thread { [self] in
            defer { idle.signal() }
            do {
                let report = try runMetaEvaluation(plan: plan, inits: [("meta", theta)], threads: 1)
                let points = report.summary(0)
                let line = report.json(extra: [("iteration", "\(iteration)")])
                append(line)
                logger.info("\(String(format: "meta-eval iteration %d: greedy return %.1f ± %.1f before, %.1f ± %.1f after %d steps (%d held-out tasks, %.1f s)", iteration, points.first!.meanReturn, points.first!.ci95, points.last!.meanReturn, points.last!.ci95, budget, plan.tasks, report.seconds))")
            } catch {
                logger.error("meta-eval for iteration \(iteration) failed: \(error)")
            }
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Blocks until no evaluation is running.
    func waitUntilIdle() {
        idle.wait()
        idle.signal()
    }

    private func append(_ line: String) {
        if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: Data((line + "\n").utf8))
    }
}
