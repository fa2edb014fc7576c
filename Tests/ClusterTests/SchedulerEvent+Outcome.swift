import ClusterCore
import MetaLearning
import Wire

extension SchedulerEvent {
    /// A client's eval request for the jobs at `jobs` (their content: the simulation's eval jobs).
    static func request(_ peer: Peer, jobs: [Int]) -> SchedulerEvent {
        .evalRequest(peer, EvalRequest(requestID: "req", jobs: jobs.map { ($0, SchedulerSimulationTests.evalJob($0)) }))
    }

    /// A worker's outcome of eval job `key`, with an empty adaptation outcome: what the Scheduler reads of one is its key.
    static func outcome(_ peer: Peer, _ key: EvalKey) -> SchedulerEvent {
        .evalOutcome(peer, EvalOutcome(key: key, outcome: AdaptationOutcome(returns: [], final: nil)))
    }
}
