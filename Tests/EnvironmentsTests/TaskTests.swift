@testable import Environments
import NeuralNet
import Testing

@Suite struct TaskTests {
    @Test func goalNavigationRewardsMinusDistanceAndTruncatesAtTheHorizon() throws {
        var env = try GoalNavigation2D(GoalNavigationParameters(goalX: 0.3, goalY: 0, directions: 4, stepSize: 0.1, horizon: 3))
        var rng = SeededRNG(seed: 0)
        env.reset(using: &rng)
        #expect(env.observation == [0, 0])
        let first = env.step(0)  // +x
        #expect(abs(first.reward - -0.2) < 1e-12 && !first.terminated && !first.truncated)
        #expect(env.observation == [0.1, 0])
        _ = env.step(2)  // +y
        let last = env.step(1)  // −x
        #expect(last.truncated && !last.terminated)
        #expect(abs(last.reward - -(0.09 + 0.01).squareRoot()) < 1e-12)
    }

    @Test func goalNavigationDiagonalMovesHaveTheStepLength() throws {
        var env = try GoalNavigation2D(GoalNavigationParameters(goalX: 0, goalY: 0, directions: 8))
        #expect(env.actionCount == 8)
        try env.setState([0, 0])
        for action in 0..<8 {
            try env.setState([0, 0])
            _ = env.step(action)
            let s = env.state
            #expect(abs((s[0] * s[0] + s[1] * s[1]).squareRoot() - 0.1) < 1e-12, "action \(action)")
        }
    }

    @Test func sparseGoalNavigationPaysOneInsideTheRadiusStaysAndTerminates() throws {
        let p = GoalNavigationParameters(goalX: 0.3, goalY: 0, directions: 4, stepSize: 0.1, horizon: 10, reward: .sparse,
                                         successRadius: 0.15, stayAction: true)
        var env = try GoalNavigation2D(p)
        #expect(env.actionCount == 5)
        var rng = SeededRNG(seed: 0)
        env.reset(using: &rng)
        #expect(env.step(0).reward == 0)        // at 0.1: 0.2 away
        let inside = env.step(0)                 // at 0.2: 0.1 away, within 0.15
        #expect(inside.reward == 1 && !inside.terminated)
        let stay = env.step(4)                   // the stay action does not move
        #expect(stay.reward == 1 && env.state == [0.2, 0])
        var ending = p
        ending.terminateAtGoal = true
        var env2 = try GoalNavigation2D(ending)
        env2.reset(using: &rng)
        _ = env2.step(0)
        let done = env2.step(0)
        #expect(done.terminated && done.reward == 1)
        // Dense reward with termination: minus the distance, and the episode ends within the radius.
        ending.reward = .dense
        var env3 = try GoalNavigation2D(ending)
        env3.reset(using: &rng)
        _ = env3.step(0)
        let dense = env3.step(0)
        #expect(dense.terminated && abs(dense.reward - -0.1) < 1e-12)
        var bad = p
        bad.successRadius = 0
        #expect(throws: EnvironmentError.self) { try GoalNavigation2D(bad) }
    }

