import DQN
import Environments
import Cluster
import ClusterCore
import Foundation
import MetaLearning
import NeuralNet
import Synchronization
import Transport
import Wire

extension ScalingModel.Costs {
    /// Measures the model's costs on this machine, each with the code the coordinator and workers run: decoding
    /// and checking results of a small and a large θ (a per-message and a per-byte part), encoding θ's shared
    /// field, the meta-update, a scheduler step, a send on a socket, and the loopback's throughput and latency.
    ///
    /// Why microbenchmarks and not a fit to runs: the runs the model is checked against (`scripts/scaling.sh`)
    /// then test it, rather than being what it was fitted to.
    public static func measure(largeFloats: Int = 1_008_002, smallFloats: Int = 4_610) throws -> Self {
        func seconds(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
            try body()  // warm
            let clock = ContinuousClock()
            let start = clock.now
            for _ in 0..<repeats { try body() }
            return (clock.now - start) / .seconds(1) / Double(repeats)
        }
        /// The median of `repeats` single timings: for the loopback, where one pause of this process (a VM's steal, a
        /// page of the scheduler's) moved the mean of 200 round trips from 13 to 143 µs between two runs 17 minutes apart.
        func medianSeconds(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
            try body()  // warm
            let clock = ContinuousClock()
            var times: [Double] = []
            for _ in 0..<repeats {
                let start = clock.now
                try body()
                times.append((clock.now - start) / .seconds(1))
            }
            return median(times)
        }
        func result(_ floats: Int) -> [UInt8] {
            WireCodec.encode(.result(SlotResult(runID: "calibrate", key: SlotKey(iteration: 1, slot: 2, attempt: 0), parameterVersion: 1,
                                                update: ParameterVector([Float](repeating: 1e-3, count: floats)),
                                                statistics: SlotStatistics())))
        }
        let large = result(largeFloats), small = result(smallFloats)
        func decodeAndCheck(_ bytes: [UInt8]) throws {
            // As the coordinator receives it: decoded where libzmq's frame holds it (`ZMQSocket.receiveFrames`), then checked.
            guard case .result(let r) = try bytes.withUnsafeBytes({ try WireCodec.decode($0) }),
                  r.update.divergence == nil else { throw WireError.undecodable(bytes: 0) }
        }
        let tLarge = try seconds(10) { try decodeAndCheck(large) }
        let tSmall = try seconds(2_000) { try decodeAndCheck(small) }
        let perResultByte = max(tLarge - tSmall, 0) / Double(large.count - small.count)
        let decodeFixed = max(tSmall - perResultByte * Double(small.count), 0)

        // The worker's side of an assignment: its head and θ's shared field, decoded in place (`WireCodec.decode(head:field:)`).
        func assignmentFrames(_ floats: Int) -> [[UInt8]] {
            let field = SharedTensorField(ParameterVector([Float](repeating: 0.5, count: floats)), for: .assignment)
            let message = Message.assignment(Assignment(runID: "calibrate", key: SlotKey(iteration: 1, slot: 3, attempt: 0),
                                                        task: .cartPole(CartPoleParameters()), innerLoop: InnerLoopSettings(),
                                                        algorithm: .reptile, seed: 9, parameterVersion: 1, parameters: nil))
            return [WireCodec.encodeHead(message, shared: field), field.bytes]
        }
        let largeAssignment = assignmentFrames(largeFloats), smallAssignment = assignmentFrames(smallFloats)
        func decodeAssignment(_ frames: [[UInt8]]) throws {
            // As the worker receives it: read where libzmq's two frames hold it, θ copied once as it is checked.
            let decoded = frames[0].withUnsafeBytes { head in
                frames[1].withUnsafeBytes { field in Result { () throws(WireError) in try WireCodec.decode(head: head, field: field) } }
            }
            guard case .assignment = try decoded.get() else { throw WireError.undecodable(bytes: 0) }
        }
        let receivedLarge = try seconds(10) { try decodeAssignment(largeAssignment) }
        let receivedSmall = try seconds(2_000) { try decodeAssignment(smallAssignment) }
        let perReceivedByte = max(receivedLarge - receivedSmall, 0)
            / Double(largeAssignment.map(\.count).reduce(0, +) - smallAssignment.map(\.count).reduce(0, +))

        let theta = ParameterVector([Float](repeating: 0.5, count: largeFloats))
        let perEncodedByte = seconds(10) { _ = SharedTensorField(theta, for: .assignment) } / Double(largeFloats * 4)
        let updates = [ParameterVector](repeating: ParameterVector([Float](repeating: 1e-3, count: largeFloats)), count: 8)
        var state = MetaState(theta: theta, settings: MetaSettings())
        let applyPerFloat = seconds(5) { state.apply(updates: updates, settings: MetaSettings()) } / Double(8 * largeFloats)

        // A scheduler step with 64 workers registered, and an assignment's head (no θ).
        var scheduler = try Scheduler<Void>(settings: SchedulerSettings(runID: "calibrate", iterations: 1_000_000, metaBatch: 64,
                                                                        heartbeatIntervalMs: 1000, liveness: 1000, checkpointInterval: 1_000_000),
                                            numerics: RunNumerics(policy: .any))
        let report = NumericsReport(kernel: "c", fingerprint: "c", portableKernel: "c", portableFingerprint: "c", cpu: "c")
        for w in 0..<64 { _ = scheduler.handle(.hello(Peer([UInt8(w)]), Hello(host: "h", cores: 1, threads: 1, numerics: report)), now: 0) }
        var tick: Tick = 0
        let assignment = Message.assignment(Assignment(runID: "calibrate", key: SlotKey(iteration: 1, slot: 3, attempt: 0),
                                                       task: .cartPole(CartPoleParameters()), innerLoop: InnerLoopSettings(),
                                                       algorithm: .reptile, seed: 9, parameterVersion: 1, parameters: nil))
        let head = seconds(20_000) { _ = WireCodec.encodeHead(assignment, carrier: .assignment, fieldBytes: 4_000_000) }

        // The loopback: a PUSH to a PULL over TCP in this process (the sends' cost, the throughput, the round trip).
        let context = try ZMQContext()
        let pull = try context.socket(.pull), push = try context.socket(.push)
        try pull.setHighWaterMarks(send: 0, receive: 0)
        try push.setHighWaterMarks(send: 0, receive: 0)
        try pull.bind("tcp://127.0.0.1:*")
        try push.connect(try pull.lastEndpoint())
        func transfer(_ frame: [UInt8], _ count: Int) throws {
            for _ in 0..<count { try push.send([frame], dontWait: false) }
            var got = 0
            while got < count {
                _ = try ZMQPoller.poll([pull], timeoutMs: 1000)
                while try pull.receive() != nil { got += 1 }
            }
        }
        let ping = [UInt8](repeating: 1, count: 60)

        // A message through the coordinator's whole path, as its loop runs it: poll, receive on a ROUTER, decode, a
        // scheduler step, encode a reply and send it. Each turn is one message in and one out.
        let router = try context.socket(.router), dealer = try context.socket(.dealer)
        try router.setHighWaterMarks(send: 0, receive: 0)
        try dealer.setHighWaterMarks(send: 0, receive: 0)
        try router.bind("tcp://127.0.0.1:*")
        try dealer.connect(try router.lastEndpoint())
        let beat = WireCodec.encode(.heartbeat(envSteps: 1))
        let turns = 5_000
        for _ in 0..<turns { try dealer.send([beat], dontWait: false) }
        usleep(200_000)  // all queued on the ROUTER's side
        let clock = ContinuousClock()
        let start = clock.now
        var handled = 0
        while handled < turns {
            _ = try ZMQPoller.poll([router], timeoutMs: 1000)
            while let frames = try router.receive() {
                guard frames.count == 2, case .heartbeat = try WireCodec.decode(frames[1]) else { continue }
                tick += 1
                _ = scheduler.handle(.heartbeat(Peer([7])), now: tick)
                try router.send([frames[0], WireCodec.encode(.heartbeat(envSteps: 0))], dontWait: false)
                handled += 1
            }
        }
        let perMessage = (clock.now - start) / .seconds(1) / Double(2 * turns)
        var replies = 0
        while replies < turns {
            _ = try ZMQPoller.poll([dealer], timeoutMs: 1000)
            while try dealer.receive() != nil { replies += 1 }
        }
        let roundTrip = try medianSeconds(201) { try transfer(ping, 1) }
        let big = [UInt8](repeating: 2, count: largeFloats * 4)
        let bigTransfer = try medianSeconds(11) { try transfer(big, 1) }

        var costs = Self(coordinatorPerMessage: perMessage + head + decodeFixed, coordinatorPerResultByte: perResultByte,
                    coordinatorPerEncodedByte: perEncodedByte, coordinatorApplyPerFloat: applyPerFloat,
                    workerPerMessage: perMessage + decodeFixed, workerPerByte: perResultByte,
                    linkBytesPerSecond: Double(big.count) / max(bigTransfer - roundTrip, 1e-9), latency: roundTrip)
        costs.workerPerReceivedByte = perReceivedByte
        costs.parallelCompute = try measureParallelCompute()
        return costs
    }

