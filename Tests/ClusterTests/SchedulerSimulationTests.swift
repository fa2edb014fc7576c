import Cluster
import DQN
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Wire

/// The scheduler and the real worker and eval-client sessions, driven by a seeded simulation of an unreliable
/// cluster (`ClusterSimulation`): joins, kills, pauses, message delays, reorders and duplicates, coordinator
/// restarts from checkpoints. Every message between them goes through the wire codec and the coordinator's own
/// message → event mapping; only the sockets, the compute threads and the clock are simulated. Thousands of
/// schedules; DESIGN.md's invariants 1-4 and 7 are checked on every one, and after every step that no slot is
/// stranded (each unfinished slot is pending or held by a live worker). Some workers are black holes: they
/// register, accept work and heartbeat, and never deliver nor progress; the run must finish all the same. An eval
/// client submits a request of meta-evaluation jobs during training: every job's outcome must reach it exactly
/// once, and the eval jobs must not change the meta-parameter trajectory. `SIM_TRACE_SEED=N` prints schedule N.
@Suite struct SchedulerSimulationTests {
    /// The deterministic "result" of a slot: what any worker computes for it.
    static func work(_ iteration: Int, _ slot: Int) -> UInt64 {
        SplitMix64.mix(UInt64(iteration) &* 1_000_003 &+ UInt64(slot))
    }

    /// A slot's payload computed on θ version `base`: a result computed on another version than its iteration's
    /// (a pipelined run's slots adapt the version before) gives another θ.
    static func work(_ iteration: Int, _ slot: Int, base: Int) -> UInt64 {
        SplitMix64.mix(work(iteration, slot) ^ (UInt64(base) &* 0x9E37_79B9))
    }

    /// θ after one meta-update: depends on the payloads and on their order.
    static func update(_ theta: UInt64, _ payloads: [UInt64]) -> UInt64 {
        payloads.reduce(theta) { SplitMix64.mix($0 ^ $1) }
    }

    /// The eval client's jobs: small valid adaptation jobs (a 4 → 4 → 2 CartPole network), one per index.
    static func evalJob(_ index: Int) -> AdaptationJob {
        var dqn = DQNConfig()
        dqn.hiddenLayers = [4]
        return AdaptationJob(initial: ParameterVector((0..<30).map { Float($0 + index) / 8 - 2 }),
                             task: .cartPole(CartPoleParameters(gravity: 9 + Double(index))), dqn: dqn,
                             budget: 300, every: 100, episodes: 3, seed: UInt64(index), scoringSeed: 17,
                             returnFinal: index % 2 == 0)
    }

    /// What a simulated worker computes for an eval job: returns that name the job, θ back when asked.
    static func evalResult(_ message: EvalJobMessage) -> AdaptationOutcome {
        AdaptationOutcome(returns: Array(repeating: Double(message.key.job), count: message.job.points),
                          final: message.job.returnFinal ? message.job.initial : nil)
    }

    @Test func thousandsOfFaultySchedulesKeepTheInvariants() throws {
        var failures: [String] = []
        var served = 0
        for seed in 0..<1500 {
            let outcome = try ClusterSimulation(seed: UInt64(seed), restarts: false).run()
            failures += outcome.failures
            if outcome.evalServed { served += 1 }
            if failures.count > 10 { break }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        // The eval client must have competed with training in a good share of the schedules.
        #expect(served >= 1200, "eval requests served in only \(served) of 1500 schedules")
    }

    /// Pipelined runs under the same faults, with and without coordinator restarts: every slot of two iterations in
    /// flight is applied once, in slot order, on the θ version its iteration adapts, whatever the schedule.
    @Test func pipelinedRunsGiveTheReferenceTrajectoryUnderFaults() throws {
        var failures: [String] = []
        for seed in 20_000..<20_600 {
            let outcome = try ClusterSimulation(seed: UInt64(seed), restarts: seed % 2 == 1, pipelined: true).run()
            failures += outcome.failures
            if failures.count > 10 { break }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    @Test func coordinatorRestartsFromCheckpointsGiveTheSameTrajectory() throws {
        var failures: [String] = []
        var served = 0
        for seed in 10_000..<10_800 {
            let outcome = try ClusterSimulation(seed: UInt64(seed), restarts: true).run()
            failures += outcome.failures
            if outcome.evalServed { served += 1 }
            if failures.count > 10 { break }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        #expect(served >= 600, "eval requests served in only \(served) of 800 schedules")
    }
}
