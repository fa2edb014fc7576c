/// 64-bit FNV-1a over bit patterns: enough to tell two computations apart (nobody forges a fingerprint to
/// join a run; CURVE keys are for that). The numerics and environment fingerprints are made with it.
public struct FNV1a: Sendable {
    public init() {}

    private var state: UInt64 = 0xcbf2_9ce4_8422_2325

    public mutating func add(_ word: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) {
            state ^= (word >> UInt64(shift)) & 0xff
            state = state &* 0x0000_0100_0000_01b3
        }
    }

    public mutating func add(_ values: [Float]) { for v in values { add(UInt64(v.bitPattern)) } }
    public mutating func add(_ value: Double) { add(value.bitPattern) }

    public var hex: String {
        let digits = String(state, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
