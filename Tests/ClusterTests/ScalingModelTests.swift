import Cluster
@testable import CapacityModel
import Testing

/// The scaling model (issue 15) against cases whose answer is known by hand: it drives the real Scheduler, so
/// these also pin that the scheduling adds nothing when nothing costs anything.
@Suite struct ScalingModelTests {
    static let free = ScalingModel.Costs(coordinatorPerMessage: 0, coordinatorPerResultByte: 0, coordinatorPerEncodedByte: 0,
                                         coordinatorApplyPerFloat: 0, workerPerMessage: 0, workerPerByte: 0, linkBytesPerSecond: 1e15, latency: 0)

    @Test func withNothingCostingAnythingAnIterationTakesItsSlotsDividedOverTheWorkers() throws {
        for (workers, batch) in [(1, 4), (4, 4), (4, 16), (64, 256)] {
            var workload = ScalingModel.Workload(thetaFloats: 1000, metaBatch: batch, slotSeconds: 1)
            workload.slotSpread = 0
            let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: workers), costs: Self.free)
            let ideal = Double(batch / workers)
            #expect(abs(p.iterationSeconds - ideal) < 0.01 * ideal, "\(workers) workers, batch \(batch): \(p.iterationSeconds) s")
            #expect(abs(p.efficiency - 1) < 0.01)
        }
    }

    @Test func aSlowLinkIsTheBottleneckAndTheIterationTakesThetaTimesWorkersOverItsBandwidth() throws {
        var costs = Self.free
        costs.linkBytesPerSecond = 1e8
        let workload = ScalingModel.Workload(thetaFloats: 1_000_000, metaBatch: 16, slotSeconds: 0.001)
        let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 16), costs: costs)
        // θ out to 16 workers and 16 updates back, each 4 MB at 100 MB/s: the two directions overlap but for one θ and one update.
        let out = 16 * 4e6 / 1e8
        #expect(p.iterationSeconds > out && p.iterationSeconds < out + 2 * 4e6 / 1e8 + 0.01, "\(p.iterationSeconds) s")
        #expect(p.bottleneck.hasPrefix("coordinator link"), "\(p.bottleneck)")
        #expect(p.efficiency < 0.01)
    }

    @Test func workersSharingCoresRunAtTheCoresPace() throws {
        var workload = ScalingModel.Workload(thetaFloats: 100, metaBatch: 4, slotSeconds: 1)
        workload.slotSpread = 0
        let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 4, sharedCores: 2), costs: Self.free)
        #expect(abs(p.iterationSeconds - 2) < 0.02, "\(p.iterationSeconds) s")
        #expect(abs(p.efficiency - 1) < 0.01)
    }

    @Test func aWorkerPaysItsReceivedBytesAtTheirOwnCostAndItsUpdatesBytesAtThePerByteCost() throws {
        // One worker, one slot of no compute: the slot is the worker's I/O. θ of 1M floats is 4 MB in and 4 MB out.
        var workload = ScalingModel.Workload(thetaFloats: 1_000_000, metaBatch: 1, slotSeconds: 0)
        workload.slotSpread = 0
        var costs = Self.free
        costs.workerPerByte = 1e-9
        let both = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 1), costs: costs)
        costs.workerPerReceivedByte = 0.25e-9
        let split = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 1), costs: costs)
        // Without the received bytes' own cost, every byte at 1 ns: 8 ms (and the head's and the result's few bytes).
        #expect(abs(both.iterationSeconds - 8e-3) < 0.05e-3, "\(both.iterationSeconds) s")
        // With it: 4 MB received at 0.25 ns (1 ms) and 4 MB sent at 1 ns (4 ms).
        #expect(abs(split.iterationSeconds - 5e-3) < 0.05e-3, "\(split.iterationSeconds) s")
    }

    @Test func bookkeepingAfterTheHandOutOverlapsTheSlotsUntilItIsLongerThanThey() throws {
        // 0.2 s + 1 µs per float of θ (0.3 s) of writing after each update, which comes after the next hand-out.
        var costs = Self.free
        costs.coordinatorPerIteration = 0.2
        costs.coordinatorPerIterationFloat = 1e-6
        for (slot, cycle) in [(1.0, 1.0), (0.2, 0.3)] {
            // Slots of 1 s hide it (the coordinator writes while workers compute); slots of 0.2 s wait for it, since
            // their results are handled only after the writing. (Much shorter slots would also draw backups: their
            // results, handled late, look like stragglers to the scheduler — as they would in a real run.)
            var workload = ScalingModel.Workload(thetaFloats: 100_000, metaBatch: 4, slotSeconds: slot)
            workload.slotSpread = 0
            let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 4), costs: costs)
            #expect(abs(p.iterationSeconds - cycle) < 0.01 * cycle, "slots of \(slot) s: \(p.iterationSeconds) s")
            #expect(abs(p.coordinatorBusy - 0.3 / cycle) < 0.01, "slots of \(slot) s: busy \(p.coordinatorBusy)")
        }
    }

    @Test func theIOThreadRunsBesideTheLoopOnACoreOfItsOwnAndTakesTurnsWithItOnOneCore() throws {
        // 64 slots an iteration: 128 messages (64 results in, 64 assignments out), each 5 ms on the loop thread and 5 ms
        // on the I/O thread; slots and heartbeats cost next to nothing.
        var costs = Self.free
        costs.coordinatorPerMessage = 0.005
        costs.coordinatorIOPerMessage = 0.005
        var workload = ScalingModel.Workload(thetaFloats: 100, metaBatch: 64, slotSeconds: 0.001)
        workload.slotSpread = 0
        var apart = ScalingModel.Cluster(workers: 64)
        apart.heartbeatIntervalMs = 100_000
        var shared = apart
        shared.sharedCores = 1
        // A core each: the two stages overlap, so an iteration is one stage's 0.64 s (and the pipeline's fill).
        let overlapping = try ScalingModel.predict(workload, on: apart, costs: costs)
        #expect(overlapping.iterationSeconds >= 0.64 && overlapping.iterationSeconds < 0.64 * 1.1, "\(overlapping.iterationSeconds) s")
        #expect(abs(overlapping.coordinatorIOBusy - overlapping.coordinatorBusy) < 0.05)
        // One core for both: they take turns, 1.28 s.
        let turns = try ScalingModel.predict(workload, on: shared, costs: costs)
        #expect(turns.iterationSeconds >= 1.28 * 0.98 && turns.iterationSeconds < 1.28 * 1.1, "\(turns.iterationSeconds) s")
        // The I/O thread costing most is named the bottleneck; without I/O costs the loop pays what it paid before.
        costs.coordinatorPerMessage = 0.001
        #expect(try ScalingModel.predict(workload, on: apart, costs: costs).bottleneck == "coordinator I/O thread")
        costs.coordinatorIOPerMessage = nil
        let loopOnly = try ScalingModel.predict(workload, on: apart, costs: costs)
        #expect(loopOnly.coordinatorIOBusy == 0 && loopOnly.iterationSeconds >= 0.128, "\(loopOnly.iterationSeconds) s")
    }

    /// One slot per worker waits at the barrier for the slowest of 64 lognormal slots; pipelined, the next
    /// iteration's slots fill that wait. Without a spread there is no wait and both are ideal.
    @Test func pipeliningFillsTheBarriersWait() throws {
        var workload = ScalingModel.Workload(thetaFloats: 100, metaBatch: 64, slotSeconds: 1)
        workload.iterations = 6
        workload.slotSpread = 0
        for pipelined in [false, true] {
            workload.pipelined = pipelined
            let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 64), costs: Self.free)
            #expect(abs(p.iterationSeconds - 1) < 0.01 && abs(p.efficiency - 1) < 0.01, "pipelined \(pipelined): \(p)")
        }
        workload.slotSpread = 0.2
        workload.pipelined = false
        let barrier = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 64), costs: Self.free)
        workload.pipelined = true
        let pipelined = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 64), costs: Self.free)
        // The slowest of 64 slots with log-sd 0.2 takes about e^(2.4 · 0.2) ≈ 1.6 × the median: ≈ 65% efficient.
        #expect(barrier.efficiency < 0.75, "\(barrier)")
        #expect(pipelined.efficiency > 0.9 && pipelined.efficiency <= 1.01, "\(pipelined)")
    }

    @Test func aCoordinatorThatCostsTimePerResultIsTheBottleneckAndPredictionsRepeat() throws {
        var costs = Self.free
        costs.coordinatorPerMessage = 0.01
        var workload = ScalingModel.Workload(thetaFloats: 100, metaBatch: 64, slotSeconds: 0.05)
        workload.stragglerProbability = 0.05
        let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 64), costs: costs, seed: 3)
        // 64 results in and 64 assignments out at 10 ms each, one at a time.
        #expect(p.iterationSeconds >= 128 * 0.01, "\(p.iterationSeconds) s")
        #expect(p.bottleneck == "coordinator CPU")
        #expect(try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: 64), costs: costs, seed: 3) == p)
    }
}
