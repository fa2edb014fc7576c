import Foundation

/// A seeded xoshiro256** generator: the only source of randomness in training code.
///
/// Every random draw in metatrain (network initialisation, ε-greedy, replay sampling, task
/// sampling, environment resets) goes through a `SeededRNG` passed explicitly, so a run is a pure
/// function of its seed. The state is seeded through SplitMix64, as the xoshiro authors recommend.
/// The draw helpers below are our own (not the standard library's `random(in:using:)`), so the
/// bits they produce cannot change with a Swift release.
public struct SeededRNG: RandomNumberGenerator, Sendable, Equatable {
    @usableFromInline var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// Creates a generator whose whole stream is determined by `seed`.
    public init(seed: UInt64) {
        var sm = SplitMix64(state: seed)
        s0 = sm.next(); s1 = sm.next(); s2 = sm.next(); s3 = sm.next()
        if s0 | s1 | s2 | s3 == 0 { s0 = 1 }  // the all-zero state is a fixed point
    }

    /// Creates a generator from a raw xoshiro state (not all zero); for checking against published outputs.
    public init(rawState: (UInt64, UInt64, UInt64, UInt64)) {
        (s0, s1, s2, s3) = rawState
        precondition(s0 | s1 | s2 | s3 != 0, "xoshiro256** state must not be all zero")
    }

    /// The next 64 random bits (xoshiro256**).
    @inlinable @inline(__always)
    public mutating func next() -> UInt64 {
        let result = SeededRNG.rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = SeededRNG.rotl(s3, 45)
        return result
    }

    @inlinable @inline(__always)
    static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A uniform Double in [0, 1) with 53 random bits.
    @inlinable @inline(__always)
    public mutating func nextDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// A uniform Float in [0, 1) with 24 random bits.
    @inlinable @inline(__always)
    public mutating func nextFloat() -> Float { Float(next() >> 40) * 0x1.0p-24 }

    /// A uniform Double in [lower, upper).
    @inlinable
    public mutating func nextDouble(in lower: Double, _ upper: Double) -> Double {
        lower + (upper - lower) * nextDouble()
    }

    /// A uniform integer in 0..<bound, without modulo bias (Lemire's multiply-and-reject).
    @inlinable
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "nextInt(below:) needs a positive bound, got \(bound)")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// A standard normal draw (Box–Muller, one of the pair; simple and deterministic).
    public mutating func nextGaussian() -> Double {
        let u1 = 1.0 - nextDouble()  // (0, 1]: log is finite
        let u2 = nextDouble()
        return (-2.0 * log(u1)).squareRoot() * cos(2.0 * Double.pi * u2)
    }
}

/// SplitMix64: seeds xoshiro and mixes seed material.
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// The SplitMix64 finaliser: a bijective avalanche of 64 bits.
    @inlinable
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What a derived seed is for; distinct purposes give independent streams for the same slot.
public enum SeedPurpose: UInt64, Sendable, CaseIterable {
    case networkInit = 1
    case taskSample = 2
    case innerLoop = 3
    case environment = 4
    case evaluation = 5
    case querySet = 6
    /// The coordinator's teacher rollouts and student minibatches of `meta.algorithm: distill`.
    case distillation = 7
    /// The teacher MAML's query regresses onto: the adapted network trained on (`inner_loop.teacher_steps`).
    case teacher = 8
    /// ES-MAML's perturbation ε of a slot (`meta.algorithm: es-maml`).
    case perturbation = 9
}

/// Derives an independent sub-seed from (run seed, iteration, slot, purpose) by chained hashing.
///
/// Used so that slot i of iteration t gets the same task and inner-loop seed whichever worker runs
/// it, and however many workers there are (DESIGN.md invariant 1).
public func deriveSeed(_ seed: UInt64, iteration: UInt64, slot: UInt64, purpose: SeedPurpose) -> UInt64 {
    var h = SplitMix64.mix(seed ^ 0x6D65_7461_7472_6169)  // "metatrai"
    for word in [iteration, slot, purpose.rawValue] {
        h = SplitMix64.mix((h &+ 0x9E37_79B9_7F4A_7C15) ^ word)
    }
    return h
}
