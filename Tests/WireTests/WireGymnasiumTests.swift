import Environments
import MetaLearning
import NeuralNet
import Testing
@testable import Wire

/// Gymnasium tasks on the wire (protocol 10): every value kind round-trips, and a peer's bad task is refused by
/// the decoder, before any server sees it.
@Suite struct WireGymnasiumTests {
    static func assignment(_ task: GymnasiumTask) -> Message {
        var a = WireCodecTests.assignment
        a.task = .gymnasium(task)
        return .assignment(a)
    }

    @Test func gymnasiumTasksRoundTripWithEveryValueKind() throws {
        let tasks = [
            GymnasiumTask(environmentID: "LunarLander-v3", kwargs: ["continuous": .bool(false), "gravity": .double(-3.75),
                                                                     "render_mode": .string("rgb_array")],
                          attributes: ["force_mag": .double(7.5), "steps": .int(-12)], seed: UInt64.max, maxEpisodeSteps: 400),
            GymnasiumTask(entryPoint: "my_envs.sub:make", kwargs: ["goal_x": .int(3)], seed: 0),
            // The same name as a keyword argument and as an attribute is two parameters.
            GymnasiumTask(environmentID: "CartPole-v1", kwargs: ["x": .int(1)], attributes: ["x": .double(2)], seed: 5),
        ]
        for task in tasks {
            let message = Self.assignment(task)
            #expect(try WireCodec.decode(WireCodec.encode(message)) == message)
        }
    }

    @Test func badGymnasiumTasksAreRefused() {
        // Neither or both of id and entry point.
        WireCodecTests.expectRejected(WireCodec.encode(Self.assignment(GymnasiumTask(seed: 1)))) { "\($0)".contains("exactly one") }
        WireCodecTests.expectRejected(WireCodec.encode(Self.assignment(GymnasiumTask(environmentID: "A-v0", entryPoint: "m:f")))) {
            "\($0)".contains("exactly one")
        }
        // An entry point that is not module:function.
        WireCodecTests.expectRejected(WireCodec.encode(Self.assignment(GymnasiumTask(entryPoint: "os.system")))) { "\($0)".contains("package.module:function") }
        // Too many parameters, counted before they are read.
        let many = Dictionary(uniqueKeysWithValues: (0...GymnasiumTask.maxValues).map { ("k\($0)", GymValue.int(Int64($0))) })
        WireCodecTests.expectRejected(WireCodec.encode(Self.assignment(GymnasiumTask(environmentID: "A-v0", kwargs: many)))) {
            if case .tooLarge = $0 { return true } else { return false }
        }
        // A text longer than the bound.
        let long = String(repeating: "a", count: GymnasiumTask.maxTextBytes + 1)
        WireCodecTests.expectRejected(WireCodec.encode(Self.assignment(GymnasiumTask(environmentID: long)))) {
            if case .tooLarge = $0 { return true } else { return false }
        }
        // A non-finite value.
        WireCodecTests.expectRejected(WireCodec.encode(Self.assignment(GymnasiumTask(environmentID: "A-v0", kwargs: ["g": .double(.nan)])))) {
            "\($0)".contains("g")
        }
    }

    @Test func aNameGivenTwiceIsRefused() {
        // Two parameters of one name and kind cannot come from a dictionary: splice a second copy of the only one in.
        let one = WireCodec.encode(Self.assignment(GymnasiumTask(environmentID: "A-v0", kwargs: ["g": .int(1)])))
        let twice = WireCodec.encode(Self.assignment(GymnasiumTask(environmentID: "A-v0", kwargs: ["g": .int(1), "h": .int(1)])))
        // Rename h to g in the bytes: same length, so every enclosing length stays right.
        guard let at = (0..<(twice.count - 1)).first(where: { twice[$0] == 0x0A && twice[$0 + 1] == 1 && twice[$0 + 2] == UInt8(ascii: "h") }) else {
            Issue.record("no name field for h in \(one.count)-byte message"); return
        }
        var spliced = twice
        spliced[at + 2] = UInt8(ascii: "g")
        WireCodecTests.expectRejected(spliced) { "\($0)".contains("given twice") }
    }

    @Test func aHellosEnvironmentIdentityRoundTrips() throws {
        let report = NumericsReport(kernel: "avx2-fma", fingerprint: "0123456789abcdef", portableKernel: "avx",
                                    portableFingerprint: "fedcba9876543210", cpu: "AMD EPYC",
                                    environment: "00000000000000aa (python 3.11.7, gymnasium 1.4.0, numpy 2.4.6)")
        let hello = Message.hello(Hello(host: "h", cores: 2, threads: 1, numerics: report))
        #expect(try WireCodec.decode(WireCodec.encode(hello)) == hello)
        var none = report
        none.environment = "none"
        #expect(try WireCodec.decode(WireCodec.encode(.hello(Hello(host: "h", cores: 2, threads: 1, numerics: none)))) ==
                .hello(Hello(host: "h", cores: 2, threads: 1, numerics: none)))
    }

    @Test func aGymnasiumRunsFingerprintSurvivesItsCheckpoint() throws {
        let settings = MetaSettings()
        let state = MetaState(theta: ParameterVector([1, 2, 3]), settings: settings)
        for fingerprint in ["0123456789abcdef", "0123456789abcdef+env 00000000000000aa (python 3.11.7, gymnasium 1.4.0, numpy 2.4.6)"] {
            let record = CheckpointRecord(runID: "r-1", algorithm: .reptile, runSeed: 9, configHash: "abc", state: state, createdUnixMs: 5,
                                          numerics: RunNumerics(policy: .strict, fingerprint: fingerprint, kernel: "avx2-fma", cpu: "cpu"))
            #expect(try CheckpointCodec.decode(CheckpointCodec.encode(record), settings: settings) == record)
        }
        for bad in ["0123456789abcdeg+env x", "0123456789abcdef+env ", "0123+env x"] {
            let record = CheckpointRecord(runID: "r-1", algorithm: .reptile, runSeed: 9, configHash: "abc", state: state, createdUnixMs: 5,
                                          numerics: RunNumerics(policy: .strict, fingerprint: bad, kernel: "avx2-fma", cpu: "cpu"))
            #expect(throws: WireError.self, "\(bad)") { try CheckpointCodec.decode(CheckpointCodec.encode(record), settings: settings) }
        }
    }

    @Test func theMakeRequestIsSortedJSONOfPlainValues() {
        let task = GymnasiumTask(environmentID: "CartPole-v1", kwargs: ["b": .bool(true), "a": .string("x\"y")],
                                 attributes: ["gravity": .double(12), "length": .double(0.7)], seed: 9, maxEpisodeSteps: 50)
        #expect(task.json == #"{"id":"CartPole-v1","kwargs":{"a":"x\"y","b":true},"attributes":{"gravity":12.0,"length":0.7},"seed":9,"max_episode_steps":50}"#)
    }
}
