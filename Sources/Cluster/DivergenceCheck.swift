import ClusterCore
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Wire

/// Recomputes, on a thread of the coordinator, a slot a worker reported diverged.
///
/// Slots are deterministic, so the coordinator's own result settles it: a divergence it confirms stops the run
/// (after a checkpoint of the last good θ); a usable update it computes is the slot's result, since it computes on
/// the run's kernel class and so gives the bits every honest worker gives. No peer can stop a run by claiming
/// divergence, and the Scheduler asks for one check at a time (each is a whole inner loop here). The run loop
/// collects finished checks with `takeFinished()`.
final class DivergenceCheck: @unchecked Sendable {
    private let lock = NSLock()
    private var finished: [(SlotKey, DivergenceFinding<SlotPayload>)] = []
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// The kernel of this machine that computes the run's bits: the run's own kernel when this CPU has it, else
    /// one of the same arithmetic class (kernels of one class give the same bits); nil when this CPU has none.
    /// Why not the kernel this process selected: a coordinator on another CPU, or with another `METATRAIN_KERNEL`,
    /// would refute every honest report (issue 39, defect 3).
    static func kernel(for numerics: RunNumerics) -> GEMMBackend? {
        if numerics.policy == .portable { return .portable }
        guard let run = GEMMBackend(rawValue: numerics.kernel) else { return .selected }
        if run.isSupported { return run }
        let sameClass = GEMMBackend.allCases.first { $0.arithmetic == run.arithmetic && $0.isSupported }
        // Under `any` the run is not bit-reproducible anyway: this machine's kernel is as good as another.
        return sameClass ?? (numerics.policy == .any ? .selected : nil)
    }

    /// Starts recomputing slot `key` from `theta` (the θ the workers had) on the run's kernel class.
    func confirm(_ key: SlotKey, reported: String, theta: ParameterVector, config: ClusterConfig, numerics: RunNumerics) {
        guard let kernel = Self.kernel(for: numerics) else {
            let why = "the run computes on kernel \(numerics.kernel) (\(GEMMBackend(rawValue: numerics.kernel)?.arithmetic.rawValue ?? "?") arithmetic), which this coordinator's CPU (\(Numerics.cpuModel)) cannot run"
            lock.lock(); finished.append((key, .unverifiable(why))); lock.unlock()
            return
        }
        logger.warning("a worker reports slot \(key.slot) of iteration \(key.iteration) diverged (\(reported)): recomputing it here on kernel \(kernel.rawValue) to confirm")
        let thread = Thread { [self] in
            var found: DivergenceFinding<SlotPayload>
            do {
                let task = try config.task(iteration: key.iteration, slot: key.slot)
                let seed = slotSeed(runSeed: config.run.seed, iteration: key.iteration, slot: key.slot)
                let outcome = try GEMMBackend.$current.withValue(kernel) {
                    try runSlot(theta: theta, task: task, algorithm: config.meta.algorithm, settings: config.innerLoop, seed: seed)
                }
                if let problem = outcome.update.divergence {
                    found = .diverged(problem)
                } else {
                    found = .usable(SlotPayload(update: outcome.update, statistics: outcome.statistics))
                }
            } catch {
                found = .diverged("the slot fails: \(error)")
            }
            lock.lock(); finished.append((key, found)); lock.unlock()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// The checks completed since the last call: the slot, and what the coordinator found.
    func takeFinished() -> [(SlotKey, DivergenceFinding<SlotPayload>)] {
        lock.lock(); defer { lock.unlock() }
        let done = finished
        finished = []
        return done
    }
}
