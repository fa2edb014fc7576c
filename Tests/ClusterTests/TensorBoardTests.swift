import Foundation
import Testing
@testable import Cluster
@testable import ClusterCore

/// The coordinator's TensorBoard event files, read back by tensorboard's own EventAccumulator: every metrics.jsonl
/// scalar at its iteration, and the periodic meta-eval returns. scripts/test.sh provides the Python.
@Suite struct TensorBoardTests {
    static let python = ProcessInfo.processInfo.environment["METATRAIN_READERS_PYTHON"]
    static var script: String { URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("tensorboard_check.py").path }

    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test(.enabled(if: python != nil, "SKIPPED: needs METATRAIN_READERS_PYTHON, a venv with tensorboard (scripts/test.sh sets it, and fails if this test does not run)"))
    func tensorBoardReadsEveryScalarWithItsStepAndValue() throws {
        let folder = Harness.folder("tensorboard")
        let text = Harness.configText.replacingOccurrences(of: "evaluation:\n  tasks: 0", with: "evaluation:\n  tasks: 2\n  budget: 200\n  interval: 5")
        #expect(text.contains("interval: 5"))
        let config = Harness.writeConfig(folder, text)
        let (coordinator, endpoint) = try Harness.startCoordinator(folder, config: config)
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 0)
        #expect(coordinator.wait(seconds: 180) == 0, "\(coordinator.output.suffix(2000))")
        worker.wait(seconds: 10)

        let (status, data) = try Harness.runPython(Self.python!, Self.script, [folder + "/tensorboard"])
        let output = String(decoding: data, as: UTF8.self)
        #expect(status == 0, "\(output.suffix(2000))")
        let scalars = try #require(try JSONSerialization.jsonObject(with: data) as? [String: [[Double]]], "\(output.suffix(500))")

        // Every numeric metrics.jsonl field, at every iteration, as a float32.
        let metrics = Harness.metrics(folder)
        #expect(metrics.count == 10)
        var compared = 0
        for line in metrics {
            // Step = meta-updates applied: metrics line "iteration" i (0-based) is step i + 1, as checkpoints count.
            let step = Double(line["iteration"] as! Int + 1)
            for (key, value) in line where key != "iteration" {
                guard let number = value as? NSNumber else { continue }   // the strings (sha, numerics) are not scalars
                let points = try #require(scalars["metrics/\(key)"], "no TensorBoard tag metrics/\(key)")
                let point = try #require(points.first { $0[0] == step }, "metrics/\(key) has no step \(step)")
                #expect(Float(point[1]) == Float(number.doubleValue), "metrics/\(key) at \(step): \(point[1]) vs \(number)")
                compared += 1
            }
        }
        #expect(compared >= 10 * 15)
        // Meta-eval at iterations 0, 5 and 10 (the final θ), before and after adaptation.
        for tag in ["meta_eval/return_before_adaptation", "meta_eval/return_after_adaptation"] {
            #expect(Set(scalars[tag]?.map { Int($0[0]) } ?? []) == [0, 5, 10], "\(tag): \(scalars[tag] ?? [])")
        }
    }
}
