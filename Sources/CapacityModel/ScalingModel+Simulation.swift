import Cluster
import ClusterCore
import Foundation
import MetaLearning
import NeuralNet
import Wire

extension ScalingModel {
    /// One of the coordinator's threads in the simulation: its work items in order (each a CPU cost, run as a job on
    /// the coordinator's machine), the one it runs, and how long it has been busy.
    struct ThreadQueue<Work> {
        var waiting: [(cost: Double, work: Work)] = []
        private(set) var current: Work?
        private(set) var busy = 0.0
        private var started = 0.0

        /// Queues `work` of CPU time `cost`; returns the cost of the item to start now if the thread was idle.
        mutating func add(_ cost: Double, _ work: Work, now: Double) -> Double? {
            waiting.append((cost, work))
            return next(now: now)
        }

        /// When idle, starts the next item and returns its cost; nil while busy or with nothing waiting.
        mutating func next(now: Double) -> Double? {
            guard current == nil, !waiting.isEmpty else { return nil }
            let (cost, work) = waiting.removeFirst()
            current = work
            started = now
            return cost
        }

        /// The current item's CPU time is over: it is returned and the thread is idle.
        mutating func done(now: Double) -> Work {
            busy += now - started
            defer { current = nil }
            return current!
        }
    }

    /// One direction of the coordinator's link: one message at a time, in the order they are queued.
    struct LinkDirection {
        /// When the message being sent is through, and how long the link has been busy.
        private(set) var free = 0.0
        private(set) var busy = 0.0

        /// Queues `bytes` at `now`; returns when their last byte has left.
        mutating func send(_ bytes: Int, now: Double, bytesPerSecond: Double) -> Double {
            let transfer = Double(bytes) / bytesPerSecond
            free = max(now, free) + transfer
            busy += transfer
            return free
        }
    }

    /// The discrete-event simulation behind `predict`: events in time order, CPU jobs under processor sharing per
    /// machine, the coordinator's loop thread and its I/O thread each a FIFO of work items, its link one FIFO per
    /// direction.
    struct Simulation {
        enum Event {
            case coordinatorReceives(SchedulerEvent<Void>, bytes: Int, result: Bool)
            case workerReceives(Int, Outbound, bytes: Int)
            case workerHeartbeat(Int)
            case workerDies(Int)
            case slotLeaves(Int, SlotKey)
            case cpuCheck(machine: Int, stamp: Int)
            case tick
        }

        /// What happens when a CPU job ends.
        enum Completion {
            /// The coordinator's current work item.
            case coordinator
            /// The coordinator's I/O thread's current message.
            case coordinatorIO
            /// A worker's slot (decoding θ, computing, encoding the update): its result goes out.
            case slot(worker: Int, SlotKey)
        }

        struct Machine {
            let cores: Double
            var jobs: [Int: (remaining: Double, completion: Completion)] = [:]
            var last = 0.0
            var stamp = 0
        }

        /// Work on the coordinator's thread: CPU seconds, then what it does.
        enum CoordinatorWork {
            case handle(SchedulerEvent<Void>)
            /// A command's send (or none), with the work before it (folds, the meta-update); `applied`: the update.
            case sends([(peer: Peer, Outbound, bytes: Int)], applied: Bool)
            /// Writing an applied iteration's record, after its commands' sends (`Coordinator.writeProgress`).
            case bookkeeping
        }

        /// A message on the coordinator's I/O thread: read off a worker's connection (then the loop handles it), or
        /// written to one (then it crosses the link).
        enum IOWork {
            case inbound(SchedulerEvent<Void>, bytes: Int, result: Bool)
            case outbound(worker: Int, Outbound, bytes: Int)
        }

