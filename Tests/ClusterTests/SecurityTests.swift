import Cluster
import Foundation
import Testing
import Transport

/// CURVE with an allow-list checked by a ZAP handler, with real processes.
@Suite(.serialized) struct SecurityTests {
    @Test(.enabled(if: CurveKeyPair.isSupported, "libzmq without CURVE"))
    func onlyAllowListedWorkersCanJoin() throws {
        let folder = Harness.folder("curve")
        for name in ["coordinator", "allowed", "stranger"] {
            let keygen = try Harness.Child(["keygen", folder + "/" + name], log: folder + "/keygen-\(name).log")
            #expect(keygen.wait(seconds: 20) == 0, "\(keygen.output)")
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: folder + "/allowed.key")
        #expect((attributes[.posixPermissions] as? Int) == 0o600, "secret key files are private")
        // Liveness 25 × 200 ms, not the harness's 3: "exactly one worker joined" must not count the allowed worker
        // twice because a loaded machine stalled it past 0.6 s and it registered again (not what this test is about).
        let text = Harness.configText.replacingOccurrences(of: "liveness: 3", with: "liveness: 25") + """

        security:
          curve: true
          coordinator_key: coordinator.key
          allowed_workers: [allowed.pub]
        """
        let config = Harness.writeConfig(folder, text)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let stranger = try Harness.worker(folder, endpoint: endpoint, index: 1,
                                          extra: ["--server-key", folder + "/coordinator.pub", "--key", folder + "/stranger.key"])
        let plaintext = try Harness.worker(folder, endpoint: endpoint, index: 2)
        #expect(Harness.waitFor(seconds: 60) { coordinator.output.contains("refused") }, "\(coordinator.output.suffix(1500))")
        usleep(500_000)
        #expect(!coordinator.output.contains("joined"), "no worker has joined yet")
        #expect(Harness.metrics(folder).isEmpty, "no state change")
        let allowed = try Harness.worker(folder, endpoint: endpoint, index: 0,
                                         extra: ["--server-key", folder + "/coordinator.pub", "--key", folder + "/allowed.key"])
        #expect(coordinator.wait(seconds: 120) == 0, "\(coordinator.output.suffix(2000))")
        #expect(coordinator.output.components(separatedBy: "joined").count - 1 == 1, "exactly one worker joined")
        #expect(Harness.metrics(folder).allSatisfy { $0["workers"] as? Int == 1 })
        #expect(try Harness.finalSHA(folder) == Harness.referenceSHA)
        allowed.wait(seconds: 10)
        for w in [stranger, plaintext] { w.signal(SIGTERM); w.wait(seconds: 10) }
    }

    /// Without CURVE, binding beyond loopback works but says plainly that anyone can join.
    @Test func aPublicBindWithoutCurveWarns() throws {
        let folder = Harness.folder("publicbind")
        let config = Harness.writeConfig(folder)
        let coordinator = try Harness.coordinator(folder, config: config, extra: ["--bind", "tcp://0.0.0.0:*"])
        #expect(Harness.waitFor(seconds: 20) { coordinator.output.contains("without encryption") }, "\(coordinator.output)")
        coordinator.signal(SIGTERM)
        #expect(coordinator.wait(seconds: 10) == 0)
        let loopback = try Harness.coordinator(Harness.folder("loopbind"), config: config)
        #expect(Harness.waitFor(seconds: 20) { loopback.output.contains("listening") })
        #expect(!loopback.output.contains("without encryption"))
        loopback.signal(SIGTERM)
        loopback.wait(seconds: 10)
    }

    @Test func curveConfigNeedsKeys() {
        #expect(throws: ConfigError.self) { try ClusterConfig.parse("security:\n  curve: true\n") }
    }
}
