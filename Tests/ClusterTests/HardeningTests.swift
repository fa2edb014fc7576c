import Cluster
import MetaLearning
import Foundation
import NeuralNet
import Testing
import Transport
import Wire

/// Faults injected into real processes: signals, stragglers, garbage on the wire.
@Suite(.serialized) struct HardeningTests {
    /// A longer, lighter run for the chaos tests (30 iterations, 400-step slots).
    static let chaosConfig = Harness.configText
        .replacingOccurrences(of: "iterations: 10", with: "iterations: 30")
        .replacingOccurrences(of: "budget: 1000", with: "budget: 400")
        .replacingOccurrences(of: "checkpoint_interval: 2", with: "checkpoint_interval: 1")
    static let chaosReference = Harness.reference(chaosConfig)

    /// SIGTERM to the coordinator mid-run (a preemption, an eviction): final checkpoint, exit 75, and the workers —
    /// told the run is resumable — stay and rejoin the restarted coordinator, which finishes with the uninterrupted
    /// run's θ (issue 38, item 4). The time the coordinator took to exit is printed; on an idle machine well under a
    /// second.
    @Test func gracefulShutdownKeepsTheWorkersForARestart() throws {
        let folder = Harness.folder("sigterm")
        let config = Harness.writeConfig(folder)
        // As deploy/kubernetes runs it: stopped before its last iteration, it exits 75 (a Job must run it again).
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config, extra: ["--stopped-exit-code", "75"])
        let workers = try (0..<2).map { try Harness.worker(folder, endpoint: endpoint, index: $0) }
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 3 })
        let sent = Date()
        coordinator.signal(SIGTERM)
        #expect(coordinator.wait(seconds: 60) == 75, "\(coordinator.output.suffix(1500))")
        print("graceful shutdown: the coordinator exited \(String(format: "%.2f", Date().timeIntervalSince(sent))) s after SIGTERM")
        let applied = Harness.metrics(folder).count
        let inspect = try Harness.Child(["checkpoint", "inspect", folder, "--json"], log: folder + "/inspect.log")
        inspect.wait(seconds: 20)
        #expect(inspect.output.contains("\"iteration\":\(applied)"), "final checkpoint at the last applied iteration: \(inspect.output)")
        #expect(coordinator.output.contains("stopped by signal"))
        for (i, w) in workers.enumerated() {
            #expect(Harness.waitFor(seconds: 30) { w.output.contains("the run resumes from its checkpoint; reconnecting") },
                    "worker \(i) was told the run goes on: \(w.output.suffix(800))")
            #expect(w.process.isRunning, "worker \(i) waits for a restarted coordinator: \(w.output.suffix(800))")
        }
        let second = try Harness.coordinator(folder, config: config, extra: ["--resume", folder, "--bind", endpoint])
        #expect(second.wait(seconds: 120) == 0, "\(second.output.suffix(3000))")
        #expect(second.output.contains("joined"), "the waiting workers registered again")
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        // The run is over now: its coordinator's goodbye ends them.
        for w in workers { #expect(w.wait(seconds: 30) == 0, "\(w.output.suffix(800))") }
    }

    /// 4 workers, one SIGKILLed and restarted every other iteration, one SIGSTOPped past the liveness window and
    /// continued every fourth, 30 iterations: no slot lost or applied twice, θ equal to the fault-free computation.
    @Test func chaosKillsAndStopsLoseNothing() throws {
        let folder = Harness.folder("chaos")
        let config = Harness.writeConfig(folder, Self.chaosConfig)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        // Every worker idles 3× its compute time after each slot, so the run outlasts several rounds of faults
        // however fast this machine computes (at full speed it can end before the second kill).
        let pace = ["--slowdown", "4"]
        var victim = try Harness.worker(folder, endpoint: endpoint, index: 0, extra: pace)
        let sleeper = try Harness.worker(folder, endpoint: endpoint, index: 1, extra: pace)
        let steady = try (2..<4).map { try Harness.worker(folder, endpoint: endpoint, index: $0, extra: pace) }
        // One round per new iteration — a kill of a registered victim on even rounds, a SIGSTOP longer than liveness on
        // rounds 1, 5, 9, … — so the faults are spread over the run whatever this machine's speed; paced by wall time
        // alone, a fast enough machine could finish the 30 iterations before the second kill. Only a victim that had
        // registered counts as a kill (one killed before its hello tests nothing).
        func newestIteration() -> Int { Harness.metrics(folder).compactMap { $0["iteration"] as? Int }.max() ?? -1 }
        var kills = 0, stops = 0, round = 0, seen = -1
        while coordinator.process.isRunning && round < 200 {
            let before = seen
            #expect(Harness.waitFor(seconds: 60) { newestIteration() > before || !coordinator.process.isRunning },
                    "no iteration after round \(round): \(coordinator.output.suffix(1000))")
            guard coordinator.process.isRunning else { break }
            seen = newestIteration()
            round += 1
            if round % 2 == 0 {
                let registered = Harness.waitFor(seconds: 30) { victim.output.contains("registered as") || !coordinator.process.isRunning }
                    && victim.output.contains("registered as")
                victim.signal(SIGKILL)
                victim.wait(seconds: 5)
                if registered { kills += 1 }
                victim = try Harness.worker(folder, endpoint: endpoint, index: 10 + round, extra: pace)
            } else if round % 4 == 1 {
                sleeper.signal(SIGSTOP)
                usleep(1_000_000)  // > heartbeat 200 ms × liveness 3
                sleeper.signal(SIGCONT)
                stops += 1
            }
        }
        print("worker chaos: \(kills) SIGKILLs and \(stops) SIGSTOPs over \(round) iterations")
        #expect(coordinator.wait(seconds: 180) == 0, "\(coordinator.output.suffix(2000))")
        #expect(kills >= 2 && stops >= 1, "faults injected: \(kills) kills, \(stops) stops")
        let lines = Harness.metrics(folder)
        #expect(lines.count == 30)
        let last = try #require(lines.last)
        #expect(last["slots_applied"] as? Int == 30 * 4, "exactly once: every slot applied once")
        #expect(lines.map { $0["iteration"] as? Int ?? -1 } == Array(0..<30), "every iteration applied once, in order")
        #expect(try Harness.finalSHA(folder) == Self.chaosReference)
        victim.signal(SIGTERM); sleeper.signal(SIGTERM)
        for w in steady { w.wait(seconds: 10) }
    }

    /// SIGKILL the coordinator at random moments (checkpoints are written every iteration, so some kills
    /// land during a write), again and again; each restart resumes from a checkpoint that verifies.
    ///
    /// Each kill waits for an iteration newer than any before it and then a random 0–0.5 s, so the kills are
    /// spread over the run whatever this machine's speed; the workers are paced (compute + 3× idle) so one
    /// iteration outlasts that window and the run cannot end inside it. A faster CI machine once finished the
    /// 30 iterations after two kills when the kills were paced by wall time alone.
    @Test func coordinatorKilledRepeatedlyResumesEveryTime() throws {
        let folder = Harness.folder("coordchaos")
        let config = Harness.writeConfig(folder, Self.chaosConfig)
        let (firstCoordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        var coordinator = firstCoordinator
        let pace = ["--slowdown", "4"]
        let workers = try (0..<2).map { try Harness.worker(folder, endpoint: endpoint, index: $0, extra: pace) }
        func newestIteration() -> Int { Harness.metrics(folder).compactMap { $0["iteration"] as? Int }.max() ?? -1 }
        var rng = SeededRNG(seed: 77)
        var restarts = 0, killedAfter = -1
        while restarts < 12 {
            let before = killedAfter
            #expect(Harness.waitFor(seconds: 60) { newestIteration() > before || !coordinator.process.isRunning },
                    "no iteration after restart \(restarts): \(coordinator.output.suffix(1000))")
            usleep(UInt32(rng.nextInt(below: 500_000)))
            guard coordinator.process.isRunning else { break }
            killedAfter = newestIteration()
            coordinator.signal(SIGKILL)
            coordinator.wait(seconds: 10)
            restarts += 1
            coordinator = try Harness.coordinator(folder, config: config, extra: ["--resume", folder, "--bind", endpoint])
            #expect(Harness.waitFor(seconds: 20) { coordinator.output.contains("resuming") || !coordinator.process.isRunning },
                    "\(coordinator.output.suffix(1000))")
            #expect(!coordinator.output.contains("skipped checkpoint"), "a kill left a checkpoint that does not verify")
        }
        #expect(coordinator.wait(seconds: 180) == 0, "\(coordinator.output.suffix(2000))")
        print("coordinator chaos: \(restarts) SIGKILLs and resumes, the last after iteration \(killedAfter)")
        #expect(restarts >= 3, "\(restarts) restarts")
        #expect(try Harness.finalSHA(folder) == Self.chaosReference)
        for w in workers { w.wait(seconds: 10) }
    }

    /// One worker 10× slower: backup copies of its slots keep iterations moving.
    @Test func aTenTimesSlowerWorkerDoesNotHoldIterationsHostage() throws {
        func meanIterationSeconds(slowdown: Double) throws -> (Double, Int) {
            let folder = Harness.folder("straggler-\(Int(slowdown))")
            let config = Harness.writeConfig(folder)
            let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
            let workers = try (0..<3).map { i in
                try Harness.worker(folder, endpoint: endpoint, index: i, extra: i == 0 ? ["--slowdown", "\(slowdown)"] : [])
            }
            #expect(coordinator.wait(seconds: 180) == 0, "\(coordinator.output.suffix(1500))")
            #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
            for w in workers { w.signal(SIGTERM); w.wait(seconds: 10) }
            let lines = Harness.metrics(folder).dropFirst()  // the first iteration includes start-up
            let seconds = lines.compactMap { $0["seconds"] as? Double }
            // Each line stamps its update, and `seconds` is the span from the update before (apply to apply).
            let stamps = Harness.metrics(folder).compactMap { $0["elapsed_seconds"] as? Double }
            #expect(stamps.count == lines.count + 1 && seconds.count == lines.count)
            #expect(zip(zip(stamps, stamps.dropFirst()), seconds).allSatisfy { pair, s in abs(pair.1 - pair.0 - s) < 1e-6 },
                    "elapsed \(stamps), seconds \(seconds)")
            return (seconds.reduce(0, +) / Double(max(seconds.count, 1)), Harness.metrics(folder).last?["backups_sent"] as? Int ?? 0)
        }
        // Two alternated pairs, each side averaged: a burst of load from the suites running beside this one falls on
        // one short run and is halved, instead of deciding the ratio (1.30-1.33× in full-suite runs, 1.05× alone).
        var normals: [Double] = [], sloweds: [Double] = [], backupCounts: [Int] = []
        for _ in 0..<2 {
            normals.append(try meanIterationSeconds(slowdown: 1).0)
            let (seconds, sent) = try meanIterationSeconds(slowdown: 10)
            sloweds.append(seconds)
            backupCounts.append(sent)
        }
        let normal = normals.reduce(0, +) / 2, slowed = sloweds.reduce(0, +) / 2, backups = backupCounts.reduce(0, +)
        #expect(backupCounts.allSatisfy { $0 >= 1 }, "backups sent: \(backupCounts)")
        // Goal ≤ 1.5×; the bound here leaves room for a noisy 2-core machine (held hostage, an iteration would wait for
        // the 10× slot: about 5×). The note reports the measurement.
        #expect(slowed <= 2.0 * normal, "mean iteration \(sloweds) s with a 10× slow worker vs \(normals) s")
        print("straggler: mean iteration \(String(format: "%.3f", slowed)) s with one 10× slow worker vs \(String(format: "%.3f", normal)) s undisturbed (\(String(format: "%.2f", slowed / normal))×), \(backups) backups")
    }

    /// Fuzzing the coordinator's port: random bytes, truncated and bit-flipped valid messages, wrong
    /// versions and run ids, hello floods. It stays up, answers, and θ is unaffected.
    /// METATRAIN_FUZZ_MESSAGES sets the count (scripts/fuzz.sh runs a long one).
    @Test func fuzzedCoordinatorStaysUpAndThetaIsUnaffected() throws {
        let count = Int(ProcessInfo.processInfo.environment["METATRAIN_FUZZ_MESSAGES"] ?? "") ?? 3000
        let folder = Harness.folder("fuzz")
        let config = Harness.writeConfig(folder)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 0)
        let context = try ZMQContext()
        var rng = SeededRNG(seed: 2024)
        let samples: [[UInt8]] = [
            WireCodec.encode(.hello(Hello(host: "fuzz", cores: 1, threads: 1))),
            WireCodec.encode(.heartbeat(envSteps: 0)),
            WireCodec.encode(.result(SlotResult(runID: "x", key: SlotKey(iteration: 0, slot: 0, attempt: 0), parameterVersion: 0,
                                                update: ParameterVector([1, 2, 3]), statistics: SlotStatistics()))),
            WireCodec.encode(.goodbye(reason: "bye")),
        ]
        var sockets = try (0..<8).map { _ in try context.socket(.dealer) }
        for s in sockets { try s.connect(endpoint) }
        var replies = 0
        for i in 0..<count {
            let socket = sockets[i % sockets.count]
            var bytes: [UInt8]
            switch rng.nextInt(below: 6) {
            case 0: bytes = (0..<rng.nextInt(below: 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1:
                let s = samples[rng.nextInt(below: samples.count)]
                bytes = Array(s[0..<rng.nextInt(below: s.count)])
            case 2:
                bytes = samples[rng.nextInt(below: samples.count)]
                for _ in 0..<(1 + rng.nextInt(below: 4)) where !bytes.isEmpty { bytes[rng.nextInt(below: bytes.count)] ^= UInt8(1 << rng.nextInt(below: 8)) }
            case 3: bytes = WireCodec.encode(.heartbeat(envSteps: 0), version: UInt32(rng.nextInt(below: 1000)))
            case 4: bytes = [0x08, 0x01, 0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]  // a result claiming 4 GiB
            default: bytes = samples[0]  // hello flood
            }
            try socket.send([bytes])
            while let _ = try socket.receive() { replies += 1 }
            if i % 500 == 499 {
                // Collect the answers, then replace the connections: a misbehaving peer is disconnected, others come.
                for s in sockets {
                    while try ZMQPoller.poll([s], timeoutMs: 100)[0], let _ = try s.receive() { replies += 1 }
                }
                for s in sockets { s.close() }
                sockets = try (0..<8).map { _ in try context.socket(.dealer) }
                for s in sockets { try s.connect(endpoint) }
            }
        }
        for s in sockets { s.close() }
        #expect(coordinator.wait(seconds: 180) == 0, "\(coordinator.output.suffix(1500))")
        #expect(coordinator.output.contains("bad message"))
        #expect(replies > 0, "the coordinator answered the fuzzer")
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        worker.wait(seconds: 10)
    }

    /// A worker receiving garbage from its "coordinator" replies with errors and stays up.
    @Test func workerSurvivesGarbageFromTheCoordinator() throws {
        let folder = Harness.folder("workerfuzz")
        let context = try ZMQContext()
        let router = try context.socket(.router)
        try router.bind("tcp://127.0.0.1:*")
        let worker = try Harness.worker(folder, endpoint: try router.lastEndpoint(), index: 0)
        var peer: [UInt8]?
        #expect(Harness.waitFor(seconds: 20) {
            if (try? ZMQPoller.poll([router], timeoutMs: 50)[0]) == true, let frames = try? router.receive() { peer = frames[0] }
            return peer != nil
        })
        let id = try #require(peer)
        var rng = SeededRNG(seed: 9)
        for _ in 0..<500 {
            try router.send([id, (0..<rng.nextInt(below: 200)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }])
        }
        try router.send([id, WireCodec.encode(.heartbeat(envSteps: 0), version: 7)])
        var errors = 0
        _ = Harness.waitFor(seconds: 10) {
            while (try? ZMQPoller.poll([router], timeoutMs: 20)[0]) == true, let frames = try? router.receive() {
                if let m = try? WireCodec.decode(frames[1]), case .error = m { errors += 1 }
            }
            return errors >= 100
        }
        #expect(errors >= 100, "\(errors) error replies")
        #expect(worker.process.isRunning, "\(worker.output.suffix(1000))")
        worker.signal(SIGTERM)
        #expect(worker.wait(seconds: 10) == 0)
    }
}
