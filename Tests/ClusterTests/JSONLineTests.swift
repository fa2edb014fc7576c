import Foundation
import Testing
@testable import Cluster
@testable import ClusterCore

/// metrics.jsonl's lines and status.json (JSONEncoder instead of JSONSerialization): the same JSON, keys sorted.
@Suite struct JSONLineTests {
    @Test func aRecordBecomesOneLineOfSortedKeysWithNonFiniteNumbersAsNull() throws {
        let record: [String: Any] = ["zeta": 1, "alpha": 2.5, "mean_inner_return": Double.nan, "slot_seconds": [0.25, 0.5],
                                     "numerics_policy": "strict", "flag": true, "nested": ["b": 1, "a": NSNull()],
                                     "big": UInt64.max, "inf": -Double.infinity]
        let text = String(decoding: try JSONLine.data(record), as: UTF8.self)
        #expect(!text.contains("\n"))
        let keys = ["alpha", "big", "flag", "inf", "mean_inner_return", "nested", "numerics_policy", "slot_seconds", "zeta"]
        let positions = keys.map { text.range(of: "\"\($0)\"")!.lowerBound }
        #expect(positions == positions.sorted(), "\(text)")
        let back = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(back["zeta"] as? Int == 1 && back["alpha"] as? Double == 2.5 && back["flag"] as? Bool == true)
        #expect(back["mean_inner_return"] is NSNull && back["inf"] is NSNull)
        #expect(back["slot_seconds"] as? [Double] == [0.25, 0.5] && back["numerics_policy"] as? String == "strict")
        #expect((back["nested"] as? [String: Any])?["b"] as? Int == 1)
        #expect(text.contains("\"nested\":{\"a\":null,\"b\":1}"), "\(text)")
    }

    @Test func aValueJSONCannotHoldIsAnErrorNamingItsKey() {
        #expect(throws: JSONLine.Unsupported.self) { try JSONLine.data(["when": Date()]) }
    }
}
