import Foundation
import MetaLearning
import Wire

extension SchedulerEvent {
    /// The scheduler event a decoded message from `peer` means: one mapping, used by the coordinator shell and by
    /// the fault simulation (which drives the real worker and eval-client sessions through it).
    ///
    /// What needs the coordinator's state comes in as closures: checking a result against θ and making its payload,
    /// numbering an eval request and keeping its jobs, checking an eval outcome against the job it answers.
    /// `note` hears error replies that carry no slot to act on (they count as a sign of life).
    public static func inbound(_ peer: Peer, _ message: Message,
                               result: (SlotResult) -> SchedulerEvent,
                               evalRequest: (EvalRequest) -> SchedulerEvent,
                               evalOutcome: (EvalOutcome) -> SchedulerEvent,
                               note: (ErrorReply) -> Void) -> SchedulerEvent {
        switch message {
        case .hello(let h): return .hello(peer, h)
        case .heartbeat(let envSteps): return .heartbeat(peer, envSteps: envSteps)
        case .goodbye: return .goodbye(peer)
        case .result(let r): return result(r)
        case .error(let e):
            switch (e.code, e.key) {
            case (.parametersMissing, let key?): return .parametersMissing(peer, key)
            case (.taskFailed, let key?): return .taskFailed(peer, key, e.message)
            case (.diverged, let key?): return .slotDiverged(peer, key, e.message)
            default:
                note(e)
                return .heartbeat(peer)
            }
        case .evalRequest(let r): return evalRequest(r)
        case .evalOutcome(let o):
            if let error = o.error { return .evalFailed(peer, o.key, error) }
            return evalOutcome(o)
        case .welcome, .assignment, .evalJob, .statusReply:
            return .malformed(peer, "a worker must not send \(message.kind)", code: .malformed)
        case .statusRequest:
            // The coordinator shell answers it before it gets here; not the scheduler's business.
            return .heartbeat(peer)
        }
    }
}
