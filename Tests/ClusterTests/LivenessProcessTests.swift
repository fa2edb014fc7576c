import Cluster
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Transport
import Wire

/// A peer written against the wire contract alone, run on a thread of the test process: it registers (with this
/// machine's real numerics, so `strict` admits it), heartbeats every 100 ms with an env-step count that never
/// moves, and does what `behaviour` says with the assignments it gets. Disconnected, it registers again.
final class HostilePeer: @unchecked Sendable {
    enum Behaviour {
        /// Accept every slot, never answer.
        case neverAnswer
        /// Answer the first slot with a result the coordinator must refuse (another θ version, or another run
        /// id), then fall silent for good: it dies holding nothing the coordinator still counts on.
        case refusedResultThenDie(wrongRun: Bool, parameterCount: Int)
    }

    private let endpoint: String, threads: Int, behaviour: Behaviour
    private let lock = NSLock()
    private var stopped = false
    private(set) var assignmentsTaken = 0
    private(set) var registrations = 0
    private(set) var refusedResultSent = false
    private var thread: Thread?

    init(endpoint: String, threads: Int, behaviour: Behaviour) {
        self.endpoint = endpoint; self.threads = threads; self.behaviour = behaviour
    }

    func start() {
        let t = Thread { [self] in run() }
        thread = t
        t.start()
    }

    func stop() { lock.lock(); stopped = true; lock.unlock() }
    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func run() {
        do {
            let context = try ZMQContext()
            var socket = try context.socket(.dealer)
            try socket.connect(endpoint)
            func hello() throws {
                try socket.send([WireCodec.encode(.hello(Hello(host: "hostile", cores: 1, threads: threads, numerics: .fixture)))], dontWait: false)
                lock.lock(); registrations += 1; lock.unlock()
            }
            try hello()
            var lastBeat = Date()
            while !isStopped {
                if try ZMQPoller.poll([socket], timeoutMs: 20)[0] {
                    while let frames = try socket.receive() {
                        guard let message = try? WireCodec.decode(frames: frames) else { continue }
                        switch message {
                        case .assignment(let a):
                            lock.lock(); assignmentsTaken += 1; lock.unlock()
                            if case let .refusedResultThenDie(wrongRun, count) = behaviour, !refusedResultSent {
                                let result = SlotResult(runID: wrongRun ? "another-run" : a.runID, key: a.key,
                                                        parameterVersion: wrongRun ? a.parameterVersion : a.parameterVersion + 7,
                                                        update: ParameterVector(zeros: count), statistics: SlotStatistics())
                                try socket.send([WireCodec.encode(.result(result))], dontWait: false)
                                lock.lock(); refusedResultSent = true; lock.unlock()
                                socket.close()   // dies: silent from here on
                                while !isStopped { usleep(20_000) }
                                return
                            }
                        case .error(let e) where e.code == .rejected || e.code == .unknownWorker:
                            // Disconnected: come back on a new connection, as a real (if broken) worker would.
                            socket.close()
                            socket = try context.socket(.dealer)
                            try socket.connect(endpoint)
                            try hello()
                        default:
                            break
                        }
                    }
                }
                if Date().timeIntervalSince(lastBeat) >= 0.1 {
                    try socket.send([WireCodec.encode(.heartbeat(envSteps: 0))], dontWait: false)
                    lastBeat = Date()
                }
            }
            socket.close()
        } catch {
            Issue.record("hostile peer: \(error)")
        }
    }
}

/// No slot is ever stranded (issue: workers that heartbeat but never deliver, refused results): real coordinator
/// and worker processes, with a hostile peer on the wire or a worker whose compute threads hang.
@Suite(.serialized) struct LivenessProcessTests {
    /// θ's parameter count for the harness configuration (4 → 16 → 16 → 2).
    static let parameterCount = 4 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2

