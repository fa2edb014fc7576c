import Foundation

/// Errors that end a cluster process.
public enum ClusterError: Error, CustomStringConvertible {
    case aborted(String)
    /// A worker could not produce a usable result for a slot.
    case slotFailed(String)
    public var description: String {
        switch self {
        case .aborted(let r): return "run aborted: \(r)"
        case .slotFailed(let r): return r
        }
    }
}
