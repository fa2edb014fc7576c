import NeuralNet

/// A fixed-capacity ring of transitions, one row each, sampled uniformly.
///
/// A row holds the whole transition — observation, next observation, reward, terminal (1 or 0) and action — so a sampled
/// transition is one or two cache lines, not one in each of five arrays, and is gathered with moves: in a CartPole inner
/// loop the old gather's `memmove` calls were 7% of the time (`perf`, issue 37).
public struct ReplayBuffer {
    public let capacity: Int
    public let observationSize: Int
    public private(set) var count = 0
    private var position = 0
    private var rows: [Float]
    /// Floats per row: 2 observations, reward, terminal, action (an action index is exact as a Float below 2²⁴).
    private var stride: Int { 2 * observationSize + 3 }

    public init(capacity: Int, observationSize: Int) {
        precondition(capacity > 0 && observationSize > 0, "replay buffer needs positive sizes")
        self.capacity = capacity
        self.observationSize = observationSize
        rows = [Float](repeating: 0, count: capacity * (2 * observationSize + 3))
    }

    /// Stores one transition, overwriting the oldest when full.
    public mutating func add(observation: UnsafePointer<Float>, action: Int, reward: Float,
                             nextObservation: UnsafePointer<Float>, terminal: Bool) {
        precondition(action >= 0 && action < 1 << 24, "action \(action) outside 0..<2^24")
        let n = observationSize, at = position * stride
        rows.withUnsafeMutableBufferPointer { p in
            let row = p.baseAddress! + at
            row.update(from: observation, count: n)
            (row + n).update(from: nextObservation, count: n)
            row[2 * n] = reward
            row[2 * n + 1] = terminal ? 1 : 0
            row[2 * n + 2] = Float(action)
        }
        position = (position + 1) % capacity
        count = min(count + 1, capacity)
    }

    /// Draws `batch.size` indices uniformly (with replacement) from `rng` and gathers them into `batch`.
    public func sample(into batch: inout Batch, using rng: inout SeededRNG) {
        precondition(count > 0, "sampling an empty replay buffer")
        let n = observationSize, stride = stride, count = count
        rows.withUnsafeBufferPointer { source in
            batch.observations.withUnsafeMutableBufferPointer { observations in
                batch.nextObservations.withUnsafeMutableBufferPointer { next in
                    batch.actions.withUnsafeMutableBufferPointer { actions in
                        batch.rewards.withUnsafeMutableBufferPointer { rewards in
                            batch.terminals.withUnsafeMutableBufferPointer { terminals in
                                for r in 0..<rewards.count {
                                    let row = source.baseAddress! + rng.nextInt(below: count) * stride
                                    for x in 0..<n {  // a few floats: moves, not a call to memmove
                                        observations[r * n + x] = row[x]
                                        next[r * n + x] = row[n + x]
                                    }
                                    rewards[r] = row[2 * n]
                                    terminals[r] = row[2 * n + 1]
                                    actions[r] = Int32(row[2 * n + 2])
                                }
                            }
                        }
                    }
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