        let workload: Workload
        let cluster: Cluster
        let costs: Costs
        var rng: SeededRNG
        var scheduler: Scheduler<Void>
        var now = 0.0
        var events: [(time: Double, seq: Int, event: Event)] = []
        var seq = 0
        var machines: [Machine]
        /// The coordinator's loop thread and its I/O thread.
        var loop = ThreadQueue<CoordinatorWork>()
        var io = ThreadQueue<IOWork>()
        /// The coordinator's link, each direction.
        var linkOut = LinkDirection(), linkIn = LinkDirection()
        var alive: [Bool]
        var nextJob = 0
        /// θ versions whose frame the coordinator has encoded.
        var encodedVersions: Set<Int> = []
        var applied: [Double] = []
        /// Busy totals when the first and the latest iteration were applied (the window the prediction measures).
        var atFirst: (coordinator: Double, io: Double, out: Double, in: Double) = (0, 0, 0, 0)
        var atLast: (coordinator: Double, io: Double, out: Double, in: Double) = (0, 0, 0, 0)
        var finished = false

        /// The apply the measured window starts at: the first, or a pipelined run's second (iterations 0 and 1 both
        /// start at once, so the first interval would be short).
        var firstMeasured: Int { workload.pipelined ? 1 : 0 }

        static let headBytes = ScalingModel.assignmentHeadBytes, smallBytes = 60, resultOverhead = ScalingModel.resultOverheadBytes

        init(workload: Workload, cluster: Cluster, costs: Costs, seed: UInt64) throws {
            guard workload.thetaFloats > 0, workload.metaBatch > 0, workload.iterations >= 2, workload.slotSeconds >= 0,
                  cluster.workers > 0, cluster.threadsPerWorker > 0, (cluster.sharedCores ?? 1) > 0, costs.workerTurnaround >= 0 else {
                throw ConfigError.invalidValue(path: "scaling model", line: 0, reason: "needs θ, meta-batch, ≥ 2 iterations, workers and cores > 0")
            }
            self.workload = workload
            self.cluster = cluster
            self.costs = costs
            rng = SeededRNG(seed: seed)
            // One iteration more than the simulation runs: the last one measured has a successor, as in a long run (a
            // pipelined run's next iteration fills its tail; the synchronous run is the same either way).
            var settings = SchedulerSettings(runID: "model", iterations: workload.iterations + 1, metaBatch: workload.metaBatch,
                                             heartbeatIntervalMs: cluster.heartbeatIntervalMs, liveness: cluster.liveness,
                                             checkpointInterval: 1_000_000)
            settings.incarnation = "m0"
            settings.pipelined = workload.pipelined
            scheduler = try Scheduler(settings: settings, numerics: RunNumerics(policy: .any))
            if let shared = cluster.sharedCores {
                machines = [Machine(cores: shared)]
            } else {
                // The coordinator's machine: a core for its loop thread and one for its I/O thread.
                machines = [Machine(cores: 2)] + (0..<cluster.workers).map { _ in Machine(cores: Double(cluster.threadsPerWorker)) }
            }
            alive = [Bool](repeating: true, count: cluster.workers)
        }

        func machine(ofWorker w: Int) -> Int { cluster.sharedCores == nil ? 1 + w : 0 }
        static func peer(_ w: Int) -> Peer { Peer(withUnsafeBytes(of: UInt32(w).bigEndian, Array.init)) }
        static func worker(_ p: Peer) -> Int { p.id.reduce(0) { $0 << 8 | Int($1) } }
        var thetaBytes: Int { workload.thetaFloats * 4 }

        mutating func push(_ time: Double, _ event: Event) {
            seq += 1
            events.append((time, seq, event))
            var i = events.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard (events[i].time, events[i].seq) < (events[parent].time, events[parent].seq) else { break }
                events.swapAt(i, parent)
                i = parent
            }
        }

