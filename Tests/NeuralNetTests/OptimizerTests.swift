import NeuralNet
import Testing

@Suite struct OptimizerTests {
    /// Adam's first steps computed by hand from torch.optim.Adam's formulas.
    @Test func adamMatchesTheReferenceFormula() {
        var opt = Optimizer(kind: .adam, parameterCount: 11, learningRate: 0.1)
        var theta = ParameterVector((0..<11).map { Float($0) * 0.5 - 2 })
        var m = [Double](repeating: 0, count: 11), v = m
        var expected = theta.values.map(Double.init)
        for step in 1...3 {
            let g = ParameterVector((0..<11).map { Float($0 % 3) - 1 + Float(step) * 0.25 })
            opt.apply(gradient: g, to: &theta)
            for i in 0..<11 {
                let gi = Double(g[i])
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                let mhat = m[i] / (1 - pow(0.9, Double(step))), vhat = v[i] / (1 - pow(0.999, Double(step)))
                expected[i] -= 0.1 * mhat / (vhat.squareRoot() + 1e-8)
            }
        }
        for i in 0..<11 { #expect(abs(Double(theta[i]) - expected[i]) < 1e-5, "θ[\(i)]") }
        #expect(opt.step == 3)
    }

    @Test func sgdStepsAgainstTheGradient() {
        var opt = Optimizer(kind: .sgd, parameterCount: 3, learningRate: 0.5)
        var theta = ParameterVector([1, 2, 3])
        opt.apply(gradient: ParameterVector([2, -2, 0]), to: &theta)
        #expect(theta == ParameterVector([0, 3, 3]))
    }

    @Test func clippingBoundsTheNormAndKeepsTheDirection() {
        var g: [Float] = [3, 4, 0]
        let before = g.withUnsafeMutableBufferPointer { clipGradientNorm($0.baseAddress!, count: 3, maxNorm: 1) }
        #expect(before == 5)
        #expect(abs(g[0] - 0.6) < 1e-5 && abs(g[1] - 0.8) < 1e-5 && g[2] == 0)
        var small: [Float] = [0.1, 0.1]
        small.withUnsafeMutableBufferPointer { _ = clipGradientNorm($0.baseAddress!, count: 2, maxNorm: 1) }
        #expect(small == [0.1, 0.1])
    }
}

import Foundation
