import ClusterCore
import MetaLearning
import Wire

extension SchedulerEvent {
    /// A worker's outcome of eval job `key`, with an empty adaptation outcome: what the Scheduler reads of one is its key.
    static func outcome(_ peer: Peer, _ key: EvalKey) -> SchedulerEvent {
        .evalOutcome(peer, EvalOutcome(key: key, outcome: AdaptationOutcome(returns: [], final: nil)))
    }
}
