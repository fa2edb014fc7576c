import Cluster
import DQN
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Wire

/// `metatrain export`: what PyTorch users load — safetensors through numpy, ONNX through onnxruntime — gives
/// metatrain's own Q-values. scripts/test.sh provides the Python (safetensors, numpy, onnxruntime).
@Suite struct ExportTests {
    static let python = ProcessInfo.processInfo.environment["METATRAIN_READERS_PYTHON"]
    static var script: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("export_check.py").path }

    @Test(.enabled(if: python != nil, "SKIPPED: needs METATRAIN_READERS_PYTHON, a venv with safetensors, numpy and onnxruntime (scripts/test.sh sets it, and fails if this test does not run)"))
    func exportedThetaGivesMetatrainsQValuesInPythonLibraries() throws {
        let folder = Harness.folder("export")
        let config = Harness.writeConfig(folder)
        let run = folder + "/run"
        let train = try Harness.Child(["local", "--config", config, "--workers", "1", "--run-dir", run, "--no-eval"], log: folder + "/local.log")
        #expect(train.wait(seconds: 180) == 0, "\(train.output.suffix(1500))")
        for format in ["safetensors", "onnx"] {
            let export = try Harness.Child(["export", run, "--format", format, "--out", "\(folder)/model.\(format)"], log: folder + "/export-\(format).log")
            #expect(export.wait(seconds: 60) == 0, "\(export.output)")
        }

        // metatrain's own forward pass on 100 observations.
        let cfg = try ClusterConfig.parse(Harness.configText)
        let theta = try CheckpointStore(runDirectory: run, keepLast: 1).newestValid(settings: nil, configHash: nil).record.state.theta
        let mlp = try makeNetwork(for: try cfg.task(iteration: 0, slot: 0), config: cfg.innerLoop.dqn)
        var rng = SeededRNG(seed: 42)
        let observations = (0..<(100 * mlp.inputSize)).map { _ in Float(rng.nextGaussian()) }
        let ours = mlp.predict(theta, inputs: observations, workspace: MLPWorkspace(mlp: mlp, capacity: 100))
        let obsFile = folder + "/observations.f32"
        try Data(observations.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }).write(to: URL(fileURLWithPath: obsFile))

        let (status, data) = try Harness.runPython(Self.python!, Self.script,
                                                   [folder + "/model.safetensors", folder + "/model.onnx", obsFile, "\(mlp.inputSize)"])
        let text = String(decoding: data, as: UTF8.self)
        #expect(status == 0, "\(text)")
        let result = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(text)")
        for format in ["safetensors", "onnx"] {
            let theirs = try #require(result[format] as? [Double], "\(format): \(text.prefix(500))")
            #expect(theirs.count == ours.count)
            let worst = zip(theirs, ours).map { abs($0 - Double($1)) / max(1, abs(Double($1))) }.max() ?? .infinity
            #expect(worst <= 1e-5, "\(format): largest relative difference \(worst)")
        }
        // Both files describe themselves: the numpy network above was rebuilt from the safetensors metadata alone, θ's
        // hash recomputed by its recipe matches, and the ONNX model carries the same description (issue 38, item 7).
        let metadata = try #require(result["metadata"] as? [String: String])
        #expect(metadata["layer_sizes"] == mlp.sizes.map(String.init).joined(separator: ","))
        #expect(metadata["params_sha256"] == parametersSHA256(theta))
        #expect(result["params_sha256"] as? String == parametersSHA256(theta), "the recipe in the metadata gives θ's hash")
        #expect(metadata["observation"]?.contains("cart position") == true && metadata["actions"]?.contains("push the cart left") == true)
        let onnxMetadata = try #require(result["onnx_metadata"] as? [String: String])
        for key in ["layers", "activation", "forward", "params_sha256", "params_sha256_recipe", "observation", "actions"] {
            #expect(onnxMetadata[key] == metadata[key], "ONNX metadata_props \(key)")
        }
        // metatrain prints its own Q-values for given observations: what a user checks an export against.
        let rows = (0..<3).map { r in "[" + (0..<mlp.inputSize).map { "\(observations[r * mlp.inputSize + $0])" }.joined(separator: ", ") + "]" }
        try Data(("[" + rows.joined(separator: ", ") + "]").utf8).write(to: URL(fileURLWithPath: folder + "/observations.json"))
        let printed = try Harness.Child(["export", run, "--q-values", folder + "/observations.json"], log: folder + "/q-values.log")
        #expect(printed.wait(seconds: 60) == 0, "\(printed.output.suffix(1000))")
        let line = printed.output.split(separator: "\n").first { $0.hasPrefix("{\"q_values\"") } ?? ""
        let q = ((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any])?["q_values"] as? [[Double]] ?? []
        #expect(q.flatMap { $0 }.map(Float.init) == Array(ours.prefix(3 * mlp.outputSize)), "bit for bit: \(printed.output.suffix(500))")
    }
}