    /// A control rotation turns every move (whole quarter turns exactly), leaves the stay action still, and is encoded
    /// only when set, so the hash of a configuration without it is unchanged.
    @Test func controlRotationTurnsEveryMoveAndNotTheStay() throws {
        let plain = GoalNavigationParameters(goalX: 1, goalY: 0, directions: 8, stepSize: 0.1, stayAction: true)
        func move(_ p: GoalNavigationParameters, _ action: Int) throws -> [Double] {
            var env = try GoalNavigation2D(p)
            var rng = SeededRNG(seed: 0)
            env.reset(using: &rng)
            _ = env.step(action)
            return env.state
        }
        for degrees in [180.0, 90, -270, 45] {
            var turned = plain
            turned.controlRotationDegrees = degrees
            let (c, s) = (cos(degrees * .pi / 180), sin(degrees * .pi / 180))
            for action in 0..<8 {
                let (x, y) = (try move(plain, action)[0], try move(plain, action)[1])
                let got = try move(turned, action)
                #expect(abs(got[0] - (c * x - s * y)) < 1e-15 && abs(got[1] - (s * x + c * y)) < 1e-15, "\(degrees)° action \(action)")
                if degrees == 180 { #expect(got == [-x, -y]) }   // exact: a reversal, not a rounded turn
            }
            #expect(try move(turned, 8) == [0, 0])
        }
        var bad = plain
        bad.controlRotationDegrees = .infinity
        #expect(throws: EnvironmentError.self) { try GoalNavigation2D(bad) }
        var turned = plain
        turned.controlRotationDegrees = 180
        let text = String(decoding: try JSONEncoder().encode(turned), as: UTF8.self)
        let plainText = String(decoding: try JSONEncoder().encode(plain), as: UTF8.self)
        #expect(text.contains("controlRotationDegrees") && !plainText.contains("controlRotation"))
        #expect(try JSONDecoder().decode(GoalNavigationParameters.self, from: Data(text.utf8)) == turned)
    }

    /// A family of rotations draws one per task, both about equally often, after the goal; a family of one rotation
    /// draws nothing for it, so its tasks are the ones it had before rotations existed.
    @Test func familiesDrawControlRotationsAfterTheGoal() throws {
        var plain = TaskFamily.GoalNavigationRanges()
        plain.layout = .arc; plain.goalRadius = 1.5; plain.arcDegrees = ParameterRange(0, 30); plain.reward = .sparse
        var fixed = plain
        fixed.controlRotations = [90]
        var reversed = plain
        reversed.controlRotations = [0, 180]
        var a = SeededRNG(seed: 5), b = SeededRNG(seed: 5), c = SeededRNG(seed: 5), direct = SeededRNG(seed: 5)
        var counts: [Double: Int] = [:]
        for i in 0..<400 {
            guard case .goalNavigation(let p) = try TaskFamily.goalNavigation(plain).sample(using: &a),
                  case .goalNavigation(let f) = try TaskFamily.goalNavigation(fixed).sample(using: &b),
                  case .goalNavigation(let r) = try TaskFamily.goalNavigation(reversed).sample(using: &c) else { Issue.record("kind"); return }
            // The stream an arc family had before rotations existed: one draw per task, the goal's angle.
            let angle = direct.nextDouble(in: 0, 30) * Double.pi / 180
            #expect(p.goalX == 1.5 * cos(angle) && p.goalY == 1.5 * sin(angle), "task \(i)")
            #expect(p.goalX == f.goalX && p.goalY == f.goalY && p.controlRotationDegrees == 0 && f.controlRotationDegrees == 90)
            if i == 0 { #expect(r.goalX == p.goalX && r.goalY == p.goalY) }   // the goal comes first from the same stream
            counts[r.controlRotationDegrees, default: 0] += 1
            #expect(TaskFamily.goalNavigation(reversed).coordinates(of: .goalNavigation(r)).last == (r.controlRotationDegrees == 180 ? 1 : 0))
        }
        #expect(counts.keys.sorted() == [0, 180] && counts.values.allSatisfy { $0 > 160 })
        let hash = String(decoding: try JSONEncoder().encode(TaskFamily.goalNavigation(plain)), as: UTF8.self)
        #expect(!hash.contains("controlRotations"))
        for bad in [[Double](), [0, .nan]] {
            var family = plain
            family.controlRotations = bad
            #expect(throws: EnvironmentError.self) { try TaskFamily.goalNavigation(family).validate() }
        }
    }

    @Test func goalLayoutsPutGoalsOnTheArcAndAtTheCorners() throws {
        var arc = TaskFamily.GoalNavigationRanges()
        arc.layout = .arc; arc.goalRadius = 1.5; arc.arcDegrees = ParameterRange(0, 180); arc.reward = .sparse
        var corners = arc
        corners.layout = .corners
        var rng = SeededRNG(seed: 3)
        var seen = Set<[Double]>()
        for _ in 0..<200 {
            guard case .goalNavigation(let a) = try TaskFamily.goalNavigation(arc).sample(using: &rng) else { Issue.record("kind"); return }
            #expect(abs((a.goalX * a.goalX + a.goalY * a.goalY).squareRoot() - 1.5) < 1e-9 && a.goalY >= -1e-12)
            #expect(a.reward == .sparse)
            guard case .goalNavigation(let c) = try TaskFamily.goalNavigation(corners).sample(using: &rng) else { Issue.record("kind"); return }
            #expect(abs(c.goalX) == 1.5 && abs(c.goalY) == 1.5)
            seen.insert([c.goalX, c.goalY])
        }
        #expect(seen.count == 4)
        arc.arcDegrees = ParameterRange(90, 10)
        #expect(throws: EnvironmentError.self) { try TaskFamily.goalNavigation(arc).validate() }
    }

    @Test func tabularTasksWithSharedDynamicsShareTransitionsAndNotRewards() throws {
        var ranges = TaskFamily.TabularMDPRanges()
        ranges.states = 5; ranges.actions = 2
        ranges.sharedDynamics = TaskFamily.SharedDynamics(count: 2, seed: 42)
        var rng = SeededRNG(seed: 1)
        var tables: [UInt64: [Double]] = [:]
        var rewardTables = Set<[Double]>()
        for _ in 0..<20 {
            guard case .tabularMDP(let p) = try TaskFamily.tabularMDP(ranges).sample(using: &rng), let d = p.dynamicsSeed else {
                Issue.record("a task without shared dynamics"); return
            }
            let mdp = try TabularMDP(p)
            if let seen = tables[d] { #expect(seen == mdp.cumulative) } else { tables[d] = mdp.cumulative }
            rewardTables.insert(mdp.rewards)
        }
        #expect(tables.count == 2 && rewardTables.count == 20)
        #expect(Set(tables.keys) == [ranges.sharedDynamics!.tableSeed(0), ranges.sharedDynamics!.tableSeed(1)])
        // Without shared dynamics each task's transitions are its own, from its seed alone.
        let own = try TabularMDP(TabularMDPParameters(states: 5, actions: 2, seed: 7))
        let again = try TabularMDP(TabularMDPParameters(states: 5, actions: 2, seed: 7))
        #expect(own.cumulative == again.cumulative && own.cumulative != tables.values.first!)
        ranges.sharedDynamics?.count = 0
        #expect(throws: EnvironmentError.self) { try TaskFamily.tabularMDP(ranges).validate() }
    }

    @Test func denseGoalFamiliesEncodeAsBeforeTheSparseFields() throws {
        // The configuration hash is SHA-256 of this encoding: a dense family written before the sparse fields
        // existed must encode to the same bytes, or its runs' checkpoints would no longer match their configs.
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let dense = String(decoding: try encoder.encode(TaskFamily.goalNavigation(TaskFamily.GoalNavigationRanges())), as: UTF8.self)
        #expect(dense == #"{"goalNavigation":{"_0":{"directions":8,"goalRadius":0.5,"horizon":100,"stepSize":0.1}}}"#)
        var sparse = TaskFamily.GoalNavigationRanges()
        sparse.layout = .arc; sparse.reward = .sparse; sparse.stayAction = true
        let family = TaskFamily.goalNavigation(sparse)
        #expect(try JSONDecoder().decode(TaskFamily.self, from: try encoder.encode(family)) == family)
    }

    @Test func tabularMDPTablesComeFromTheSeedAndRowsAreDistributions() throws {
        let a = try TabularMDP(TabularMDPParameters(states: 6, actions: 3, horizon: 5, seed: 9))
        let b = try TabularMDP(TabularMDPParameters(states: 6, actions: 3, horizon: 5, seed: 9))
        let c = try TabularMDP(TabularMDPParameters(states: 6, actions: 3, horizon: 5, seed: 10))
        #expect(a.rewards == b.rewards && a.rewards != c.rewards)
        var env = a
        var rng = SeededRNG(seed: 4)
        env.reset(using: &rng)
        var visits = [Int](repeating: 0, count: 6)
        for episode in 0..<400 {
            env.reset(using: &rng)
            for t in 0..<5 {
                let obs = env.observation
                #expect(obs.reduce(0, +) == 1 && obs.count == 6)
                visits[obs.firstIndex(of: 1)!] += 1
                let out = env.step((episode + t) % 3)
                #expect(out.truncated == (t == 4))
            }
        }
        #expect(visits.allSatisfy { $0 > 0 })
    }

    @Test func episodesArePureFunctionsOfTheResetRNG() throws {
        for spec in TaskSpec.kindNames.compactMap(TaskSpec.defaultTask(kind:)) {
            func rollout() throws -> [Float] {
                var env = try spec.makeEnvironment()
                var rng = SeededRNG(seed: 17)
                var trace: [Float] = []
                env.reset(using: &rng)
                for t in 0..<60 {
                    let out = env.step(t % env.actionCount)
                    trace += env.observation + [Float(out.reward)]
                    if out.terminated || out.truncated { env.reset(using: &rng) }
                }
                return trace
            }
            #expect(try rollout() == rollout(), "\(spec.kindName)")
        }
    }

    @Test func invalidParametersAreClearErrors() {
        let cases: [(TaskSpec, String)] = [
            (.cartPole(CartPoleParameters(massCart: -1)), "masscart"),
            (.cartPole(CartPoleParameters(length: 0)), "length"),
            (.cartPole(CartPoleParameters(gravity: .nan)), "gravity"),
            (.acrobot(AcrobotParameters(linkMass2: 0)), "link_mass_2"),
            (.mountainCar(MountainCarParameters(force: -0.001)), "force"),
            (.goalNavigation(GoalNavigationParameters(goalX: 0, goalY: 0, directions: 5)), "directions"),
            (.goalNavigation(GoalNavigationParameters(goalX: .infinity, goalY: 0)), "goal_x"),
            (.tabularMDP(TabularMDPParameters(states: 0)), "states"),
        ]
        for (spec, name) in cases {
            do {
                _ = try spec.makeEnvironment()
                Issue.record("\(spec) was accepted")
            } catch let error as EnvironmentError {
                #expect("\(error)".contains("'\(name)'"), "\(error)")
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        #expect(throws: EnvironmentError.stateSize(task: "cartpole", expected: 4, got: 2)) {
            var env = try CartPole()
            try env.setState([1, 2])
        }
    }

    @Test func familiesSampleWithinTheirRangesAndRejectBadRanges() throws {
        var ranges = TaskFamily.CartPoleRanges()
        let family = TaskFamily.cartPole(ranges)
        try family.validate()
        var rng = SeededRNG(seed: 8)
        var seen = Set<Double>()
        for _ in 0..<200 {
            guard case .cartPole(let p) = try family.sample(using: &rng) else { Issue.record("wrong kind"); return }
            #expect(p.gravity >= 4.9 && p.gravity <= 19.6 && p.length >= 0.25 && p.length <= 1 && p.massCart == 1)
            seen.insert(p.gravity)
        }
        #expect(seen.count == 200)
        var again = SeededRNG(seed: 8), first = SeededRNG(seed: 8)
        #expect(try family.sample(using: &again) == family.sample(using: &first))

        ranges.massPole = ParameterRange(-0.1, 0.5)
        #expect(throws: EnvironmentError.self) { try TaskFamily.cartPole(ranges).validate() }
        ranges.massPole = ParameterRange(0.5, 0.1)
        #expect(throws: EnvironmentError.invalidRange(task: "cartpole", name: "masspole", lower: 0.5, upper: 0.1)) {
            try TaskFamily.cartPole(ranges).validate()
        }
        var mdp = TaskFamily.TabularMDPRanges()
        mdp.states = 0
        #expect(throws: EnvironmentError.self) { try TaskFamily.tabularMDP(mdp).validate() }
        var nav = TaskFamily.GoalNavigationRanges()
        try TaskFamily.goalNavigation(nav).validate()
        nav.goalRadius = -1
        #expect(throws: EnvironmentError.self) { try TaskFamily.goalNavigation(nav).validate() }
    }

    @Test func taskSpecsRoundTripThroughCodable() throws {
        let spec = TaskSpec.goalNavigation(GoalNavigationParameters(goalX: 0.25, goalY: -0.125))
        let data = try JSONEncoder().encode(spec)
        #expect(try JSONDecoder().decode(TaskSpec.self, from: data) == spec)
    }
}

import Foundation
