import ArgumentParser
import Cluster
import DQN
import Foundation
import MetaLearning
import NeuralNet
import Wire

/// `metatrain export`: a checkpoint's θ as safetensors (named tensors) or ONNX (the Q-network), for PyTorch users.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's θ as safetensors (PyTorch nn.Sequential names) or as an ONNX Q-network.")

    @Argument(help: "A checkpoint file, or a run folder (its newest valid checkpoint).") var checkpoint: String
    @Option(help: "safetensors or onnx.", completion: .list(["safetensors", "onnx"])) var format: String
    @Option(help: "The file to write.") var out: String
    @Option(help: "The run's cluster.yaml (default: config.yaml in the run folder).") var config: String?

    func validate() throws {
        guard ["safetensors", "onnx"].contains(format) else { throw ValidationError("--format must be safetensors or onnx") }
    }

    func run() throws {
        try userFacing {
            let report: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            let (record, path, folder) = try loadCheckpointOrRun(checkpoint, report: report)
            let configPath = config ?? RunFolder(folder).config
            guard FileManager.default.fileExists(atPath: configPath) else {
                throw ValidationError("no configuration at \(configPath): pass the run's cluster.yaml with --config")
            }
            let cfg = try loadConfig(configPath)
            // Every task of a family has the same observation and action sizes: any one gives the network's shape.
            let mlp = try makeNetwork(for: try cfg.task(iteration: 0, slot: 0), config: cfg.innerLoop.dqn)
            guard mlp.parameterCount == record.state.theta.count else {
                throw ValidationError("\(path) holds \(record.state.theta.count) parameters; \(configPath) describes a network of \(mlp.parameterCount) (\(mlp.sizes)): pass the run's own --config")
            }
            let bytes: [UInt8]
            if format == "onnx" {
                bytes = try ModelExport.onnx(mlp: mlp, theta: record.state.theta, producerVersion: "protocol \(protocolVersion)")
            } else {
                bytes = try ModelExport.safetensors(mlp: mlp, theta: record.state.theta, metadata: [
                    "run_id": record.runID, "iteration": "\(record.state.iteration)", "algorithm": record.algorithm.rawValue,
                    "params_sha256": parametersSHA256(record.state.theta), "family": cfg.family.kindName,
                ])
            }
            try Data(bytes).write(to: URL(fileURLWithPath: out), options: .atomic)
            print("wrote \(out): \(format), network \(mlp.sizes.map(String.init).joined(separator: "→")), θ of \(path) (iteration \(record.state.iteration))")
        }
    }
}
