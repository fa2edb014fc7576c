import NeuralNet
import Testing

/// Gradients and Hessian-vector products of the Q-regression loss against central finite
/// differences of an independent Double-precision reference (plain loops, no GEMM).
@Suite struct GradientCheckTests {
    /// A batch of inputs, chosen actions and fixed targets for one network shape.
    struct Problem {
        let mlp: MLP
        let parameters: ParameterVector
        let inputs: [Float]
        let actions: [Int32]
        let targets: [Float]

        init(sizes: [Int], batch: Int, seed: UInt64, targetScale: Float, backend: GEMMBackend) throws {
            mlp = try MLP(sizes: sizes, backend: backend)
            var rng = SeededRNG(seed: seed)
            parameters = mlp.initialParameters(using: &rng)
            inputs = (0..<(batch * sizes[0])).map { _ in Float(rng.nextGaussian()) }
            actions = (0..<batch).map { _ in Int32(rng.nextInt(below: sizes.last!)) }
            // Spread targets so the Huber loss has rows on both sides of its kink.
            targets = (0..<batch).map { _ in Float(rng.nextGaussian()) * targetScale }
        }

        /// The loss in Double from first principles: y = x·W + b per layer, ReLU between.
        func referenceLoss(_ theta: [Double], loss: RegressionLoss) -> Double {
            let batch = actions.count
            var total = 0.0
            for r in 0..<batch {
                var x = (0..<mlp.inputSize).map { Double(inputs[r * mlp.inputSize + $0]) }
                for (index, layer) in mlp.layers.enumerated() {
                    var y = [Double](repeating: 0, count: layer.outputs)
                    for o in 0..<layer.outputs {
                        var s = theta[layer.biasOffset + o]
                        for i in 0..<layer.inputs { s += x[i] * theta[layer.weightOffset + i * layer.outputs + o] }
                        y[o] = index < mlp.layers.count - 1 ? max(s, 0) : s
                    }
                    x = y
                }
                let e = x[Int(actions[r])] - Double(targets[r])
                switch loss {
                case .huber: total += abs(e) < 1 ? 0.5 * e * e : abs(e) - 0.5
                case .mse: total += e * e
                }
            }
            return total / Double(batch)
        }
    }

    static let shapes: [[Int]] = [[3, 5, 2], [4, 8, 6, 3], [2, 7, 7, 7, 4], [6, 16, 1]]

