import ClusterCore
import DQN
import Environments
import Foundation
import MetaLearning
import NeuralNet

extension ClusterConfig {
    /// The updates `MetaState.apply` takes for iteration `iteration`, from the slots' updates in slot order: those
    /// updates themselves, or for `meta.algorithm: distill` the one update student − θ, where the student is fitted
    /// to the experts θ + (φᵢ − θ) on their slots' tasks (`distill`), computing on `kernel`.
    ///
    /// A pure function of the configuration, θ and the slots' updates: the coordinator and the tests' serial
    /// reference both call it, so they cannot drift apart.
    public func metaUpdates(iteration: Int, theta: ParameterVector, slotUpdates: [ParameterVector],
                            kernel: GEMMBackend) throws -> [ParameterVector] {
        guard meta.algorithm == .distill else { return slotUpdates }
        let experts = try slotUpdates.enumerated().map { i, update in
            var phi = theta
            axpy(1, update, &phi)
            return (parameters: phi, task: try task(iteration: iteration, slot: i))
        }
        let seed = deriveSeed(run.seed, iteration: UInt64(iteration), slot: 0, purpose: .distillation)
        let student = try GEMMBackend.$current.withValue(kernel) {
            try distill(student: theta, experts: experts, config: innerLoop.dqn, settings: meta.distillation ?? DistillationSettings(), seed: seed)
        }
        return [difference(student, theta)]
    }
}
