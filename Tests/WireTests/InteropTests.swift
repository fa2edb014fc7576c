import Environments
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Wire

/// Another protobuf implementation (Python's) reads what we write and writes what we read.
/// scripts/test.sh sets up the Python side and the two variables; without them the test is skipped.
@Suite struct InteropTests {
    static let python = ProcessInfo.processInfo.environment["METATRAIN_INTEROP_PYTHON"]
    static let generated = ProcessInfo.processInfo.environment["METATRAIN_INTEROP_GENERATED"]
    static var script: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("interop.py").path }

    static func runPython(_ arguments: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python!)
        p.arguments = [script, generated!] + arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(.enabled(if: python != nil && generated != nil, "SKIPPED: needs METATRAIN_INTEROP_PYTHON and METATRAIN_INTEROP_GENERATED (scripts/test.sh sets them, and fails if this test does not run)"))
    func pythonReadsWhatWeWriteAndWeReadWhatItWrites() throws {
        let folder = NSTemporaryDirectory() + "metatrain-interop-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let theta = ParameterVector([0.25, -1.5, 3.0e-6, 1024])
        let assignment = Assignment(
            runID: "swift-run", key: SlotKey(iteration: 7, slot: 3, attempt: 2),
            task: .cartPole(CartPoleParameters(gravity: 11.25, length: 0.75)), innerLoop: InnerLoopSettings(budget: 4321),
            algorithm: .reptile, seed: 0xFEED_F00D_1234_5678, parameterVersion: 7, parameters: theta)
        // As one frame, and as the coordinator sends it to a worker: a head and θ's field encoded once, joined.
        let shared = SharedTensorField(theta, for: .assignment)
        let encodings = [("one frame", WireCodec.encode(.assignment(assignment))),
                         ("head + shared θ", WireCodec.encodeHead(.assignment(assignment), shared: shared) + shared.bytes)]
        for (name, bytes) in encodings {
        let out = folder + "/assignment.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: out))
        let (status, text) = try Self.runPython(["read", out])
        #expect(status == 0, "\(name): \(text)")
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        #expect(fields["body"] as? String == "assignment" && fields["version"] as? Int == Int(protocolVersion))
        #expect(fields["run_id"] as? String == "swift-run" && fields["iteration"] as? Int == 7)
        #expect(fields["slot"] as? Int == 3 && fields["attempt"] as? Int == 2)
        #expect((fields["seed"] as? NSNumber)?.uint64Value == 0xFEED_F00D_1234_5678)
        #expect(fields["algorithm"] as? String == "ALGORITHM_REPTILE" && fields["optimizer"] as? String == "OPTIMIZER_ADAM")
        #expect(fields["gravity"] as? Double == 11.25 && fields["length"] as? Double == 0.75 && fields["budget"] as? Int == 4321)
        #expect(fields["hidden_layers"] as? [Int] == [64, 64] && fields["shape"] as? [Int] == [4])
        #expect((fields["values"] as? [Double])?.map { Float($0) } == theta.values, "\(name)")
        }

        let back = folder + "/result.bin"
        let (writeStatus, writeText) = try Self.runPython(["write", back, "\(protocolVersion)"])
        #expect(writeStatus == 0, "\(writeText)")
        let message = try WireCodec.decode([UInt8](try Data(contentsOf: URL(fileURLWithPath: back))))
        guard case .result(let r) = message else { Issue.record("decoded \(message)"); return }
        #expect(r.runID == "py-run" && r.key == SlotKey(iteration: 4, slot: 1, attempt: 2) && r.parameterVersion == 4)
        #expect(r.update == ParameterVector([0.5, -1.25, 3.0]))
        #expect(r.statistics.meanReturn == 17.5 && r.statistics.episodes == 3 && r.statistics.environmentSteps == 900)
    }
}
