import DQN
import Environments
import NeuralNet

/// ES-MAML's slot (`meta.algorithm: es-maml`): one antithetic pair of perturbed inits, each adapted on the slot's
/// task and scored by its greedy returns along the way.
///
/// Why evolution strategies: what the meta-evaluation rewards is the return after b steps of DQN, a quantity with
/// no useful derivative through the inner loop (ε-greedy choices, replay sampling and target copies all depend on
/// θ discontinuously). ES estimates the gradient of its Gaussian smoothing from returns alone, so the outer loop
/// optimises the evaluation's own objective (Song et al., "ES-MAML", 2020). Both members of the pair adapt with the
/// same seed (the same episodes' randomness and minibatches where their choices agree), so their difference is the
/// perturbation's effect and less the inner loop's noise.
public func evolutionSlot(
    theta: ParameterVector, task: TaskSpec, settings: InnerLoopSettings, evolution: EvolutionSettings, seed: UInt64,
    progress: ((Int) -> Void)? = nil
) throws -> SlotOutcome {
    var statistics = SlotStatistics()
    let estimate = try evolutionGradient(theta: theta, sigma: evolution.sigma, seed: seed) { member, sign in
        let scored = try adaptationFitness(member, task: task, settings: settings, evolution: evolution, seed: seed,
                                           progress: progress.map { report in { report($0 + (sign > 0 ? 0 : settings.budget)) } })
        statistics.episodes += scored.adaptation.episodeReturns.count
        statistics.environmentSteps += scored.adaptation.environmentSteps
        statistics.gradientUpdates += scored.adaptation.gradientUpdates
        statistics.seconds += scored.adaptation.seconds
        return scored.fitness
    }
    // The slot's "return" is the pair's mean fitness, the quantity the outer loop raises.
    statistics.meanReturn = (estimate.plus + estimate.minus) / 2
    return SlotOutcome(update: estimate.gradient, statistics: statistics)
}

/// The antithetic evolution-strategies estimate of −∇F at θ from one perturbation pair.
///
/// ε is drawn from the seed's perturbation stream; g = −(F(θ + σε) − F(θ − σε)) / (2σ) · ε, whose expectation over
/// ε is −∇ of F smoothed by N(0, σ²I) (a loss gradient, so the coordinator's optimiser descends it as it does
/// FOMAML's). `fitness` receives each perturbed θ and the sign of its perturbation (+1 first, then −1).
public func evolutionGradient(
    theta: ParameterVector, sigma: Float, seed: UInt64,
    fitness: (ParameterVector, Float) throws -> Double
) rethrows -> (gradient: ParameterVector, plus: Double, minus: Double) {
    let epsilon = perturbation(count: theta.count, seed: seed)
    var plus = theta, minus = theta
    axpy(sigma, epsilon, &plus)
    axpy(-sigma, epsilon, &minus)
    let fPlus = try fitness(plus, 1), fMinus = try fitness(minus, -1)
    var gradient = epsilon
    scale(&gradient, by: Float(-(fPlus - fMinus) / (2 * Double(sigma))))
    return (gradient, fPlus, fMinus)
}

/// The perturbation ε of a slot: `count` independent draws of zero mean and unit variance from the seed's
/// perturbation stream.
///
/// Each draw is an Irwin–Hall sum, (u₁ + u₂ + u₃ + u₄ − 2)·√3 of four uniforms, not a Box–Muller normal: it needs
/// only additions and multiplications, which IEEE 754 rounds the same everywhere, whereas log and cos come from
/// each machine's libm and could differ in the last bit between two workers' C libraries. ES needs a symmetric
/// perturbation of unit variance, not an exact Gaussian.
public func perturbation(count: Int, seed: UInt64) -> ParameterVector {
    var rng = SeededRNG(seed: deriveSeed(seed, iteration: 0, slot: 0, purpose: .perturbation))
    let root3: Float = 1.7320508
    var values = [Float](repeating: 0, count: count)
    for i in 0..<count {
        let sum = rng.nextFloat() + rng.nextFloat() + rng.nextFloat() + rng.nextFloat()
        values[i] = (sum - 2) * root3
    }
    return ParameterVector(values)
}

/// An adaptation and its ES-MAML fitness: the mean greedy return of the adapting network at steps
/// 0, every, 2·every, … ≤ budget, each over `fitnessEpisodes` episodes from the same start states.
///
/// Why this fitness: the evaluation scores an init by how soon its adaptation curve reaches a target; the mean of
/// the curve is the smooth version of that (it rises whenever the curve rises earlier).
public func adaptationFitness(
    _ initial: ParameterVector, task: TaskSpec, settings: InnerLoopSettings, evolution: EvolutionSettings, seed: UInt64,
    progress: ((Int) -> Void)? = nil
) throws -> (fitness: Double, adaptation: Adaptation) {
    var points: [ParameterVector] = []
    let adaptation = try adapt(initial: initial, task: task, budget: settings.budget, seed: seed, config: settings.dqn,
                               progress: progress.map { report in { step, _ in report(step) } },
                               snapshots: Snapshots(every: evolution.fitnessEvery) { _, parameters in points.append(parameters) })
    var total = 0.0
    for parameters in points {
        // Every point is scored from the same start states (the slot's seed; `evaluateGreedy` draws them from its
        // evaluation stream, apart from the adaptation's), so the curve moves only with the network.
        let returns = try evaluateGreedy(parameters, task: task, episodes: evolution.fitnessEpisodes, seed: seed,
                                         config: settings.dqn)
        total += returns.reduce(0, +) / Double(returns.count)
    }
    return (total / Double(points.count), adaptation)
}
