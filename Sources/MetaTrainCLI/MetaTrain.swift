import ArgumentParser
import Foundation
import Logging
import NeuralNet
import Transport
import Wire

/// The `metatrain` command and its subcommands, as a library: a program of one's own that registers Swift task
/// families (`ExternalEnvironments.register`) calls `MetaTrain.main()` and is a complete `metatrain`.
public struct MetaTrain: ParsableCommand {
    public init() {}

    /// What `metatrain --version` prints: the release, and the wire protocol and checkpoint format it speaks (a worker
    /// and a coordinator work together exactly when their protocols match).
    public static let version = "metatrain 0.41.0 (wire protocol \(protocolVersion), checkpoint format \(CheckpointRecord.formatVersion))"

    public static let configuration = CommandConfiguration(
        commandName: "metatrain",
        abstract: "Meta-trains DQN agents across a cluster: Reptile / first-order / second-order MAML over ZeroMQ workers, and measures whether it helped.",
        version: MetaTrain.version,
        subcommands: [Local.self, CoordinatorCommand.self, WorkerCommand.self, CheckpointCommand.self, ConfigCommand.self, KeygenCommand.self, Train.self, Eval.self, Compare.self, Bench.self, ExportCommand.self, StatusCommand.self, Scaling.self]
    )

    /// Checks METATRAIN_KERNEL before any command computes: a kernel that does not exist, or that this CPU
    /// cannot run, is an error rather than a silent fallback to another kernel (and other bits). Then sets the
    /// allocator up for θ-sized message buffers (`MessageAllocator`; METATRAIN_ALLOCATOR=default keeps glibc's own).
    public static func main() {
        do {
            try Numerics.validateEnvironment()
            try MessageAllocator.configure(environment: ProcessInfo.processInfo.environment)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            Foundation.exit(2)
        }
        main(nil)
    }
}

/// Options every cluster command shares.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error.",
            completion: .list(["trace", "debug", "info", "notice", "warning", "error"]))
    var logLevel: String = "info"

    func bootstrap(label: String) throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error")
        }
        LoggingSystem.bootstrap { name in
            var handler = StreamLogHandler.standardError(label: name)
            handler.logLevel = level
            return handler
        }
        return Logger(label: label)
    }
}
