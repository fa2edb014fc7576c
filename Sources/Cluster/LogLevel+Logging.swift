import ClusterCore
import Logging

extension LogLevel {
    /// The swift-log level the shells log a pure core's `.log` at (the core itself imports no logging).
    var loggerLevel: Logger.Level {
        switch self {
        case .debug: return .debug
        case .info: return .info
        case .warning: return .warning
        case .error: return .error
        }
    }
}
