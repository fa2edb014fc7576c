import Cluster
import Foundation
import Testing

/// Every meta-algorithm runs on the cluster as Reptile does: real coordinator and worker processes, 1 and 3 workers,
/// the same params_sha256 as the serial in-process computation, and a coordinator killed after a checkpoint resumes
/// to it (issue 14). Reptile's own case, with more worker counts, threads and faults, is in ClusterProcessTests.
/// FOMAML runs the TD query and MAML the teacher query, so both query losses and the second-order path cross the
/// wire; ES-MAML's perturbation settings cross it too; "context" is the context-conditioned DQN (Reptile with
/// `inner_loop.context_window`); "pipelined" is Reptile with `meta.pipeline: true`, two iterations in flight.
@Suite(.serialized) struct AlgorithmProcessTests {
    static let cases = ["fomaml", "maml", "distill", "es-maml", "context", "pipelined"]

    static func configText(_ name: String, iterations: Int = 4) -> String {
        let algorithm = name == "context" || name == "pipelined" ? "reptile" : name
        return """
        run:
          name: algo-\(name)
          seed: 5
          checkpoint_interval: 2
          keep_last: 2
        coordinator:
          bind: tcp://127.0.0.1:*
          heartbeat_interval_ms: 200
          liveness: 5
        meta:
          algorithm: \(algorithm)
          iterations: \(iterations)
          meta_batch: 3
          outer_step: \(algorithm == "reptile" || algorithm == "distill" ? "1.0" : "0.001")
          optimizer: \(algorithm == "reptile" || algorithm == "distill" ? "sgd" : "adam")
        \(name == "pipelined" ? "  pipeline: true\n" : "")\
        \(algorithm == "distill" ? "  distill: {states: 200, steps: 50, batch_size: 32}\n" : "")\
        \(algorithm == "es-maml" ? "  es: {sigma: 0.05, fitness_every: 200, fitness_episodes: 1}\n" : "")task_family:
          env: goal_navigation
        inner_loop:
          budget: 600
          query_steps: 64
        \(algorithm == "maml" ? "  query: teacher\n  teacher_steps: 200\n" : "")\
        \(name == "context" ? "  context_window: 2\n" : "")  hidden_layers: [16, 16]
          optimizer: \(algorithm == "maml" ? "sgd" : "adam")
          learning_rate: 0.01
          batch_size: 16
          learning_starts: 50
          buffer_capacity: 600
        evaluation:
          tasks: 0
        """
    }

    @Test(arguments: cases) func oneAndThreeWorkersGiveTheSerialTheta(_ algorithm: String) throws {
        let text = Self.configText(algorithm)
        let reference = Harness.reference(text)
        #expect(reference.count == 64, "\(reference)")
        if algorithm == "pipelined" {
            #expect(reference != Harness.reference(text.replacingOccurrences(of: "  pipeline: true\n", with: "")),
                    "a pipelined run computes another θ than the synchronous one")
        }
        var shas: [String] = []
        for workers in [1, 3] {
            let folder = Harness.folder("algo-\(algorithm)-\(workers)")
            let config = Harness.writeConfig(folder, text)
            let run = try Harness.Child(["local", "--config", config, "--workers", "\(workers)", "--run-dir", folder + "/run", "--no-eval"],
                                        log: folder + "/local.log")
            #expect(run.wait(seconds: 180) == 0, "\(run.output.suffix(2000))")
            shas.append(try Harness.finalSHA(folder + "/run"))
        }
        #expect(shas == [reference, reference], "\(algorithm): serial \(reference), cluster \(shas)")
    }

    /// SIGKILL the coordinator once a checkpoint is behind it (checkpoint_interval 2, the kill after 3 applied
    /// iterations of 6), start it again with the same command: the run ends on the serial θ — the meta-optimiser's
    /// state (Adam's moments, the schedule) is checkpointed with θ and nothing is applied twice.
    @Test(arguments: cases) func aCoordinatorKilledAfterACheckpointResumesToTheSerialTheta(_ algorithm: String) throws {
        let text = Self.configText(algorithm, iterations: 6)
        let reference = Harness.reference(text)
        let folder = Harness.folder("algo-resume-\(algorithm)")
        let config = Harness.writeConfig(folder, text)
        let (first, endpoint) = try Harness.startCoordinator(folder, config: config, extra: ["--resume-or-start", folder])
        // Slowed workers (each slot takes twice its time) so the kill lands mid-run.
        let workers = try (0..<2).map { try Harness.worker(folder, endpoint: endpoint, index: $0, extra: ["--slowdown", "2"]) }
        #expect(Harness.waitFor(seconds: 120) { Harness.metrics(folder).count >= 3 }, "\(first.output.suffix(1500))")
        first.signal(SIGKILL)
        first.wait(seconds: 10)
        let appliedBeforeKill = Harness.metrics(folder).count
        let second = try Harness.coordinator(folder, config: config, extra: ["--resume-or-start", folder, "--bind", endpoint])
        #expect(second.wait(seconds: 180) == 0, "\(second.output.suffix(3000))")
        #expect(appliedBeforeKill < 6, "the kill came after the run ended: nothing was resumed")
        #expect(second.output.contains("resuming"), "\(second.output.suffix(1500))")
        #expect(try Harness.finalSHA(folder) == reference, "\(algorithm): resumed run vs serial \(reference)")
        for w in workers { w.wait(seconds: 10) }
    }
}
