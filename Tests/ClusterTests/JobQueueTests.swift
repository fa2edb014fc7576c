@testable import Cluster
@testable import ClusterCore
import Testing
import Wire

/// The worker shell's job queue: bounded by its threads, and emptied of jobs not started when the session says so
/// (issue 39, defect 6).
@Suite struct JobQueueTests {
    static func job(_ slot: Int) -> WorkerJob {
        .eval(EvalJobMessage(key: EvalKey(request: 1, job: slot, attempt: 0), job: SchedulerSimulationTests.evalJob(slot)), kernel: .portable)
    }

    @Test func holdsAtMostItsCapacityQueuedOrRunning() {
        let q = JobQueue(capacity: 2)
        #expect(q.put(Self.job(0)) && q.put(Self.job(1)))
        #expect(!q.put(Self.job(2)), "a third job on two threads is refused, not queued behind them")
        _ = q.take()                          // one starts: still two in flight
        #expect(!q.put(Self.job(3)))
        q.finished()                          // it is done: room for one
        #expect(q.put(Self.job(4)))
        #expect(q.load.queued + q.load.running == 2)
    }

    @Test func dropsTheJobsNotStarted() {
        let q = JobQueue(capacity: 3)
        for i in 0..<3 { _ = q.put(Self.job(i)) }
        _ = q.take()                          // running: a hung job keeps its place
        #expect(q.dropQueued() == 2)
        #expect(q.load.queued == 0 && q.load.running == 1)
        #expect(q.put(Self.job(5)) && q.put(Self.job(6)) && !q.put(Self.job(7)))
    }
}

/// An eval request whose job indices repeat is refused, not trapped on (issue 39, defect 9: the coordinator built its
/// job table with `Dictionary(uniqueKeysWithValues:)`, and only the decoder kept duplicates out).
@Suite struct EvalRequestJobTableTests {
    @Test func repeatedIndicesAreRefused() {
        let job = SchedulerSimulationTests.evalJob(0)
        #expect(Coordinator.jobsByIndex([(0, job), (1, job), (0, job)]) == nil)
        #expect(Coordinator.jobsByIndex([(0, job), (2, job)])?.keys.sorted() == [0, 2])
    }
}
