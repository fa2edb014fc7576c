import ArgumentParser
import Logging

@main
struct MetaTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metatrain",
        abstract: "Meta-trains DQN agents across a cluster: Reptile / first-order / second-order MAML over ZeroMQ workers, and measures whether it helped.",
        subcommands: [Local.self, CoordinatorCommand.self, WorkerCommand.self, CheckpointCommand.self, ConfigCommand.self, KeygenCommand.self, Train.self, Eval.self, Bench.self]
    )
}

/// Options every cluster command shares.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
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
