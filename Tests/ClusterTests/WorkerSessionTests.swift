import Cluster
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Wire

/// The worker's protocol logic in simulated time: registration, heartbeats, reconnect backoff, giving up, the θ
/// cache by version and run switching, each through the real wire codec. No socket, no sleep.
@Suite struct WorkerSessionTests {
    static func session(giveUpAfterMs: Int? = nil) -> WorkerSession {
        var s = WorkerSession.Settings(hello: Hello(host: "h", cores: 2, threads: 1), kernel: .selected)
        s.heartbeatIntervalMs = 100
        s.liveness = 3
        s.initialBackoffMs = 1000
        s.maxBackoffMs = 4000
        s.giveUpAfterMs = giveUpAfterMs
        return WorkerSession(settings: s)
    }

    static func frames(_ message: Message) -> [[UInt8]] { [WireCodec.encode(message)] }

    static func welcome(run: String = "r1", id: String = "c0-w1", numerics: NumericsPolicy = .strict) -> [[UInt8]] {
        frames(.welcome(Welcome(runID: run, workerID: id, heartbeatIntervalMs: 100, liveness: 3, numerics: numerics)))
    }

    static func assignment(run: String = "r1", _ key: SlotKey, version: Int, theta: [Float]?) -> Assignment {
        Assignment(runID: run, key: key, task: .cartPole(CartPoleParameters()), innerLoop: InnerLoopSettings(budget: 10, querySteps: 1),
                   algorithm: .reptile, seed: 1, parameterVersion: version, parameters: theta.map(ParameterVector.init))
    }

    static func sent(_ actions: [WorkerSession.Action]) -> [Message] {
        actions.compactMap { if case .send(let m) = $0 { return m } else { return nil } }
    }

    @Test func registersHeartbeatsAndReconnectsWithDoublingBackoff() {
        var s = Self.session()
        let hello = Hello(host: "h", cores: 2, threads: 1)
        #expect(s.handle(.start, now: 0) == [.connect, .send(.hello(hello))])
        _ = s.handle(.received(Self.welcome()), now: 10)
        #expect(s.workerID == "c0-w1" && s.everWelcomed)
        #expect(s.handle(.tick(envSteps: 7), now: 50) == [])
        #expect(s.handle(.tick(envSteps: 7), now: 100) == [.send(.heartbeat(envSteps: 7))])
        // Silent for more than liveness × heartbeat (300 ms) after the welcome at 10: back off 1 s.
        _ = s.handle(.tick(envSteps: 7), now: 200)
        let silent = s.handle(.tick(envSteps: 7), now: 311)
        #expect(silent.contains(.disconnect) && s.connection == .backingOff(until: 1311))
        #expect(s.handle(.tick(envSteps: 7), now: 1310) == [])
        // Registers again under its old id, so the coordinator drops the old entry at once.
        var again = hello
        again.previousWorkerID = "c0-w1"
        #expect(s.handle(.tick(envSteps: 7), now: 1311) == [.connect, .send(.hello(again))])
        // Still silent: the backoff doubles (2 s, then 4 s, then stays at the 4 s maximum).
        _ = s.handle(.tick(envSteps: 7), now: 1612)
        #expect(s.connection == .backingOff(until: 3612))
        _ = s.handle(.tick(envSteps: 7), now: 3612)
        _ = s.handle(.tick(envSteps: 7), now: 3913)
        #expect(s.connection == .backingOff(until: 7913))
        _ = s.handle(.tick(envSteps: 7), now: 7913)
        _ = s.handle(.tick(envSteps: 7), now: 8214)
        #expect(s.connection == .backingOff(until: 12214))
        // A welcome resets it.
        _ = s.handle(.tick(envSteps: 7), now: 12214)
        _ = s.handle(.received(Self.welcome()), now: 12220)
        _ = s.handle(.tick(envSteps: 7), now: 12521)
        #expect(s.connection == .backingOff(until: 13521))
    }

    @Test func givesUpOnlyWhenNeverWelcomed() {
        var s = Self.session(giveUpAfterMs: 2000)
        _ = s.handle(.start, now: 0)
        _ = s.handle(.tick(envSteps: 0), now: 301)               // silent: back off 1 s
        _ = s.handle(.tick(envSteps: 0), now: 1301)              // connect again
        _ = s.handle(.tick(envSteps: 0), now: 1602)              // silent: back off 2 s
        #expect(s.handle(.tick(envSteps: 0), now: 3602) == [.giveUp(afterMs: 3602)])
        #expect(s.connection == .ended)

        var welcomed = Self.session(giveUpAfterMs: 2000)
        _ = welcomed.handle(.start, now: 0)
        _ = welcomed.handle(.received(Self.welcome()), now: 5)
        for t in stride(from: Tick(100), through: 60_000, by: 100) {
            #expect(!welcomed.handle(.tick(envSteps: 0), now: t).contains { if case .giveUp = $0 { return true } else { return false } })
        }
    }

