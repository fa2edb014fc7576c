import ClusterCore
import Foundation
import Synchronization

/// A signal arrived: written only by `stopSignalHandler`, read by every `StopFlag`.
private let stopSignalled = Atomic<Bool>(false)

/// The SIGINT/SIGTERM handler: one lock-free atomic store, which is async-signal-safe.
private func stopSignalHandler(_ signal: Int32) {
    stopSignalled.store(true, ordering: .releasing)
}

/// Set once SIGINT or SIGTERM arrives; run loops poll it between finite waits.
///
/// The signals are caught by a plain `sigaction` handler that only stores to an atomic. (Routing them through
/// Dispatch sources, as before, first set them to SIG_IGN: a signal arriving in between was discarded, and a
/// coordinator signalled right after start kept running.)
public final class StopFlag: @unchecked Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public var isSet: Bool { flag.load(ordering: .acquiring) || stopSignalled.load(ordering: .acquiring) }
    public func set() { flag.store(true, ordering: .releasing) }

    /// Routes SIGINT and SIGTERM to this flag (the default action, exit, no longer applies). Until this runs the
    /// default action applies, so no signal is ever lost: it either stops the process or sets the flag.
    public func installSignalHandlers() {
        _ = stopSignalled.load(ordering: .relaxed)   // initialise the global before a handler can touch it
        var set = sigset_t()
        sigemptyset(&set)
        for sig in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = stopSignalHandler
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
            sigaddset(&set, sig)
        }
        // A parent may have started us with these signals blocked (a blocked mask is inherited across exec, as a
        // multi-threaded test runner's can be): unblock them here, so they reach the handler; threads started
        // from here on inherit this mask.
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}