    /// One honest worker alone: the time the disturbed runs are compared with.
    static func undisturbedSeconds() throws -> Double {
        let folder = Harness.folder("liveness-undisturbed")
        let config = Harness.writeConfig(folder)
        let start = Date()
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 0)
        #expect(coordinator.wait(seconds: 180) == 0, "\(coordinator.output.suffix(2000))")
        worker.wait(seconds: 10)
        return Date().timeIntervalSince(start)
    }

    /// (1) A peer that registers with 2 threads, heartbeats and never answers, next to one honest worker of one
    /// thread: at iteration 0, and joining mid-run. The run finishes with the undisturbed θ.
    @Test(arguments: [false, true])
    func aPeerThatNeverAnswersDoesNotStallTheRun(joinMidRun: Bool) throws {
        let undisturbed = try Self.undisturbedSeconds()
        let folder = Harness.folder("liveness-hole-\(joinMidRun)")
        let config = Harness.writeConfig(folder)
        let start = Date()
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let hole = HostilePeer(endpoint: endpoint, threads: 2, behaviour: .neverAnswer)
        if !joinMidRun { hole.start(); #expect(Harness.waitFor(seconds: 20) { hole.registrations >= 1 }) }
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 0)
        if joinMidRun {
            #expect(Harness.waitFor(seconds: 120) { Harness.metrics(folder).count >= 3 })
            hole.start()
        }
        #expect(coordinator.wait(seconds: 300) == 0, "\(coordinator.output.suffix(3000))")
        let seconds = Date().timeIntervalSince(start)
        hole.stop()
        worker.wait(seconds: 10)
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        #expect(hole.assignmentsTaken >= 1, "the hostile peer got work, so the test tested something")
        // Its slots came back past their deadline, or (once 3 slots have completed) their backup copies won first.
        #expect(coordinator.output.contains("past the deadline") || coordinator.output.contains("backup copy"))
        // Each slot it takes costs at most one deadline (≥ 1 s); stated bound: 6× the undisturbed time + 30 s.
        print("liveness: undisturbed \(String(format: "%.1f", undisturbed)) s, with a never-answering peer (join mid-run: \(joinMidRun)) \(String(format: "%.1f", seconds)) s, \(hole.assignmentsTaken) slot(s) taken by it, \(hole.registrations) registration(s)")
        #expect(seconds <= 6 * undisturbed + 30, "\(seconds) s vs undisturbed \(undisturbed) s")
    }

    /// (2) A real worker whose compute threads hang after one slot while its heartbeats go on.
    @Test func aWorkerWhoseComputeHangsDoesNotStallTheRun() throws {
        let folder = Harness.folder("liveness-hang")
        let config = Harness.writeConfig(folder)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let honest = try Harness.worker(folder, endpoint: endpoint, index: 0)
        let hung = try Harness.worker(folder, endpoint: endpoint, index: 1, threads: 2, extra: ["--test-hang-after", "1"])
        #expect(coordinator.wait(seconds: 300) == 0, "\(coordinator.output.suffix(3000))")
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        #expect(hung.output.contains("hangs for good"), "\(hung.output.suffix(1000))")
        // Its slots came back past their deadline, or (once 3 slots have completed) their backup copies won first.
        #expect(coordinator.output.contains("past the deadline") || coordinator.output.contains("backup copy"))
        honest.wait(seconds: 10)
        hung.signal(SIGKILL)
        hung.wait(seconds: 10)
    }

    /// (3) A result the coordinator refuses (another θ version, another run id) for a slot its sender holds,
    /// then the sender dies: the slot runs elsewhere and the run finishes with the undisturbed θ.
    @Test(arguments: [false, true])
    func aRefusedResultThenDeathStrandsNoSlot(wrongRun: Bool) throws {
        let folder = Harness.folder("liveness-refused-\(wrongRun)")
        let config = Harness.writeConfig(folder)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let rogue = HostilePeer(endpoint: endpoint, threads: 4,
                                behaviour: .refusedResultThenDie(wrongRun: wrongRun, parameterCount: Self.parameterCount))
        rogue.start()
        #expect(Harness.waitFor(seconds: 30) { rogue.refusedResultSent })
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 0)
        #expect(coordinator.wait(seconds: 300) == 0, "\(coordinator.output.suffix(3000))")
        rogue.stop()
        worker.wait(seconds: 10)
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        #expect(coordinator.output.contains("declared dead"), "the rogue died holding slots")
    }
}

