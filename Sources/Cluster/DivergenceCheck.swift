import Foundation
import Logging
import MetaLearning
import NeuralNet
import Wire

/// Recomputes, on a thread of the coordinator, a slot a worker reported diverged.
///
/// Slots are deterministic, so the coordinator's own result settles it: a divergence it confirms stops the run
/// (after a checkpoint of the last good θ), one it does not means the reporting workers compute other bits. No
/// peer can stop a run by claiming divergence. The run loop collects finished checks with `takeFinished()`.
final class DivergenceCheck: @unchecked Sendable {
    private let lock = NSLock()
    private var finished: [(SlotKey, String?)] = []
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// Starts recomputing slot `key` from `theta` (the θ the workers had).
    func confirm(_ key: SlotKey, reported: String, theta: ParameterVector, config: ClusterConfig, numerics: NumericsPolicy) {
        logger.warning("a worker reports slot \(key.slot) of iteration \(key.iteration) diverged (\(reported)): recomputing it here to confirm")
        let kernel: GEMMBackend = numerics == .portable ? .portable : .selected
        let thread = Thread { [self] in
            var found: String?
            do {
                let task = try config.task(iteration: key.iteration, slot: key.slot)
                let seed = slotSeed(runSeed: config.run.seed, iteration: key.iteration, slot: key.slot)
                let outcome = try GEMMBackend.$current.withValue(kernel) {
                    try runSlot(theta: theta, task: task, algorithm: config.meta.algorithm, settings: config.innerLoop, seed: seed)
                }
                found = outcome.update.divergence
            } catch {
                found = "the slot fails: \(error)"
            }
            lock.lock(); finished.append((key, found)); lock.unlock()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// The checks completed since the last call: the slot, and what the coordinator found (nil: a usable update).
    func takeFinished() -> [(SlotKey, String?)] {
        lock.lock(); defer { lock.unlock() }
        let done = finished
        finished = []
        return done
    }
}
