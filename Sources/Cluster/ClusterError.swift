import ClusterCore
import Foundation

/// Errors that end a cluster process, by what went wrong: the command line prints the description and exits
/// non-zero, and a test can tell a diverged run from a coordinator bug.
public enum ClusterError: Error, CustomStringConvertible {
    /// The run diverged: a slot the coordinator recomputed diverged too, or θ became non-finite. θ before it is
    /// checkpointed; the text says what to change.
    case diverged(String)
    /// Workers report a slot diverged and the coordinator cannot check it (its CPU lacks the run's kernel class).
    case unverifiable(String)
    /// The coordinator's own bookkeeping contradicts itself (a bug): the run stops with a checkpoint of the last
    /// good θ rather than going on in a state nobody can reason about.
    case internalInconsistency(String)
    /// The final checkpoint could not be written while stopping for `reason`.
    case checkpointFailed(reason: String, error: String)
    /// An eval client's request failed, or a process could not set itself up (text says which).
    case aborted(String)
    /// A worker could not produce a usable result for a slot.
    case slotFailed(String)

    public var description: String {
        switch self {
        case .diverged(let r): return "run stopped: \(r)"
        case .unverifiable(let r): return "run stopped: \(r)"
        case .internalInconsistency(let r): return "run stopped by an internal inconsistency (a bug; please report it with the log): \(r)"
        case let .checkpointFailed(reason, error): return "run stopped: \(reason); and the final checkpoint could not be written: \(error)"
        case .aborted(let r): return "run aborted: \(r)"
        case .slotFailed(let r): return r
        }
    }
}
