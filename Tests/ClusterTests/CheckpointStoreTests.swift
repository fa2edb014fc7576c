import Cluster
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Wire

@Suite struct CheckpointStoreTests {
    let settings = MetaSettings()

    func record(_ iteration: Int, runID: String = "run-1", hash: String = "h1") -> CheckpointRecord {
        var state = MetaState(theta: ParameterVector((0..<100).map { Float($0) * 0.01 + Float(iteration) }), settings: settings)
        state = MetaState(theta: state.theta, optimizer: state.optimizer, iteration: iteration)
        return CheckpointRecord(runID: runID, algorithm: .reptile, runSeed: 1, configHash: hash, state: state, createdUnixMs: 1)
    }

    func store(keep: Int = 3) -> CheckpointStore {
        CheckpointStore(runDirectory: NSTemporaryDirectory() + "metatrain-ckpt-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", keepLast: keep)
    }

    @Test func writesVerifiesAndKeepsTheLastK() throws {
        let s = store(keep: 2)
        for i in 1...4 { try s.write(record(i)) }
        #expect(s.files().map { ($0 as NSString).lastPathComponent } == ["ckpt-00000004.mtck", "ckpt-00000003.mtck"])
        let newest = try s.newestValid(settings: settings, configHash: "h1")
        #expect(newest.record == record(4) && newest.skipped.isEmpty)
    }

    /// A flipped byte, a truncated file and garbage are each refused with a reason; resume falls back.
    @Test(arguments: ["flip", "truncate", "garbage", "empty"])
    func corruptNewestFallsBackToThePreviousGoodOne(damage: String) throws {
        let s = store()
        try s.write(record(2))
        let newest = try s.write(record(4))
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: newest)))
        switch damage {
        case "flip": bytes[bytes.count / 2] ^= 0x40
        case "truncate": bytes.removeLast(10)
        case "garbage": bytes = Array("not a checkpoint at all".utf8)
        default: bytes = []
        }
        try Data(bytes).write(to: URL(fileURLWithPath: newest))
        let found = try s.newestValid(settings: settings, configHash: "h1")
        #expect(found.record.state.iteration == 2)
        let reason = try #require(found.skipped.first)
        switch damage {
        case "flip": #expect(reason.contains("SHA-256 does not match"), "\(reason)")
        case "truncate", "empty": #expect(reason.contains("truncated"), "\(reason)")
        default: #expect(reason.contains("bad magic"), "\(reason)")
        }
    }

    @Test func aCheckpointOfAnotherConfigurationIsRefused() throws {
        let s = store()
        try s.write(record(3, hash: "other"))
        #expect(throws: CheckpointError.self) { try s.newestValid(settings: settings, configHash: "h1") }
        #expect(try s.newestValid(settings: settings, configHash: nil).record.state.iteration == 3)
    }

    @Test func aCheckpointFromAnotherRunIsSkippedForThePreviousGoodOne() throws {
        let s = store()
        try s.write(record(2))
        try s.write(record(5, runID: "intruder", hash: "h1"))
        let found = try s.newestValid(settings: settings, configHash: "h1", runID: "run-1")
        #expect(found.record.state.iteration == 2)
        #expect(found.skipped.first?.contains("belongs to run intruder") == true, "\(found.skipped)")
        try s.write(record(7, hash: "h2"))
        let again = try s.newestValid(settings: settings, configHash: "h1", runID: "run-1")
        #expect(again.record.state.iteration == 2 && again.skipped.count == 2, "a foreign config is skipped when an older match exists")
    }

    @Test func noValidCheckpointSaysWhy() throws {
        let s = store()
        let path = try s.write(record(1))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        do {
            _ = try s.newestValid(settings: settings, configHash: nil)
            Issue.record("accepted garbage")
        } catch {
            #expect("\(error)".contains("no valid checkpoint") && "\(error)".contains("truncated"))
        }
    }

    @Test func paramsSHA256IsOfLittleEndianFloat32Bytes() {
        // SHA-256 of the 4 bytes 00 00 80 3f (1.0f), as Python's hashlib computes it.
        #expect(parametersSHA256(ParameterVector([1])) == "e00e5eb9444182f352323374ef4e08ebcb784725fdd4fd612d7730540b3e0c8c")
    }
}
