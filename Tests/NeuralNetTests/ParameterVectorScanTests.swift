import NeuralNet
import Testing

/// The vector scan the coordinator checks every update and decoded tensor with gives `firstIndex(where:)`'s answer,
/// and the decoder's copy-and-check gives the same index and the same values as a copy followed by that scan.
@Suite struct ParameterVectorScanTests {
    /// Random vectors with NaN, ±∞ and values at and beyond the bounds planted, at lengths around every vector step
    /// (4 × 4, 8 and 16 lanes).
    static func cases() -> [[Float]] {
        var rng = SeededRNG(seed: 5)
        let specials: [Float] = [.nan, .infinity, -.infinity, 2e6, -2e6, 1e6, -1e6, .greatestFiniteMagnitude, -0.0]
        var cases: [[Float]] = []
        for count in [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129, 300] {
            for _ in 0..<40 {
                var values = (0..<count).map { _ in Float(rng.nextDouble(in: -1, 1)) }
                if count > 0, rng.nextDouble() < 0.8 {
                    for _ in 0..<(1 + rng.nextInt(below: 2)) { values[rng.nextInt(below: count)] = specials[rng.nextInt(below: specials.count)] }
                }
                cases.append(values)
            }
        }
        return cases
    }

    @Test func firstIndexBeyondABoundMatchesTheElementwiseScan() {
        for values in Self.cases() {
            for bound: Float in [1e6, .greatestFiniteMagnitude, 0.5] {
                #expect(values.firstIndex(beyond: bound) == values.firstIndex { !(abs($0) <= bound) }, "\(values) bound \(bound)")
            }
            #expect(ParameterVector(values).isFinite == values.allSatisfy(\.isFinite))
        }
    }

    @Test func copyingAndCheckingInOnePassMatchesACopyThenTheScan() throws {
        for values in Self.cases() {
            // Bytes at an odd offset: a protobuf field's bytes have no alignment.
            let bytes: [UInt8] = [0x7F] + values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
            for bound: Float in [1e6, .greatestFiniteMagnitude] {
                let copied = try #require(bytes.withUnsafeBytes {
                    [Float].copying(littleEndian: UnsafeRawBufferPointer(rebasing: $0.dropFirst()), count: values.count, checking: bound)
                })
                let expected = values.firstIndex { !(abs($0) <= bound) }
                #expect(copied.firstBeyond == expected, "\(values) bound \(bound)")
                if expected == nil { #expect(copied.values.map(\.bitPattern) == values.map(\.bitPattern)) }
                #expect(copied.values.count == values.count)
            }
        }
        let short: [UInt8] = [0, 0, 128]
        #expect(short.withUnsafeBytes { [Float].copying(littleEndian: $0, count: 1, checking: 1) } == nil)
        #expect(short.withUnsafeBytes { [Float].copying(littleEndian: $0, count: Int.max / 2, checking: 1) } == nil, "a count whose bytes overflow")
        #expect(short.withUnsafeBytes { [Float].copying(littleEndian: $0, count: -1, checking: 1) } == nil)
    }
}
