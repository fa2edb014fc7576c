import ClusterCore
import DQN
import Foundation
import Logging
import MetaLearning
import NeuralNet

/// The coordinator's meta-evaluation during training: every `evaluation.interval` meta-iterations, θ is
/// adapted on the run's validation tasks and the greedy return before and after is logged and appended to
/// eval.jsonl, so users watch meta-test return rise while the run goes on. Validation, not the held-out
/// test tasks: a user who picks a checkpoint or a setting by watching this has not looked at the test set.
///
/// It runs on a thread of its own so the coordinator keeps answering heartbeats; θ is copied, so the
/// meta-parameter trajectory is untouched. At most one evaluation runs and at most one waits: a due
/// evaluation that finds one running replaces whatever was waiting, so evaluation never falls ever
/// further behind, and the newest due θ (the final one included) is always evaluated.
final class PeriodicEvaluation: @unchecked Sendable {
    let config: ClusterConfig
    let path: String
    let logger: Logger
    /// Where the before/after returns are charted too (nil: nowhere).
    let tensorBoard: TensorBoardWriter?
    private var running = false
    private var waiting: (iteration: Int, theta: ParameterVector)?
    private let idle = NSCondition()
    private var latest: (iteration: Int, before: Double, after: Double)?

    /// The newest finished evaluation: the iteration, and the mean greedy return before and after adaptation.
    var last: (iteration: Int, before: Double, after: Double)? {
        idle.lock(); defer { idle.unlock() }
        return latest
    }

    init(config: ClusterConfig, runDirectory: String, logger: Logger, tensorBoard: TensorBoardWriter? = nil) {
        self.tensorBoard = tensorBoard
        self.config = config
        path = RunFolder(runDirectory).periodicEvaluation
        self.logger = logger
    }

    var enabled: Bool { config.evaluation.interval > 0 && config.evaluation.tasks > 0 }

    /// Whether iteration `iteration` (meta-updates applied) is due for an evaluation.
    func isDue(_ iteration: Int) -> Bool { enabled && iteration % config.evaluation.interval == 0 }

    /// Evaluates θ after `iteration` meta-updates now, or after the running evaluation.
    func start(iteration: Int, theta: ParameterVector) {
        idle.lock()
        defer { idle.unlock() }
        if running {
            if let skipped = waiting {
                logger.notice("meta-eval for iteration \(skipped.iteration) skipped: iteration \(iteration) is due before it could start")
            }
            waiting = (iteration, theta)
            return
        }
        running = true
        launch(iteration: iteration, theta: theta)
    }

    private func launch(iteration: Int, theta: ParameterVector) {
        let thread = Thread { [self] in
            evaluate(iteration: iteration, theta: theta)
            idle.lock()
            if let next = waiting {
                waiting = nil
                launch(iteration: next.iteration, theta: next.theta)
            } else {
                running = false
                idle.broadcast()
            }
            idle.unlock()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    private func evaluate(iteration: Int, theta: ParameterVector) {
        let budget = config.evaluation.budget
        // Four points along the way when the budget divides evenly, else before and after.
        let every = budget % 4 == 0 ? budget / 4 : budget
        var plan = config.evaluationPlan(every: every)
        plan.split = .validation
        do {
            // The run's kernel class, so the numbers are the ones its workers would compute.
            let kernel: GEMMBackend = config.numerics == .portable ? .portable : .selected
            let report = try GEMMBackend.$current.withValue(kernel) {
                try runMetaEvaluation(plan: plan, inits: [("meta", theta)], threads: 1)
            }
            let points = report.summary(0)
            idle.lock()
            if (latest?.iteration ?? -1) <= iteration { latest = (iteration, points.first!.meanReturn, points.last!.meanReturn) }
            idle.unlock()
            do {
                try tensorBoard?.add(step: iteration, scalars: [("meta_eval/return_before_adaptation", points.first!.meanReturn),
                                                               ("meta_eval/return_after_adaptation", points.last!.meanReturn)])
            } catch {
                logger.error("could not write TensorBoard events: \(error)")
            }
            do { try appendLine(Data(report.json(extra: [("iteration", "\(iteration)")]).utf8), to: path) } catch {
                logger.error("could not append to \(path): \(error)")
            }
            logger.info("\(String(format: "meta-eval iteration %d: greedy return %.1f ± %.1f before, %.1f ± %.1f after %d steps (%d validation tasks, %.1f s)", iteration, points.first!.meanReturn, points.first!.ci95, points.last!.meanReturn, points.last!.ci95, budget, plan.tasks, report.seconds))")
        } catch {
            logger.error("meta-eval for iteration \(iteration) failed: \(error)")
        }
    }

    /// At the end of a run: evaluates the final θ if its iteration was not due anyway, then waits for
    /// every evaluation to finish, so eval.jsonl always ends with the θ the run produced.
    func finish(iteration: Int, theta: ParameterVector) {
        if enabled && !isDue(iteration) {
            start(iteration: iteration, theta: theta)
        }
        waitUntilIdle()
    }

    /// Blocks until no evaluation is running or waiting.
    func waitUntilIdle() {
        idle.lock()
        while running { idle.wait() }
        idle.unlock()
    }
}

/// Appends `line` and a newline to the file at `path`, creating it if needed; throws when it cannot (the
/// caller logs it: a metrics line is not worth stopping a run for, but nobody should lose one silently).
func appendLine(_ line: Data, to path: String) throws {
    if !FileManager.default.fileExists(atPath: path) {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
    }
    guard let handle = FileHandle(forWritingAtPath: path) else {
        throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
    }
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: line + Data("\n".utf8))
}
