import Cluster
import Foundation
import Testing
import Transport
import Wire

/// Real coordinator and worker processes over tcp://127.0.0.1, real signals (issue: what the tests must show).
@Suite(.serialized) struct ClusterProcessTests {
    /// 1. The same config and seed give the same θ with 1, 2 and 4 workers and with --threads 2, equal
    /// to the serial in-process computation.
    @Test func determinismAcrossWorkerCounts() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Harness.binary), "build metatrain first: \(Harness.binary)")
        let reference = Harness.referenceSHA
        for (workers, threads) in [(1, 1), (2, 1), (4, 1), (1, 2)] {
            let folder = Harness.folder("det-\(workers)x\(threads)")
            let config = Harness.writeConfig(folder)
            let run = try Harness.Child(["local", "--config", config, "--workers", "\(workers)", "--threads", "\(threads)",
                                         "--run-dir", folder + "/run", "--no-eval"], log: folder + "/local.log")
            #expect(run.wait(seconds: 120) == 0, "\(run.output.suffix(2000))")
            #expect(try Harness.finalSHA(folder + "/run") == reference, "\(workers) worker(s) × \(threads) thread(s)")
            // Invariant 7: θ travels at most once per worker per version. A worker declared dead on a loaded
            // machine (0.6 s without a heartbeat) that comes back is a new registration and is sent θ again.
            let last = Harness.metrics(folder + "/run").last
            let transfers = last?["parameter_transfers"] as? Int ?? -1
            let registrations = last?["workers_registered"] as? Int ?? -1
            // (A worker starved on a loaded machine may register only after the short run has ended: at least one did.)
            #expect(registrations >= 1)
            print("determinism: \(workers) worker(s) × \(threads) thread(s): \(registrations) registration(s), \(transfers) θ transfers")
            #expect(transfers >= 10 && transfers <= 10 * registrations,
                    "\(transfers) θ transfers to \(registrations) registrations of \(workers) worker(s)")
        }
    }

    /// θ is encoded once per version and every θ byte sent goes to a worker that lacked that version (issue 15):
    /// with instant workers (`--compute none`, what scripts/capacity.sh runs) the coordinator alone is exercised.
    @Test func thetaIsEncodedOncePerVersionAndSentOncePerHolder() throws {
        let folder = Harness.folder("instant")
        let config = Harness.writeConfig(folder)
        let reports = folder + "/worker-cpu"
        try FileManager.default.createDirectory(atPath: reports, withIntermediateDirectories: true)
        let run = try Harness.Child(["local", "--config", config, "--workers", "3", "--compute", "none", "--run-dir", folder + "/run",
                                     "--no-eval"], log: folder + "/local.log", environment: ["METATRAIN_WORKER_CPU_DIR": reports])
        #expect(run.wait(seconds: 120) == 0, "\(run.output.suffix(2000))")
        // Every worker wrote its own CPU from its first job on ("SECONDS JOBS"), as scripts/capacity.sh reads it — "0 0"
        // if it registered after instant workers had done every slot — and then its CPU timeline, a "MONOTONIC CPU"
        // line at every job and message, in time order and never losing CPU.
        let files = try FileManager.default.contentsOfDirectory(atPath: reports).filter { $0.hasSuffix(".cpu") }.map {
            try String(contentsOfFile: reports + "/" + $0, encoding: .utf8).split(separator: "\n").map {
                $0.split(separator: " ").map { Double(String($0)) ?? -1 }
            }
        }
        let accounts = files.compactMap(\.first)
        #expect(files.count == 3 && accounts.count == 3, "\(files)")
        #expect(accounts.allSatisfy { $0.count == 2 && $0[0] >= 0 }, "\(accounts)")
        #expect(accounts.contains { $0[0] > 0 }, "the workers that ran slots spent CPU: \(accounts)")
        #expect(accounts.map { Int($0[1]) }.reduce(0, +) >= 10 * 4, "every slot was a worker's job: \(accounts)")
        let timelines = files.map { Array($0.dropFirst()) }
        for (account, timeline) in zip(accounts, timelines) {
            // A sample per job queued at least (a job's result may be dropped unsent, e.g. a backup finished after the end).
            #expect(timeline.count >= Int(account[1]), "\(timeline.count) samples for \(Int(account[1])) jobs")
            #expect(timeline.allSatisfy { $0.count == 2 && $0[0] > 0 && $0[1] > 0 }, "\(timeline.prefix(3))")
            #expect(zip(timeline, timeline.dropFirst()).allSatisfy { $0[0] <= $1[0] && $0[1] <= $1[1] }, "time and CPU only go forward")
        }
        // The coordinator stamps each update on the same clock: the workers' samples lie between its first and last.
        let stamps = Harness.metrics(folder + "/run").compactMap { $0["monotonic_seconds"] as? Double }
        #expect(stamps.count == 10 && zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 }, "\(stamps)")
        let samples = timelines.flatMap { $0.map { $0[0] } }
        if let first = stamps.first, let last = stamps.last, let earliest = samples.min(), let latest = samples.max() {
            #expect(earliest < last && latest > first && latest - earliest < 120, "samples \(earliest)…\(latest), updates \(first)…\(last)")
        }
        let lines = Harness.metrics(folder + "/run")
        let last = try #require(lines.last)
        #expect(last["slots_applied"] as? Int == 10 * 4)
        #expect(last["tensor_encodings"] as? Int == 10, "one encoding per θ version")
        let theta = try #require(last["parameters"] as? Int)
        let field = SharedTensorField(ParameterVector(zeros: theta), for: .assignment).bytes.count
        let sent = lines.map { $0["tensor_bytes_sent"] as? Int ?? -1 }.reduce(0, +)
        #expect(sent == field * (last["parameter_transfers"] as? Int ?? -1), "θ bytes: \(sent), field \(field)")
        #expect(try Harness.finalSHA(folder + "/run") != Harness.referenceSHA, "instant results are not training")
    }

    /// 2. SIGKILL one of 3 workers mid-iteration: detected (the latency is printed; the bound, interval ×
    /// liveness plus a tick, is checked in simulated time by the scheduler simulation), same θ.
    @Test func workerKilledMidIteration() throws {
        let folder = Harness.folder("kill")
        let config = Harness.writeConfig(folder)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        // Paced (compute + 5× idle), so the 8 iterations after the kill outlast its detection (0.6 s) on any machine:
        // unpaced, a fast one could finish the run first, and no death would ever be declared.
        let workers = try (0..<3).map { try Harness.worker(folder, endpoint: endpoint, index: $0, extra: ["--slowdown", "6"]) }
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 2 })
        workers[0].signal(SIGKILL)
        let killed = Date()
        let detected = Harness.waitFor(seconds: 60) { coordinator.output.contains("declared dead") || !coordinator.process.isRunning }
            && coordinator.output.contains("declared dead")
        #expect(detected, "the killed worker was never declared dead")
        print("worker death detected \(String(format: "%.2f", Date().timeIntervalSince(killed))) s after SIGKILL (heartbeat 0.2 s × liveness 3)")
        #expect(coordinator.wait(seconds: 120) == 0, "\(coordinator.output.suffix(2000))")
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        // Exactly once: every slot of every iteration applied once; the dead worker's slot was taken over
        // (requeued at its death, or already copied to an idle worker as a backup before that).
        let last = try #require(Harness.metrics(folder).last)
        #expect(last["slots_applied"] as? Int == 10 * 4)
        #expect(last["workers_declared_dead"] as? Int == 1)
        #expect((last["requeued"] as? Int ?? 0) + (last["backups_sent"] as? Int ?? 0) >= 1)
        for w in workers { w.wait(seconds: 10) }
    }

    /// 3. SIGKILL the coordinator after a checkpoint and resume it; the workers re-register by themselves. Both starts
    /// are the same command (`--resume-or-start`), as a requeued Slurm or Kubernetes job runs it.
    @Test func coordinatorKilledAndResumed() throws {
        let folder = Harness.folder("resume")
        let config = Harness.writeConfig(folder)
        let (first, endpoint) = try Harness.startCoordinator(folder, config: config, extra: ["--resume-or-start", folder])
        #expect(Harness.waitFor(seconds: 20) { first.output.contains("holds no checkpoint: starting a new run") }, "\(first.output.suffix(1000))")
        let workers = try (0..<2).map { try Harness.worker(folder, endpoint: endpoint, index: $0) }
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 3 })
        first.signal(SIGKILL)
        first.wait(seconds: 10)
        // status.json still says "running": `metatrain status` must not believe it (issue 38, item 6).
        let status = try Harness.Child(["status", folder], log: folder + "/status-after-kill.log")
        #expect(status.wait(seconds: 30) == 3, "\(status.output.suffix(1000))")
        #expect(status.output.contains("NOT RUNNING") && status.output.contains("is gone"), "\(status.output.suffix(1000))")
        let second = try Harness.coordinator(folder, config: config, extra: ["--resume-or-start", folder, "--bind", endpoint])
        #expect(second.wait(seconds: 120) == 0, "\(second.output.suffix(3000))")
        #expect(second.output.contains("resuming"))
        #expect(second.output.contains("joined"), "the running workers registered again")
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        // The iterations the killed coordinator logged after its last checkpoint were computed again: each is listed
        // once (the resumed run drops the old lines).
        let logged = Harness.metrics(folder).compactMap { $0["iteration"] as? Int }
        #expect(logged == Array(0..<logged.count) && logged.count == 10, "metrics.jsonl iterations: \(logged)")
        for w in workers { #expect(w.process.isRunning || w.process.terminationStatus == 0); w.wait(seconds: 10) }
    }

    /// 4. Start with 1 worker, add 2 mid-run, stop 1 with SIGTERM: same θ.
    @Test func workersJoinAndLeaveMidRun() throws {
        let folder = Harness.folder("elastic")
        let config = Harness.writeConfig(folder)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        // The first worker plays a 4× slower machine, so the run is still going when the others have started
        // (a worker measures its numerics fingerprint before it says hello) on any machine, loaded or not.
        let first = try Harness.worker(folder, endpoint: endpoint, index: 0, extra: ["--slowdown", "4"])
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 1 })
        let more = try (1..<3).map { try Harness.worker(folder, endpoint: endpoint, index: $0) }
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 3 })
        more[0].signal(SIGTERM)
        #expect(more[0].wait(seconds: 10) == 0, "a worker exits cleanly on SIGTERM")
        #expect(coordinator.wait(seconds: 120) == 0, "\(coordinator.output.suffix(2000))")
        #expect(coordinator.output.contains("said goodbye"))
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        let workerCounts = Harness.metrics(folder).compactMap { $0["workers"] as? Int }
        #expect(workerCounts.max() == 3 && workerCounts.first == 1, "\(workerCounts)")
        first.wait(seconds: 10); more[1].wait(seconds: 10)
    }

    /// 5. Garbage, a wrong protocol version and a NaN result get error replies; the coordinator stays up and θ is unaffected.
    @Test func badMessagesAreRejectedAndThetaIsUnaffected() throws {
        let folder = Harness.folder("bad")
        let config = Harness.writeConfig(folder)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 0)

        let context = try ZMQContext()
        let rogue = try context.socket(.dealer)
        try rogue.connect(endpoint)
        /// Sends `bytes` and returns the first welcome or error reply (heartbeats and assignments are skipped).
        func exchange(_ bytes: [UInt8]) throws -> Message? {
            try rogue.send([bytes], dontWait: false)
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline {
                if try ZMQPoller.poll([rogue], timeoutMs: 100)[0], let frames = try rogue.receive() {
                    let m = try WireCodec.decode(frames: frames)
                    switch m {
                    case .welcome, .error: return m
                    default: continue
                    }
                }
            }
            return nil
        }
        func code(_ m: Message?) -> ErrorCode? { if case .error(let e) = m { return e.code } else { return nil } }

        #expect(code(try exchange([0xFF, 0x01, 0x02, 0x03, 0x99])) == .malformed)
        // A result from a peer that never said hello is refused unread (issue 39, defect 8): even one whose body is
        // garbage gets "say hello first", not a decoding error — the coordinator did not decode it.
        var garbage = ProtoWriter()
        garbage.varint(1, UInt64(protocolVersion))
        garbage.bytes(6, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01])
        #expect(code(try exchange(garbage.bytes)) == .unknownWorker)
        #expect(code(try exchange(WireCodec.encode(.hello(Hello(host: "x", cores: 1, threads: 1)), version: 99))) == .protocolVersion)
        guard case .welcome(let welcome) = try exchange(WireCodec.encode(.hello(Hello(host: "rogue", cores: 1, threads: 1)))) else {
            Issue.record("no welcome for a valid hello"); return
        }
        let nan = SlotResult(runID: welcome.runID, key: SlotKey(iteration: 0, slot: 0, attempt: 0), parameterVersion: 0,
                             update: ParameterVector([Float](repeating: .nan, count: 4)), statistics: SlotStatistics())
        #expect(code(try exchange(WireCodec.encode(.result(nan)))) == .malformed)
        let wrongSize = SlotResult(runID: welcome.runID, key: SlotKey(iteration: 0, slot: 1, attempt: 0), parameterVersion: 0,
                                   update: ParameterVector([1, 2, 3]), statistics: SlotStatistics())
        #expect(code(try exchange(WireCodec.encode(.result(wrongSize)))) == .malformed)
        rogue.close()

        #expect(coordinator.wait(seconds: 120) == 0, "\(coordinator.output.suffix(2000))")
        #expect(coordinator.output.contains("bad message"))
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        worker.wait(seconds: 10)
    }
}

import MetaLearning
import NeuralNet
