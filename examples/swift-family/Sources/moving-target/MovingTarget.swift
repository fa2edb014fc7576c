import Environments
import NeuralNet

/// A point on a line that must find a hidden target: the task family this example adds to metatrain.
///
/// Observation: the point's position in [−1, 1]. Actions: left, stay, right (steps of `stepSize`). Reward: minus the
/// distance to the task's target, every step; episodes last 50 steps. Each task hides its target elsewhere (the
/// family's `vary: {target: …}`), so a good initialisation is one that finds any target quickly.
struct MovingTarget: Environment {
    let target: Double
    let stepSize = 0.1
    var position = 0.0
    var elapsed = 0

    /// The task's environment from what metatrain drew for it: `kwargs["target"]`, a number.
    init(_ task: GymnasiumTask) throws {
        guard let value = task.kwargs["target"], case let .double(target) = value, (-1...1).contains(target) else {
            throw EnvironmentError.invalidFamily("moving_target needs a number 'target' in [-1, 1], got \(String(describing: task.kwargs["target"]))")
        }
        self.target = target
    }

    var observationSize: Int { 1 }
    var actionCount: Int { 3 }
    var maxEpisodeSteps: Int { 50 }
    var state: [Double] { [position] }

    mutating func reset(using rng: inout SeededRNG) {
        position = rng.nextDouble(in: -0.2, 0.2)
        elapsed = 0
    }

    mutating func setState(_ state: [Double]) throws {
        guard state.count == 1 else { throw EnvironmentError.stateSize(task: "moving_target", expected: 1, got: state.count) }
        position = state[0]
        elapsed = 0
    }

    mutating func step(_ action: Int) -> StepOutcome {
        position = min(max(position + Double(action - 1) * stepSize, -1), 1)
        elapsed += 1
        return StepOutcome(reward: -abs(position - target), terminated: false, truncated: elapsed >= maxEpisodeSteps)
    }

    func writeObservation(to buffer: UnsafeMutablePointer<Float>) { buffer[0] = Float(position) }
}
