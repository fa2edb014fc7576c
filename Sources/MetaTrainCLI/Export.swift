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
    @Option(help: "safetensors or onnx.", completion: .list(["safetensors", "onnx"])) var format: String?
    @Option(help: "The file to write.") var out: String?
    @Option(help: "Instead of writing a file: print metatrain's own Q-values (JSON) for the observations in this file — a JSON array of rows, or whitespace-separated numbers, one observation per line — to check an export against.")
    var qValues: String?
    @Option(help: "The run's cluster.yaml (default: config.yaml in the run folder).") var config: String?

    func validate() throws {
        if qValues != nil {
            guard format == nil && out == nil else { throw ValidationError("--q-values prints; it takes neither --format nor --out") }
            return
        }
        guard let format, ["safetensors", "onnx"].contains(format) else { throw ValidationError("--format must be safetensors or onnx") }
        guard out != nil else { throw ValidationError("--out names the file to write") }
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
            if let qValues {
                try printQValues(mlp: mlp, theta: record.state.theta, observations: qValues)
                return
            }
            let (format, out) = (format!, out!)
            let metadata = [
                "run_id": record.runID, "iteration": "\(record.state.iteration)", "algorithm": record.algorithm.rawValue,
                "params_sha256": parametersSHA256(record.state.theta), "family": cfg.family.kindName,
                "observation": Self.observationMeaning(cfg), "actions": Self.actionMeaning(cfg),
            ]
            let bytes: [UInt8]
            if format == "onnx" {
                bytes = try ModelExport.onnx(mlp: mlp, theta: record.state.theta, producerVersion: "protocol \(protocolVersion)",
                                             metadata: metadata)
            } else {
                bytes = try ModelExport.safetensors(mlp: mlp, theta: record.state.theta, metadata: metadata)
            }
            try Data(bytes).write(to: URL(fileURLWithPath: out), options: .atomic)
            print("wrote \(out): \(format), network \(mlp.sizes.map(String.init).joined(separator: "→")), θ of \(path) (iteration \(record.state.iteration))")
        }
    }

    /// Prints `{"q_values": [[…], …]}`: the network's Q-values for each observation row of `path`, as metatrain computes
    /// them (its own kernels), so an export can be checked against metatrain without writing a forward pass.
    func printQValues(mlp: MLP, theta: ParameterVector, observations path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(path)") }
        var rows: [[Double]]
        if let json = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[Any]] {
            rows = try json.map { row in try row.map { v in
                guard let x = (v as? NSNumber)?.doubleValue else { throw ValidationError("\(path): an observation holds \(v), not a number") }
                return x
            } }
        } else {
            rows = try text.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }.map { line in
                try line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," }).map { word in
                    guard let x = Double(word) else { throw ValidationError("\(path): '\(word)' is not a number") }
                    return x
                }
            }
        }
        guard !rows.isEmpty, rows.allSatisfy({ $0.count == mlp.inputSize && $0.allSatisfy(\.isFinite) }) else {
            throw ValidationError("\(path): every observation must be \(mlp.inputSize) finite numbers (the network's input size)")
        }
        let inputs = rows.flatMap { $0.map(Float.init) }
        let q = mlp.predict(theta, inputs: inputs, workspace: MLPWorkspace(mlp: mlp, capacity: rows.count))
        let out = (0..<rows.count).map { r in "[" + (0..<mlp.outputSize).map { "\(q[r * mlp.outputSize + $0])" }.joined(separator: ", ") + "]" }
        print("{\"q_values\": [\(out.joined(separator: ", "))]}")
    }

    /// What the observation's entries mean, for the file's metadata.
    static func observationMeaning(_ cfg: ClusterConfig) -> String {
        let base: String
        switch cfg.family.kindName {
        case "cartpole": base = "[cart position, cart velocity, pole angle (rad), pole angular velocity], as gymnasium CartPole-v1"
        case "acrobot": base = "[cos theta1, sin theta1, cos theta2, sin theta2, theta1 velocity, theta2 velocity], as gymnasium Acrobot-v1"
        case "mountaincar": base = "[position, velocity], as gymnasium MountainCar-v0"
        case "goal_navigation": base = "[x, y]: the point's position (it starts at the origin; the goal is not observed)"
        case "tabular_mdp": base = "the state, one-hot"
        default: base = "the gymnasium environment's observation, flattened (Box: row-major; Discrete: one-hot)"
        }
        guard let window = cfg.innerLoop.dqn.contextWindow else { return base }
        return base + "; then the episode's last \(window) transitions (observation, one-hot action, reward), oldest first, zeros before the first"
    }

    /// What action k means, for the file's metadata.
    static func actionMeaning(_ cfg: ClusterConfig) -> String {
        switch cfg.family.kindName {
        case "cartpole": return "0: push the cart left, 1: push it right"
        case "acrobot": return "0: torque -1, 1: no torque, 2: torque +1"
        case "mountaincar": return "0: accelerate left, 1: do not accelerate, 2: accelerate right"
        case "goal_navigation": return "moves of step_size: 0 +x, 1 -x, 2 +y, 3 -y (then, with 8 directions, 4 +x+y, 5 +x-y, 6 -x+y, 7 -x-y), each turned by the task's hidden control rotation; the last is stay when stay_action is on"
        case "tabular_mdp": return "action k of the task's transition table"
        default: return "action k of the environment's Discrete action space"
        }
    }
}
