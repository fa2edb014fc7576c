import NeuralNet

/// A fixed-capacity ring of transitions stored as structure-of-arrays, sampled uniformly.
///
/// Each field is one contiguous array, so a sampled batch is gathered row by row straight into
/// the network's input layout.
public struct ReplayBuffer {
    public let capacity: Int
    public let observationSize: Int
    public private(set) var count = 0
    private var position = 0
    private(set) var observations: [Float]
    private(set) var nextObservations: [Float]
    private(set) var actions: [Int32]
    private(set) var rewards: [Float]
    /// 1 where the transition ended in a terminal state (no bootstrap), else 0.
    private(set) var terminals: [Float]

    public init(capacity: Int, observationSize: Int) {
        precondition(capacity > 0 && observationSize > 0, "replay buffer needs positive sizes")
        self.capacity = capacity
        self.observationSize = observationSize
        observations = [Float](repeating: 0, count: capacity * observationSize)
        nextObservations = observations
        actions = [Int32](repeating: 0, count: capacity)
        rewards = [Float](repeating: 0, count: capacity)
        terminals = rewards
    }

    /// Stores one transition, overwriting the oldest when full.
    public mutating func add(observation: UnsafePointer<Float>, action: Int, reward: Float,
                             nextObservation: UnsafePointer<Float>, terminal: Bool) {
        let n = observationSize, at = position * n
        observations.withUnsafeMutableBufferPointer { ($0.baseAddress! + at).update(from: observation, count: n) }
        nextObservations.withUnsafeMutableBufferPointer { ($0.baseAddress! + at).update(from: nextObservation, count: n) }
        actions[position] = Int32(action)
        rewards[position] = reward
        terminals[position] = terminal ? 1 : 0
        position = (position + 1) % capacity
        count = min(count + 1, capacity)
    }

    /// Draws `batch.size` indices uniformly (with replacement) from `rng` and gathers them into `batch`.
    public func sample(into batch: inout Batch, using rng: inout SeededRNG) {
        precondition(count > 0, "sampling an empty replay buffer")
        let n = observationSize
        observations.withUnsafeBufferPointer { obs in
            nextObservations.withUnsafeBufferPointer { next in
                for r in 0..<batch.size {
                    let i = rng.nextInt(below: count)
                    batch.observations.withUnsafeMutableBufferPointer {
                        ($0.baseAddress! + r * n).update(from: obs.baseAddress! + i * n, count: n)
                    }
                    batch.nextObservations.withUnsafeMutableBufferPointer {
                        ($0.baseAddress! + r * n).update(from: next.baseAddress! + i * n, count: n)
                    }
                    batch.actions[r] = actions[i]
                    batch.rewards[r] = rewards[i]
                    batch.terminals[r] = terminals[i]
                }
            }
        }
    }

    /// A sampled minibatch, preallocated once and refilled by `sample(into:using:)`.
    public struct Batch {
        public let size: Int
        public var observations: [Float]
        public var nextObservations: [Float]
        public var actions: [Int32]
        public var rewards: [Float]
        public var terminals: [Float]

        public init(size: Int, observationSize: Int) {
            self.size = size
            observations = [Float](repeating: 0, count: size * observationSize)
            nextObservations = observations
            actions = [Int32](repeating: 0, count: size)
            rewards = [Float](repeating: 0, count: size)
            terminals = rewards
        }
    }
}