    /// Slots on one thread, then on every core at once: how many cores' worth of slots this machine computes in parallel.
    static func measureParallelCompute() throws -> Double {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var dqn = DQNConfig.cartPoleSolver
        dqn.hiddenLayers = [64, 64]
        dqn.learningStarts = 100
        let settings = InnerLoopSettings(dqn: dqn, budget: 1_500, querySteps: 0)
        let theta = try ClusterConfig.parse("task_family: {env: cartpole}\ninner_loop: {hidden_layers: [64, 64]}\n").initialParameters()
        @Sendable func slot(_ seed: UInt64) throws {
            _ = try runSlot(theta: theta, task: .cartPole(CartPoleParameters()), algorithm: .reptile, settings: settings, seed: seed)
        }
        try slot(0)
        let clock = ContinuousClock()
        var start = clock.now
        for seed: UInt64 in 1...3 { try slot(seed) }
        let alone = (clock.now - start) / .seconds(1) / 3
        start = clock.now
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: cores) { i in
            do {
                for seed: UInt64 in 1...3 { try slot(UInt64(10 * i) + seed) }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        if let failure = failures.withLock({ $0.first }) { throw ClusterError.slotFailed("calibration slot: \(failure)") }
        let together = (clock.now - start) / .seconds(1) / 3
        return Double(cores) * alone / together
    }
}
