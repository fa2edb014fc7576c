import NeuralNet
import Testing

/// The 16-lane scan the coordinator checks every update and decoded tensor with gives `firstIndex(where:)`'s answer.
@Suite struct ParameterVectorScanTests {
    @Test func firstIndexBeyondABoundMatchesTheElementwiseScan() {
        var rng = SeededRNG(seed: 5)
        let specials: [Float] = [.nan, .infinity, -.infinity, 2e6, -2e6, 1e6, -1e6, .greatestFiniteMagnitude, -0.0]
        for count in [0, 1, 15, 16, 17, 33, 100] {
            for _ in 0..<40 {
                var values = (0..<count).map { _ in Float(rng.nextDouble(in: -1, 1)) }
                if count > 0, rng.nextDouble() < 0.8 {
                    for _ in 0..<(1 + rng.nextInt(below: 2)) { values[rng.nextInt(below: count)] = specials[rng.nextInt(below: specials.count)] }
                }
                for bound: Float in [1e6, .greatestFiniteMagnitude, 0.5] {
                    #expect(values.firstIndex(beyond: bound) == values.firstIndex { !(abs($0) <= bound) }, "\(values) bound \(bound)")
                }
                #expect(ParameterVector(values).isFinite == values.allSatisfy(\.isFinite))
            }
        }
    }
}
