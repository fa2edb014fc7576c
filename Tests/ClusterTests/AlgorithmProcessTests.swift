import Cluster
import Foundation
import Testing

/// Every meta-algorithm runs on the cluster as Reptile does: real coordinator and worker processes, 1 and 3 workers,
/// the same params_sha256 as the serial in-process computation (issue 14). Reptile's own case, with more worker
/// counts, threads and faults, is in ClusterProcessTests. FOMAML runs the TD query and MAML the teacher query, so both
/// query losses and the second-order path cross the wire; ES-MAML's perturbation settings cross it too.
@Suite(.serialized) struct AlgorithmProcessTests {
    static func configText(_ algorithm: String) -> String {
        """
        run:
          name: algo-\(algorithm)
          seed: 5
          checkpoint_interval: 2
          keep_last: 2
        coordinator:
          bind: tcp://127.0.0.1:*
          heartbeat_interval_ms: 200
          liveness: 5
        meta:
          algorithm: \(algorithm)
          iterations: 4
          meta_batch: 3
          outer_step: \(algorithm == "reptile" || algorithm == "distill" ? "1.0" : "0.001")
          optimizer: \(algorithm == "reptile" || algorithm == "distill" ? "sgd" : "adam")
        \(algorithm == "distill" ? "  distill: {states: 200, steps: 50, batch_size: 32}\n" : "")\
        \(algorithm == "es-maml" ? "  es: {sigma: 0.05, fitness_every: 200, fitness_episodes: 1}\n" : "")task_family:
          env: goal_navigation
        inner_loop:
          budget: 600
          query_steps: 64
        \(algorithm == "maml" ? "  query: teacher\n  teacher_steps: 200\n" : "")  hidden_layers: [16, 16]
          optimizer: \(algorithm == "maml" ? "sgd" : "adam")
          learning_rate: 0.01
          batch_size: 16
          learning_starts: 50
          buffer_capacity: 600
        evaluation:
          tasks: 0
        """
    }

    @Test(arguments: ["fomaml", "maml", "distill", "es-maml"]) func oneAndThreeWorkersGiveTheSerialTheta(_ algorithm: String) throws {
        let text = Self.configText(algorithm)
        let reference = Harness.reference(text)
        #expect(reference.count == 64, "\(reference)")
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
}
