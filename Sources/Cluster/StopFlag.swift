import Dispatch
import Foundation
import Synchronization

/// Set once SIGINT or SIGTERM arrives; run loops poll it between finite waits.
///
/// The signals are routed through Dispatch sources, so nothing async-signal-unsafe runs in a
/// signal handler.
public final class StopFlag: @unchecked Sendable {
    private let flag = Atomic<Bool>(false)
    /// Written only by `installSignalHandlers`, which the process calls once at start.
    private var sources: [DispatchSourceSignal] = []

    public init() {}

    public var isSet: Bool { flag.load(ordering: .acquiring) }
    public func set() { flag.store(true, ordering: .releasing) }

    /// Routes SIGINT and SIGTERM to this flag (the default action, exit, no longer applies).
    public func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in set() }
            source.resume()
            sources.append(source)
        }
    }
}