        mutating func pop() -> (time: Double, seq: Int, event: Event)? {
            guard !events.isEmpty else { return nil }
            events.swapAt(0, events.count - 1)
            let top = events.removeLast()
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < events.count, (events[l].time, events[l].seq) < (events[m].time, events[m].seq) { m = l }
                if r < events.count, (events[r].time, events[r].seq) < (events[m].time, events[m].seq) { m = r }
                if m == i { break }
                events.swapAt(i, m)
                i = m
            }
            return top
        }

        // MARK: - CPU under processor sharing

        mutating func advance(_ m: Int) {
            let n = machines[m].jobs.count
            if n > 0 {
                let rate = min(1, machines[m].cores / Double(n))
                let done = (now - machines[m].last) * rate
                for key in machines[m].jobs.keys { machines[m].jobs[key]!.remaining -= done }
            }
            machines[m].last = now
        }

        mutating func reschedule(_ m: Int) {
            machines[m].stamp += 1
            let n = machines[m].jobs.count
            guard n > 0, let least = machines[m].jobs.values.map(\.remaining).min() else { return }
            let rate = min(1, machines[m].cores / Double(n))
            push(now + max(least, 0) / rate, .cpuCheck(machine: m, stamp: machines[m].stamp))
        }

        mutating func addJob(_ m: Int, work: Double, _ completion: Completion) {
            advance(m)
            nextJob += 1
            machines[m].jobs[nextJob] = (work, completion)
            reschedule(m)
        }

        mutating func check(_ m: Int, stamp: Int) {
            guard machines[m].stamp == stamp else { return }
            advance(m)
            let done = machines[m].jobs.filter { $0.value.remaining <= 1e-12 }.sorted { $0.key < $1.key }
            for (key, _) in done { machines[m].jobs[key] = nil }
            reschedule(m)
            for (_, job) in done { complete(job.completion) }
        }

        mutating func complete(_ completion: Completion) {
            switch completion {
            case .coordinator:
                finish(loop.done(now: now))
                startCoordinatorWork()
            case .coordinatorIO:
                finishIO(io.done(now: now))
                startIOWork()
            case let .slot(w, key):
                guard alive[w] else { return }
                if costs.workerTurnaround > 0 {
                    push(now + costs.workerTurnaround, .slotLeaves(w, key))
                    return
                }
                slotLeaves(w, key)
            }
        }

        /// A worker's result goes out on the coordinator's inbound link.
        mutating func slotLeaves(_ w: Int, _ key: SlotKey) {
            guard alive[w] else { return }
            arriveAtCoordinator(.result(Self.peer(w), runID: "model", key: key, parameterVersion: scheduler.settings.baseVersion(of: key.iteration), payload: ()),
                                bytes: thetaBytes + Self.resultOverhead, result: true)
        }

        // MARK: - The coordinator

        /// A message from a worker crosses the coordinator's inbound link.
        mutating func arriveAtCoordinator(_ event: SchedulerEvent<Void>, bytes: Int, result: Bool = false) {
            let sent = linkIn.send(bytes, now: now, bytesPerSecond: costs.linkBytesPerSecond)
            push(sent + costs.latency, .coordinatorReceives(event, bytes: bytes, result: result))
        }

        mutating func enqueueCoordinator(_ cost: Double, _ work: CoordinatorWork) {
            if let first = loop.add(cost, work, now: now) { addJob(0, work: first, .coordinator) }
        }

        mutating func startCoordinatorWork() {
            if let cost = loop.next(now: now) { addJob(0, work: cost, .coordinator) }
        }

        /// A work item's CPU time is over: the scheduler handles the event, and the commands' sends are charged.
        mutating func finish(_ work: CoordinatorWork) {
            switch work {
            case .handle(let event):
                // Each command's work is an item of its own, in the commands' order and ahead of anything that arrived
                // meanwhile (as in the shell): a send leaves for the I/O thread as soon as the loop has paid for it, not
                // when the whole hand-out has; folds and the meta-update are paid with the send that follows them.
                let commands = scheduler.handle(event, now: Tick(now * 1000))
                var items: [(cost: Double, work: CoordinatorWork)] = []
                var cost = 0.0
                var appliedHere = false
                for command in commands {
                    switch command {
                    case let .send(peer, outbound):
                        var bytes = Self.smallBytes
                        if case let .assign(key, includeParameters) = outbound {
                            bytes = Self.headBytes
                            if includeParameters {
                                bytes += thetaBytes
                                if encodedVersions.insert(scheduler.settings.baseVersion(of: key.iteration)).inserted {
                                    cost += Double(thetaBytes) * costs.coordinatorPerEncodedByte
                                }
                            }
                        }
                        items.append((cost + costs.coordinatorPerMessage, .sends([(peer, outbound, bytes)], applied: false)))
                        cost = 0
                    case .fold:
                        // Each update is added to the sum when it and every slot before it are in, not at the barrier.
                        cost += Double(workload.thetaFloats) * costs.coordinatorApplyPerFloat
                    case .applyMetaUpdate:
                        // The mean's scale and the optimizer's step: about one update's worth.
                        items.append((cost + Double(workload.thetaFloats) * costs.coordinatorApplyPerFloat, .sends([], applied: true)))
                        cost = 0
                        appliedHere = true
                    case .abort:
                        finished = true
                    default:
                        break
                    }
                }
                if cost > 0 { items.append((cost, .sends([], applied: false))) }
                // Writing the applied iteration's record comes after the commands' sends (`Coordinator.writeProgress`).
                let writing = costs.coordinatorPerIteration + Double(workload.thetaFloats) * costs.coordinatorPerIterationFloat
                if appliedHere, writing > 0 { items.append((writing, .bookkeeping)) }
                loop.waiting.insert(contentsOf: items, at: 0)
            case let .sends(sends, appliedHere):
                if appliedHere {
                    applied.append(now)
                    atLast = (loop.busy, io.busy, linkOut.busy, linkIn.busy)
                    if applied.count == firstMeasured + 1 { atFirst = atLast }
                }
                for (peer, outbound, bytes) in sends {
                    enqueueIO(ioCost(bytes), .outbound(worker: Self.worker(peer), outbound, bytes: bytes))
                }
            case .bookkeeping:
                break
            }
        }

        // MARK: - The coordinator's I/O thread

        func ioCost(_ bytes: Int) -> Double {
            (costs.coordinatorIOPerMessage ?? 0) + Double(bytes) * (costs.coordinatorIOPerByte ?? 0)
        }

        /// A message joins the I/O thread's queue; with no I/O cost (costs from before it) it passes at once, as then.
        mutating func enqueueIO(_ cost: Double, _ work: IOWork) {
            guard cost > 0 else { return finishIO(work) }
            if let first = io.add(cost, work, now: now) { addJob(0, work: first, .coordinatorIO) }
        }

        mutating func startIOWork() {
            if let cost = io.next(now: now) { addJob(0, work: cost, .coordinatorIO) }
        }

        /// The I/O thread is done with a message: an inbound one goes to the loop, an outbound one onto the link.
        mutating func finishIO(_ work: IOWork) {
            switch work {
            case let .inbound(event, bytes, result):
                let cost = costs.coordinatorPerMessage + (result ? Double(bytes) * costs.coordinatorPerResultByte : 0)
                enqueueCoordinator(cost, .handle(event))
            case let .outbound(w, outbound, bytes):
                let sent = linkOut.send(bytes, now: now, bytesPerSecond: costs.linkBytesPerSecond)
                push(sent + costs.latency, .workerReceives(w, outbound, bytes: bytes))
            }
        }

        // MARK: - Workers

        mutating func workerReceives(_ w: Int, _ outbound: Outbound, bytes: Int) {
            guard alive[w], case let .assign(key, _) = outbound else {
                if case .goodbye = outbound { alive[w] = false }
                return
            }
            var slot = workload.slotSeconds * exp(workload.slotSpread * rng.nextGaussian())
            if workload.stragglerProbability > 0, rng.nextDouble() < workload.stragglerProbability { slot *= workload.stragglerFactor }
            let io = 2 * costs.workerPerMessage + Double(bytes) * (costs.workerPerReceivedByte ?? costs.workerPerByte)
                + Double(thetaBytes + Self.resultOverhead) * costs.workerPerByte
            addJob(machine(ofWorker: w), work: slot + io, .slot(worker: w, key))
        }

        mutating func run() throws -> Prediction {
            for w in 0..<cluster.workers {
                let hello = Hello(host: "w\(w)", cores: cluster.threadsPerWorker, threads: cluster.threadsPerWorker,
                                  numerics: NumericsReport(kernel: "model", fingerprint: "model", portableKernel: "model",
                                                           portableFingerprint: "model", cpu: "model"))
                now = Double(w) * 1e-5
                arriveAtCoordinator(.hello(Self.peer(w), hello), bytes: Self.headBytes)
                push(now + Double(cluster.heartbeatIntervalMs) / 1000, .workerHeartbeat(w))
                if workload.deathsPerWorkerHour > 0 {
                    push(-log(max(rng.nextDouble(), 1e-300)) / workload.deathsPerWorkerHour * 3600, .workerDies(w))
                }
            }
            now = 0
            let tickEvery = Double(max(5, min(50, cluster.heartbeatIntervalMs / 4))) / 1000
            push(tickEvery, .tick)
            var steps = 0
            while !finished, applied.count < workload.iterations, let (time, _, event) = pop() {
                steps += 1
                guard steps < 50_000_000, time < 1e7 else {
                    throw ConfigError.invalidValue(path: "scaling model", line: 0, reason: "the simulation did not finish (\(applied.count) iterations at \(time) s)")
                }
                now = time
                switch event {
                case let .coordinatorReceives(e, bytes, result):
                    enqueueIO(ioCost(bytes), .inbound(e, bytes: bytes, result: result))
                case let .workerReceives(w, outbound, bytes):
                    workerReceives(w, outbound, bytes: bytes)
                case .workerHeartbeat(let w):
                    guard alive[w] else { break }
                    arriveAtCoordinator(.heartbeat(Self.peer(w), envSteps: nil), bytes: Self.smallBytes)
                    push(now + Double(cluster.heartbeatIntervalMs) / 1000, .workerHeartbeat(w))
                case .workerDies(let w):
                    alive[w] = false
                case let .slotLeaves(w, key):
                    slotLeaves(w, key)
                case let .cpuCheck(m, stamp):
                    check(m, stamp: stamp)
                case .tick:
                    enqueueCoordinator(0, .handle(.tick))
                    push(now + tickEvery, .tick)
                }
            }
            guard applied.count >= firstMeasured + 2 else {
                throw ConfigError.invalidValue(path: "scaling model", line: 0, reason: "fewer than \(firstMeasured + 2) iterations were applied")
            }
            let window = applied.last! - applied[firstMeasured]
            let iterations = Double(applied.count - 1 - firstMeasured)
            let iterationSeconds = window / iterations
            let meanSlot = workload.slotSeconds * exp(workload.slotSpread * workload.slotSpread / 2)
                * (1 + workload.stragglerProbability * (workload.stragglerFactor - 1))
            let threads = Double(cluster.workers * cluster.threadsPerWorker)
            let capacity = cluster.sharedCores.map { min(threads, $0) } ?? threads
            let efficiency = Double(workload.metaBatch) * meanSlot / (capacity * iterationSeconds)
            let shares = [("coordinator CPU", (atLast.coordinator - atFirst.coordinator) / window),
                          ("coordinator I/O thread", (atLast.io - atFirst.io) / window),
                          ("coordinator link (out)", (atLast.out - atFirst.out) / window),
                          ("coordinator link (in)", (atLast.in - atFirst.in) / window),
                          ("workers", efficiency)]
            let bottleneck = shares.max { $0.1 < $1.1 }!.0
            return Prediction(iterationSeconds: iterationSeconds, efficiency: efficiency, coordinatorBusy: shares[0].1,
                              coordinatorIOBusy: shares[1].1, linkOutBusy: shares[2].1, linkInBusy: shares[3].1,
                              slotsPerSecond: Double(workload.metaBatch) / iterationSeconds, bottleneck: bottleneck,
                              backupsSent: scheduler.counters.backupsSent, workersDeclaredDead: scheduler.counters.workersDeclaredDead)
        }
    }
}
