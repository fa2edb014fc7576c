import Cluster
import Foundation
import Testing

/// Launch defects found under Slurm: a resumed run's stale endpoint file, a wildcard bind's unusable address, and
/// a worker that retried a dead port forever.
@Suite(.serialized) struct LaunchTests {
    @Test func aWildcardBindAdvertisesAnAddressOthersCanUse() {
        #expect(Coordinator.advertisedEndpoint(bound: "tcp://0.0.0.0:40123", advertise: "tcp://10.0.0.5:5555") == "tcp://10.0.0.5:40123")
        #expect(Coordinator.advertisedEndpoint(bound: "tcp://127.0.0.1:40123", advertise: "tcp://10.0.0.5:5555") == "tcp://127.0.0.1:40123")
        let own = Coordinator.advertisedEndpoint(bound: "tcp://0.0.0.0:40123", advertise: "tcp://0.0.0.0:*")
        #expect(own == "tcp://\(ProcessInfo.processInfo.hostName):40123")
        #expect(!own.contains("0.0.0.0"))
        // The default config's loopback advertise with a wildcard bind (Slurm's --bind tcp://0.0.0.0:*): workers on other
        // nodes must not be sent to themselves (issue 38).
        for loopback in ["tcp://127.0.0.1:5555", "tcp://localhost:5555", "tcp://[::1]:5555"] {
            #expect(Coordinator.advertisedEndpoint(bound: "tcp://0.0.0.0:40123", advertise: loopback) == own, "\(loopback)")
        }
        #expect(Coordinator.advertisedEndpoint(bound: "tcp://127.0.0.1:40123", advertise: "tcp://127.0.0.1:5555") == "tcp://127.0.0.1:40123")
    }

    /// The coordinator is SIGKILLed (its endpoint file stays, naming a dead port) and resumed on another port: a
    /// worker started with --connect-file finds it by itself, and the run ends with the uninterrupted θ. At the
    /// coordinator's normal exit the file is gone.
    @Test func aWorkerFollowsTheEndpointFileToAResumedCoordinator() throws {
        let folder = Harness.folder("connectfile")
        let config = Harness.writeConfig(folder)
        let (first, oldEndpoint) = try Harness.startCoordinator(folder, config: config)
        let file = folder + "/coordinator.endpoint"
        let worker = try Harness.worker(folder, endpoint: "", index: 0, extra: ["--connect-file", file])
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 3 })
        first.signal(SIGKILL)
        first.wait(seconds: 10)
        #expect(Harness.endpoint(folder) == oldEndpoint, "a SIGKILL leaves the file")
        let second = try Harness.coordinator(folder, config: config, extra: ["--resume", folder])  // a new port
        #expect(Harness.waitFor(seconds: 20) { (Harness.endpoint(folder) ?? oldEndpoint) != oldEndpoint })
        #expect(second.wait(seconds: 180) == 0, "\(second.output.suffix(2000))")
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        #expect(worker.output.contains("coordinator endpoint is now"), "\(worker.output.suffix(1500))")
        #expect(worker.wait(seconds: 20) == 0)
        #expect(!FileManager.default.fileExists(atPath: file), "the endpoint file is removed at exit")
    }

    @Test func aWorkerThatNeverReachesACoordinatorGivesUp() throws {
        let folder = Harness.folder("giveup")
        // Port 9 (discard) on loopback: nobody listens there.
        let worker = try Harness.Child(["worker", "--connect", "tcp://127.0.0.1:9", "--heartbeat-interval-ms", "200",
                                        "--give-up-after", "2"], log: folder + "/worker.log")
        let status = worker.wait(seconds: 120)
        #expect(status != nil && status != 0, "it ends, with a failure status")
        #expect(worker.output.contains("no coordinator answered at tcp://127.0.0.1:9"), "\(worker.output.suffix(1000))")
    }
}

/// `metatrain status RUN_DIR` during and after a run, and the coordinator's progress line.
@Suite(.serialized) struct StatusTests {
    @Test func statusShowsProgressWorkersAndTheLastCheckpoint() throws {
        let folder = Harness.folder("status")
        let config = Harness.writeConfig(folder)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        // Slow enough that the run is still going when `status` asks (each slot idles 9× its compute afterwards).
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 0, extra: ["--slowdown", "10"])
        #expect(Harness.waitFor(seconds: 60) { Harness.metrics(folder).count >= 2 })
        // status.json is rewritten at most once a second while iterations come (CI saw it still at iteration 0 with
        // no worker when metrics.jsonl had two lines): wait for the rewrite that shows them, then ask.
        #expect(Harness.waitFor(seconds: 30) {
            guard let status = Harness.status(folder) else { return false }
            return status["state"] as? String == "running" && (status["iteration"] as? Int ?? 0) >= 1
                && (status["workers"] as? [Any])?.count == 1
        }, "\(String(describing: Harness.status(folder)))")
        let during = try Harness.Child(["status", folder], log: folder + "/status-during.log")
        #expect(during.wait(seconds: 30) == 0, "\(during.output)")
        #expect(during.output.contains("running") && during.output.contains("of 10") && during.output.contains("ETA"), "\(during.output)")
        #expect(during.output.contains("workers: 1") && during.output.contains("threads 1"), "\(during.output)")
        #expect(coordinator.wait(seconds: 180) == 0)
        worker.wait(seconds: 10)
        #expect(coordinator.output.contains("iteration   10/10") && coordinator.output.contains("ETA 0s"), "the progress line: \(coordinator.output.suffix(800))")
        let after = try Harness.Child(["status", folder, "--json"], log: folder + "/status-after.log")
        #expect(after.wait(seconds: 30) == 0)
        let status = try #require(try JSONSerialization.jsonObject(with: Data(after.output.utf8)) as? [String: Any], "\(after.output)")
        #expect(status["iteration"] as? Int == 10 && status["iterations"] as? Int == 10)
        #expect(status["state"] as? String == "exited")
        #expect((status["last_checkpoint"] as? [String: Any])?["iteration"] as? Int == 10)
        #expect(status["params_sha256"] as? String == Harness.referenceSHA)
        // The keys `metatrain status` and users' scripts read, as JSONSerialization wrote them before StatusReport.
        let keys: Set<String> = ["id", "host", "threads", "busy", "slots_done", "suspected", "last_heard_ms_ago", "env_steps"]
        #expect((status["workers"] as? [[String: Any]] ?? []).allSatisfy { Set($0.keys) == keys }, "\(after.output)")
        #expect(["seconds_per_iteration", "slots_per_second", "eta_seconds", "meta_batch", "updated_unix_ms", "endpoint", "run_id"]
            .allSatisfy { status[$0] != nil }, "\(after.output)")
    }
}
