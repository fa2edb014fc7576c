/// Why an environment server could not do what a worker asked: each fails the task with this reason.
public enum EnvironmentServerError: Error, Equatable, CustomStringConvertible {
    /// The interpreter could not be started (missing, not executable).
    case couldNotStart(python: String, reason: String)
    /// The server process ended (a crash in a C extension, `os._exit`, a kill): how it ended.
    case exited(command: String, how: String)
    /// No reply within the limit; the server was killed.
    case timedOut(command: String, milliseconds: Int)
    /// The environment raised: the Python exception's type and message.
    case raised(command: String, type: String, message: String)
    /// The server sent bytes this protocol does not allow.
    case protocolViolation(String)
    /// An observation or reward the environment produced cannot be learned from (NaN, Inf, another size).
    case badValues(String)

    public var description: String {
        switch self {
        case let .couldNotStart(python, reason):
            return "could not start the environment server with '\(python)': \(reason) (give the worker --python, a Python with metatrain_envserver installed: scripts/envserver-venv.sh makes one)"
        case let .exited(command, how): return "the environment server \(how) during \(command)"
        case let .timedOut(command, ms): return "the environment server did not answer \(command) within \(ms) ms (killed; raise environment_server.step_timeout_ms if the environment is that slow)"
        case let .raised(command, type, message): return "\(command) raised \(type): \(message)"
        case let .protocolViolation(text): return "the environment server broke the protocol: \(text)"
        case let .badValues(text): return text
        }
    }
}

/// A task failed in its environment: which environment, and why. The text a coordinator's log shows.
public struct EnvironmentFailure: Error, CustomStringConvertible {
    public let environment: String
    public let reason: EnvironmentServerError
    public var description: String { "gymnasium environment \(environment): \(reason)" }
}
