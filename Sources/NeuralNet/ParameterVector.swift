import CKernels

/// The parameters of a network as one flat, contiguous `[Float]`.
///
/// Meta-updates (φ − θ, averages, Adam over θ), checkpoints and wire payloads are then plain vector
/// operations and single copies. Layer views come from `MLP.layers`, which give offsets into this
/// vector. The vector operations Reptile needs are the free functions below.
public struct ParameterVector: Equatable, Sendable {
    public var values: [Float]

    public init(_ values: [Float]) { self.values = values }
    public init(zeros count: Int) { values = [Float](repeating: 0, count: count) }

    public var count: Int { values.count }

    public subscript(i: Int) -> Float {
        get { values[i] }
        set { values[i] = newValue }
    }

    /// True when every value is finite (no NaN, no ±Inf).
    public var isFinite: Bool { values.firstIndex(beyond: .greatestFiniteMagnitude) == nil }
}

extension Array where Element == Float {
    /// The first index holding NaN or a value beyond ±`bound` (±∞ included; with `.greatestFiniteMagnitude`, the
    /// first value that is not finite), or nil.
    ///
    /// Why a C kernel (`mt_copy_within`): the coordinator checks every incoming update (4 MB for a 1M-float θ) and
    /// every tensor it decodes; Swift's SIMD16 comparisons, twice per update, took 12% of its CPU at θ of 1M floats (perf, docs/SCALING.md).
    public func firstIndex(beyond bound: Float) -> Int? {
        withUnsafeBufferPointer { buffer -> Int? in
            guard let base = buffer.baseAddress else { return nil }
            let i = mt_copy_within(nil, base, buffer.count, bound)
            return i < 0 ? nil : i
        }
    }

    /// `count` little-endian float32 values copied from `bytes`, and the index of the first that is NaN or beyond
    /// ±`bound` (as `firstIndex(beyond:)`), checked in the same pass; nil when `bytes` holds fewer than `count` values.
    ///
    /// Why one pass: decoding an update copied it and then read it again to check it (issue 15's coordinator CPU).
    public static func copying(littleEndian bytes: UnsafeRawBufferPointer, count: Int, checking bound: Float) -> (values: [Float], firstBeyond: Int?)? {
        guard count >= 0, case (let needed, false) = count.multipliedReportingOverflow(by: 4), bytes.count >= needed else { return nil }
        guard count > 0, let source = bytes.baseAddress else { return ([], nil) }
        #if _endian(little)
        var firstBeyond: Int?
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            let i = mt_copy_within(buffer.baseAddress, source, count, bound)
            if i >= 0 {
                firstBeyond = i
                buffer.baseAddress!.initialize(repeating: 0, count: count)  // the values past the hit were not copied
            }
            initialized = count
        }
        return (values, firstBeyond)
        #else
        let values = (0..<count).map { Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        return (values, values.firstIndex(beyond: bound))
        #endif
    }

    /// The values as little-endian IEEE float32 bytes: the one byte layout of θ in hashes, files and exports.
    /// (On a little-endian CPU that is the array's own memory, copied at once: the coordinator hashes θ after every
    /// meta-update, and appending 4 bytes at a time was 3–6% of its CPU at θ of 1M floats.)
    public var littleEndianBytes: [UInt8] {
        #if _endian(little)
        return withUnsafeBytes { [UInt8]($0) }
        #else
        var bytes = [UInt8]()
        bytes.reserveCapacity(count * 4)
        for v in self { Swift.withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        return bytes
        #endif
    }

    /// Values from little-endian float32 bytes; nil when the byte count is not a multiple of 4.
    public static func fromLittleEndianBytes<Bytes: Collection>(_ bytes: Bytes) -> [Float]? where Bytes.Element == UInt8 {
        guard bytes.count % 4 == 0 else { return nil }
        let raw = [UInt8](bytes)
        return (0..<raw.count / 4).map { i in
            Float(bitPattern: UInt32(raw[4 * i]) | UInt32(raw[4 * i + 1]) << 8 | UInt32(raw[4 * i + 2]) << 16 | UInt32(raw[4 * i + 3]) << 24)
        }
    }
}

/// y ← a·x + y.
public func axpy(_ a: Float, _ x: ParameterVector, _ y: inout ParameterVector) {
    precondition(x.count == y.count, "axpy: sizes differ (\(x.count) vs \(y.count))")
    x.values.withUnsafeBufferPointer { xp in
        y.values.withUnsafeMutableBufferPointer { yp in
            for i in 0..<xp.count { yp[i] += a * xp[i] }
        }
    }
}

/// x ← a·x.
public func scale(_ x: inout ParameterVector, by a: Float) {
    x.values.withUnsafeMutableBufferPointer { xp in
        for i in 0..<xp.count { xp[i] *= a }
    }
}

/// a − b.
public func difference(_ a: ParameterVector, _ b: ParameterVector) -> ParameterVector {
    precondition(a.count == b.count, "difference: sizes differ (\(a.count) vs \(b.count))")
    var out = a
    axpy(-1, b, &out)
    return out
}

/// The element-wise mean of `vectors`, summed in the order given (so the result is reproducible).
public func mean(_ vectors: [ParameterVector]) -> ParameterVector {
    precondition(!vectors.isEmpty, "mean of no vectors")
    var running = RunningMean()
    for v in vectors { running.add(v) }
    return running.mean
}

/// `mean` fed one vector at a time: the same sum in the same order, so the same bits.
///
/// Why: the coordinator sums an iteration's updates as they arrive in slot order instead of holding them all until
/// the last one (meta-batch × θ bytes: 256 MB at θ of 1M floats and meta-batch 64).
public struct RunningMean: Sendable {
    /// Vectors added so far.
    public private(set) var count = 0
    private var sum: ParameterVector?

    public init() {}

    /// Adds `v` to the sum (every vector must have the first one's size).
    public mutating func add(_ v: ParameterVector) {
        if sum == nil { sum = ParameterVector(zeros: v.count) }
        precondition(v.count == sum!.count, "mean: sizes differ (\(v.count) vs \(sum!.count))")
        axpy(1, v, &sum!)
        count += 1
    }

    /// The mean of the vectors added (at least one).
    public var mean: ParameterVector {
        precondition(count > 0, "mean of no vectors")
        var m = sum!
        scale(&m, by: 1 / Float(count))
        return m
    }
}

/// Σ aᵢ·bᵢ, accumulated in Double.
public func dot(_ a: ParameterVector, _ b: ParameterVector) -> Double {
    precondition(a.count == b.count, "dot: sizes differ (\(a.count) vs \(b.count))")
    var s = 0.0
    for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
    return s
}

/// The Euclidean norm, accumulated in Double.
public func norm(_ a: ParameterVector) -> Double { dot(a, a).squareRoot() }