    @Test func cachesThetaByVersionAndDropsItWithTheRun() throws {
        var s = Self.session()
        _ = s.handle(.start, now: 0)
        _ = s.handle(.received(Self.welcome()), now: 1)
        // The first slot of a run: (0, 0, 0) is a key like any other.
        let first = Self.assignment(SlotKey(iteration: 0, slot: 0, attempt: 0), version: 0, theta: [1, 2])
        #expect(s.handle(.received(Self.frames(.assignment(first))), now: 2)
                == [.compute(.slot(first, theta: ParameterVector([1, 2]), kernel: .selected))])
        // Same version without θ: the cached θ.
        let second = Self.assignment(SlotKey(iteration: 0, slot: 1, attempt: 0), version: 0, theta: nil)
        #expect(s.handle(.received(Self.frames(.assignment(second))), now: 3)
                == [.compute(.slot(second, theta: ParameterVector([1, 2]), kernel: .selected))])
        // A version not held: asks for θ, naming the slot.
        let third = Self.assignment(SlotKey(iteration: 1, slot: 0, attempt: 0), version: 1, theta: nil)
        let reply = Self.sent(s.handle(.received(Self.frames(.assignment(third))), now: 4))
        #expect(reply.count == 1)
        if case .error(let e) = reply.first {
            #expect(e.code == .parametersMissing && e.key == third.key)
            // Through the codec the key survives, (0,0,0) included.
            let decoded = try WireCodec.decode(WireCodec.encode(.error(ErrorReply(code: .taskFailed, message: "x", key: first.key))))
            #expect(decoded == .error(ErrorReply(code: .taskFailed, message: "x", key: first.key)))
        } else { Issue.record("expected parametersMissing, got \(reply)") }
        // Another run's assignment is refused; joining another run drops the cached θ.
        let foreign = Self.assignment(run: "r2", SlotKey(iteration: 0, slot: 2, attempt: 0), version: 0, theta: nil)
        #expect(Self.sent(s.handle(.received(Self.frames(.assignment(foreign))), now: 5)).map(\.kind) == ["error"])
        _ = s.handle(.received(Self.welcome(run: "r2", id: "c0-w9", numerics: .portable)), now: 6)
        #expect(s.cached.isEmpty && s.kernel == .portable)
        let afterSwitch = Self.sent(s.handle(.received(Self.frames(.assignment(foreign))), now: 7))
        if case .error(let e) = afterSwitch.first { #expect(e.code == .parametersMissing) } else { Issue.record("\(afterSwitch)") }
        // Under numerics: portable, jobs carry the portable kernel.
        let portable = Self.assignment(run: "r2", SlotKey(iteration: 0, slot: 3, attempt: 0), version: 0, theta: [3])
        #expect(s.handle(.received(Self.frames(.assignment(portable))), now: 8)
                == [.compute(.slot(portable, theta: ParameterVector([3]), kernel: .portable))])
    }

    /// The two highest versions are kept (a pipelined run hands out two at once); an older one sent again is computed
    /// on but not kept; every welcome, into the same run too, starts the cache empty, as the coordinator's record does.
    @Test func keepsTheTwoNewestVersionsUntilTheNextWelcome() throws {
        var s = Self.session()
        _ = s.handle(.start, now: 0)
        _ = s.handle(.received(Self.welcome()), now: 1)
        for (version, value) in [(1, Float(1)), (0, 0), (2, 2)] {
            let a = Self.assignment(SlotKey(iteration: version + 1, slot: 0, attempt: 0), version: version, theta: [value])
            #expect(s.handle(.received(Self.frames(.assignment(a))), now: 2)
                    == [.compute(.slot(a, theta: ParameterVector([value]), kernel: .selected))])
        }
        #expect(s.cached.map(\.version) == [1, 2])
        let old = Self.assignment(SlotKey(iteration: 1, slot: 1, attempt: 0), version: 0, theta: [0])
        #expect(s.handle(.received(Self.frames(.assignment(old))), now: 3)
                == [.compute(.slot(old, theta: ParameterVector([0]), kernel: .selected))])
        #expect(s.cached.map(\.version) == [1, 2])
        let held = Self.assignment(SlotKey(iteration: 2, slot: 1, attempt: 0), version: 1, theta: nil)
        #expect(s.handle(.received(Self.frames(.assignment(held))), now: 4)
                == [.compute(.slot(held, theta: ParameterVector([1]), kernel: .selected))])
        _ = s.handle(.received(Self.welcome(id: "c0-w2")), now: 5)
        #expect(s.cached.isEmpty)
        let reply = Self.sent(s.handle(.received(Self.frames(.assignment(held))), now: 6))
        if case .error(let e) = reply.first { #expect(e.code == .parametersMissing) } else { Issue.record("\(reply)") }
    }

    @Test func repliesGoOnlyOnALiveConnection() {
        var s = Self.session()
        _ = s.handle(.start, now: 0)
        #expect(s.handle(.computed(EncodedMessage([1, 2, 3])), now: 10) == [.transmit(EncodedMessage([1, 2, 3]))])
        _ = s.handle(.tick(envSteps: 0), now: 400)               // silent: disconnected, backing off
        let dropped = s.handle(.computed(EncodedMessage([4])), now: 410)
        #expect(!dropped.contains(.transmit(EncodedMessage([4]))) && s.jobsCompleted == 2)
    }

    @Test func coordinatorErrorsAndGoodbye() {
        var refused = Self.session()
        _ = refused.handle(.start, now: 0)
        let r = refused.handle(.received(Self.frames(.error(ErrorReply(code: .numericsMismatch, message: "fingerprint differs")))), now: 1)
        #expect(r.contains(.refused("fingerprint differs")) && refused.connection == .ended)

        var rejected = Self.session()
        _ = rejected.handle(.start, now: 0)
        let d = rejected.handle(.received(Self.frames(.error(ErrorReply(code: .rejected, message: "too many strikes")))), now: 1)
        #expect(d.contains(.disconnect) && rejected.connection == .backingOff(until: 1001))

        var unknown = Self.session()
        _ = unknown.handle(.start, now: 0)
        // The hello sent at start answers an "unknown worker" right after it; one a heartbeat interval later gets another.
        let early = Self.sent(unknown.handle(.received(Self.frames(.error(ErrorReply(code: .unknownWorker, message: "who?")))), now: 1))
        #expect(early.isEmpty)
        let u = Self.sent(unknown.handle(.received(Self.frames(.error(ErrorReply(code: .unknownWorker, message: "who?")))), now: 1_001))
        #expect(u.map(\.kind) == ["hello"])

        var ended = Self.session()
        _ = ended.handle(.start, now: 0)
        #expect(ended.handle(.received(Self.frames(.goodbye(reason: "run finished"))), now: 1).suffix(2) == [.disconnect, .finish])
        #expect(ended.handle(.tick(envSteps: 0), now: 5000) == [])

        var stopping = Self.session()
        _ = stopping.handle(.start, now: 0)
        #expect(stopping.handle(.stop, now: 1).suffix(3) == [.send(.goodbye(reason: "worker stopping")), .disconnect, .finish])
    }

    @Test func badFramesAreAnsweredNotObeyed() {
        var s = Self.session()
        _ = s.handle(.start, now: 0)
        let garbage = Self.sent(s.handle(.received([[0xFF, 0x00, 0x13]]), now: 1))
        if case .error(let e) = garbage.first { #expect(e.code == .malformed) } else { Issue.record("\(garbage)") }
        let other = WireCodec.encode(.heartbeat(envSteps: 0), version: protocolVersion + 1)
        let version = Self.sent(s.handle(.received([other]), now: 2))
        if case .error(let e) = version.first { #expect(e.code == .protocolVersion) } else { Issue.record("\(version)") }
        // A coordinator never sends a result.
        let result = SlotResult(runID: "r1", key: SlotKey(iteration: 0, slot: 0, attempt: 0), parameterVersion: 0,
                                update: ParameterVector([0]), statistics: SlotStatistics())
        let wrongKind = Self.sent(s.handle(.received(Self.frames(.result(result))), now: 3))
        if case .error(let e) = wrongKind.first { #expect(e.code == .malformed) } else { Issue.record("\(wrongKind)") }
        #expect(!s.handle(.received([[1], [2], [3]]), now: 4).contains { if case .compute = $0 { return true } else { return false } })
    }

    @Test func errorTextIsCutToFitTheWire() throws {
        let long = String(repeating: "é", count: 2000)   // 4,000 UTF-8 bytes
        let cut = ClusterLimits.errorText(long)
        #expect(cut.utf8.count <= ClusterLimits.maxErrorTextBytes && cut.hasSuffix("… (cut)"))
        let reply = ErrorReply(code: .taskFailed, message: cut, key: SlotKey(iteration: 0, slot: 0, attempt: 0))
        #expect(try WireCodec.decode(WireCodec.encode(.error(reply))) == .error(reply))
        #expect(ClusterLimits.errorText("short") == "short")
    }
}