    @Test(arguments: shapes, RegressionLoss.allCases)
    func gradientMatchesFiniteDifferences(sizes: [Int], loss: RegressionLoss) throws {
        for backend in GEMMBackend.allCases where backend.isSupported {
            let p = try Problem(sizes: sizes, batch: 9, seed: 7, targetScale: 2, backend: backend)
            let ws = MLPWorkspace(mlp: p.mlp, capacity: 9)
            var gradient = ParameterVector(zeros: 0)
            let value = p.mlp.lossAndGradient(p.parameters, inputs: p.inputs, actions: p.actions, targets: p.targets,
                                             loss: loss, workspace: ws, gradient: &gradient)
            let theta = p.parameters.values.map(Double.init)
            #expect(abs(Double(value) - p.referenceLoss(theta, loss: loss)) < 1e-5)
            let h = 1e-6
            for i in 0..<theta.count {
                var plus = theta, minus = theta
                plus[i] += h; minus[i] -= h
                let numeric = (p.referenceLoss(plus, loss: loss) - p.referenceLoss(minus, loss: loss)) / (2 * h)
                #expect(abs(Double(gradient[i]) - numeric) <= 2e-4 + 1e-3 * abs(numeric),
                        "\(backend) \(sizes) \(loss) θ[\(i)]: analytic \(gradient[i]) vs numeric \(numeric)")
            }
        }
    }

    @Test(arguments: shapes, RegressionLoss.allCases)
    func hessianVectorProductMatchesFiniteDifferences(sizes: [Int], loss: RegressionLoss) throws {
        for backend in GEMMBackend.allCases where backend.isSupported {
            let p = try Problem(sizes: sizes, batch: 7, seed: 11, targetScale: 2, backend: backend)
            let ws = MLPWorkspace(mlp: p.mlp, capacity: 7)
            var rng = SeededRNG(seed: 99)
            let v = ParameterVector((0..<p.mlp.parameterCount).map { _ in Float(rng.nextGaussian()) })
            let hv = p.mlp.hessianVectorProduct(p.parameters, direction: v, inputs: p.inputs, actions: p.actions,
                                                targets: p.targets, loss: loss, workspace: ws)
            // eᵢᵀ·H·v as the mixed second difference of the Double reference loss.
            let theta = p.parameters.values.map(Double.init), vd = v.values.map(Double.init)
            let h = 1e-4
            func l(_ a: Double, _ i: Int, _ b: Double) -> Double {
                var t = theta
                for j in 0..<t.count { t[j] += b * vd[j] }
                t[i] += a
                return p.referenceLoss(t, loss: loss)
            }
            var scale = 0.0
            var numeric = [Double](repeating: 0, count: theta.count)
            for i in 0..<theta.count {
                numeric[i] = (l(h, i, h) - l(h, i, -h) - l(-h, i, h) + l(-h, i, -h)) / (4 * h * h)
                scale = max(scale, abs(numeric[i]))
            }
            #expect(scale > 1e-3, "the check needs a non-trivial Hessian")
            for i in 0..<theta.count {
                #expect(abs(Double(hv[i]) - numeric[i]) <= 1e-3 * max(scale, 1) + 1e-3 * abs(numeric[i]),
                        "\(backend) \(sizes) \(loss) (Hv)[\(i)]: R-operator \(hv[i]) vs numeric \(numeric[i])")
            }
        }
    }

    @Test func hessianVectorProductIsLinearAndSymmetric() throws {
        let p = try Problem(sizes: [4, 16, 16, 2], batch: 32, seed: 5, targetScale: 0.5, backend: .default)
        let ws = MLPWorkspace(mlp: p.mlp, capacity: 32)
        var rng = SeededRNG(seed: 3)
        func random() -> ParameterVector { ParameterVector((0..<p.mlp.parameterCount).map { _ in Float(rng.nextGaussian()) }) }
        let u = random(), w = random()
        func hvp(_ d: ParameterVector) -> ParameterVector {
            p.mlp.hessianVectorProduct(p.parameters, direction: d, inputs: p.inputs, actions: p.actions,
                                       targets: p.targets, loss: .mse, workspace: ws)
        }
        // uᵀHw = wᵀHu: a missing cross term between layers breaks this.
        let a = dot(u, hvp(w)), b = dot(w, hvp(u))
        #expect(abs(a - b) <= 1e-4 * max(abs(a), 1))
        var sum = u
        axpy(2, w, &sum)
        let lhs = hvp(sum), rhs = hvp(u)
        var expected = rhs
        axpy(2, hvp(w), &expected)
        #expect(norm(difference(lhs, expected)) <= 1e-4 * max(norm(expected), 1))
    }

    @Test func backendsAgreeOnLargerShapes() throws {
        for (sizes, batch) in [([4, 64, 64, 2], 64), ([4, 256, 256, 2], 33), ([5, 37, 19, 3], 17)] {
            var grads: [ParameterVector] = []
            for backend in GEMMBackend.allCases where backend.isSupported {
                let p = try Problem(sizes: sizes, batch: batch, seed: 21, targetScale: 1, backend: backend)
                let ws = MLPWorkspace(mlp: p.mlp, capacity: batch)
                var g = ParameterVector(zeros: 0)
                _ = p.mlp.lossAndGradient(p.parameters, inputs: p.inputs, actions: p.actions, targets: p.targets,
                                          loss: .huber, workspace: ws, gradient: &g)
                grads.append(g)
            }
            #expect(norm(difference(grads[0], grads[1])) <= 1e-5 * max(norm(grads[0]), 1e-3), "\(sizes)")
        }
    }
}