/// A meta-run whose θ diverges stops with a clear error after a checkpoint of the last good θ, instead of
/// retrying (and striking honest workers for) a slot that fails the same way everywhere.
@Suite(.serialized) struct DivergenceProcessTests {
    /// Runs `metatrain local` with 2 workers on the test config with its `meta:` section given as `meta`, and expects it
    /// to stop with a failure status, every worker told why (a goodbye that says the run stopped). Returns the output
    /// and the iteration of the last checkpoint.
    func runThatStops(_ name: String, algorithm: String, outerStep: String, innerLoop: String = "") throws
        -> (output: String, iteration: Int?) {
        let folder = Harness.folder(name)
        let meta = "meta:\n  algorithm: \(algorithm)\n  outer_step: \(outerStep)\n  schedule: constant\n  optimizer: sgd\n"
        let text = Harness.configText.replacingOccurrences(of: "meta:\n  algorithm: reptile\n", with: meta)
            .replacingOccurrences(of: "  learning_starts: 100\n", with: "  learning_starts: 100\n" + innerLoop)
        #expect(text.contains(meta) && (innerLoop.isEmpty || text.contains(innerLoop)), "the test config changed shape")
        let config = Harness.writeConfig(folder, text)
        let run = try Harness.Child(["local", "--config", config, "--workers", "2", "--run-dir", folder + "/run", "--no-eval"],
                                    log: folder + "/local.log")
        let status = run.wait(seconds: 180)
        #expect(status != nil && status != 0, "the run stopped, with a failure status: \(run.output.suffix(2000))")
        for index in 0..<2 {
            let log = (try? String(contentsOfFile: folder + "/run/worker-\(index).log", encoding: .utf8)) ?? ""
            #expect(log.contains("coordinator said goodbye: run stopped"), "worker \(index) is told why: \(log.suffix(600))")
        }
        return (run.output, try Harness.inspect(folder + "/run")["iteration"] as? Int)
    }

    @Test func aDivergedRunStopsWithTheReasonAndTheLastGoodCheckpoint() throws {
        // FOMAML with a plain-SGD outer step of 1,000: θ blows up within two iterations.
        let (output, iteration) = try runThatStops("diverged", algorithm: "fomaml", outerStep: "1000.0")
        #expect(output.contains("diverged (confirmed by recomputing it on the coordinator)"))
        #expect(output.contains("lower meta.outer_step (now 1000.0)"), "the setting to change is named")
        #expect(!output.contains("bad message"), "honest workers reporting a divergence are not struck")
        #expect((iteration ?? -1) >= 1 && (iteration ?? 99) < 10, "the last good θ is checkpointed (iteration \(String(describing: iteration)))")
    }

    /// A meta-step that makes θ non-finite (each slot's update finite, their scaled mean not) stops the run the same
    /// way: every worker is told why and leaves, and the checkpoint holds the last finite θ (issue 39, defect 4: the
    /// coordinator threw without a goodbye, and welcomed workers retried it for ever).
    @Test func aNonFiniteThetaStopsTheRunAndTellsTheWorkers() throws {
        // Adam at rate 1 moves φ by hundreds (finite, within the update bound); 3e38 × that is past Float's range.
        let (output, iteration) = try runThatStops("nonfinite", algorithm: "reptile", outerStep: "3.0e38",
                                                   innerLoop: "  learning_rate: 1.0\n")
        #expect(output.contains("θ became non-finite at meta-update 1"))
        #expect(output.contains("lower meta.outer_step"), "the setting to change is named")
        #expect(iteration == 0, "θ before the failing update is the one checkpointed")
    }
}
