import DQN
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Testing
@testable import Wire

@Suite struct WireCodecTests {
    static let assignment = Assignment(
        runID: "run-abc", key: SlotKey(iteration: 3, slot: 2, attempt: 1),
        task: .cartPole(CartPoleParameters(gravity: 12.5, massPole: 0.2, length: 0.7)),
        innerLoop: InnerLoopSettings(budget: 1234, querySteps: 77), algorithm: .fomaml, seed: 0xDEAD_BEEF_0123,
        parameterVersion: 3, parameters: ParameterVector([1.5, -2.25, 0, 3.0e-7]))

    static let result = SlotResult(
        runID: "run-abc", key: SlotKey(iteration: 3, slot: 2, attempt: 1), parameterVersion: 3,
        update: ParameterVector([0.5, -0.125, 1e-3]),
        statistics: SlotStatistics(meanReturn: 42.5, episodes: 7, meanLoss: 0.25, environmentSteps: 1234,
                                   gradientUpdates: 1000, seconds: 0.5, queryLoss: 0.125))

    @Test func everyMessageRoundTrips() throws {
        var dqn = DQNConfig.cartPoleSolver
        dqn.hiddenLayers = [32, 16, 8]
        dqn.loss = .mse
        dqn.optimizer = .sgd
        var withoutParameters = Self.assignment
        withoutParameters.parameters = nil
        withoutParameters.innerLoop.dqn = dqn
        withoutParameters.task = .tabularMDP(TabularMDPParameters(states: 6, actions: 3, horizon: 9, seed: 1 << 60))
        let messages: [Message] = [
            .hello(Hello(host: "node-7", cores: 16, threads: 4, previousWorkerID: "c1-w3")),
            .welcome(Welcome(runID: "run-abc", workerID: "c2-w1", heartbeatIntervalMs: 500, liveness: 6, numerics: .portable)),
            .heartbeat(envSteps: 0), .heartbeat(envSteps: 123_456_789_012), .assignment(Self.assignment), .assignment(withoutParameters), .result(Self.result),
            .error(ErrorReply(code: .parametersMissing, message: "θ 3 not cached", key: SlotKey(iteration: 3, slot: 2, attempt: 1))),
            // The first slot of a run is a key like any other: a failure of it must not read as a key-less error.
            .error(ErrorReply(code: .diverged, message: "update value 2e6 at index 16 exceeds ±1000000", key: SlotKey(iteration: 0, slot: 0, attempt: 0))),
            .error(ErrorReply(code: .unknownWorker, message: "say hello")), .goodbye(reason: "done"), .goodbye(reason: "restarting", resumable: true),
            .statusRequest, .statusReply(json: "{\"iteration\": 3, \"workers\": [" + String(repeating: "{\"id\": \"c1-w9\"}, ", count: 400) + "{}]}"),
        ] + (TaskSpec.kindNames.compactMap(TaskSpec.defaultTask(kind:))
             + [.goalNavigation(GoalNavigationParameters(goalX: -1.5, goalY: 0.25, directions: 4, stepSize: 0.05, horizon: 150,
                                                         reward: .sparse, successRadius: 0.125, stayAction: true, terminateAtGoal: true)),
                .goalNavigation(GoalNavigationParameters(goalX: 1.5, goalY: 0.4, reward: .sparse, stayAction: true,
                                                         controlRotationDegrees: 180)),
                .tabularMDP(TabularMDPParameters(states: 4, actions: 2, horizon: 7, seed: 3, dynamicsSeed: 0))]).map { task in
            var a = Self.assignment
            a.task = task
            return .assignment(a)
        }
        for message in messages {
            #expect(try WireCodec.decode(WireCodec.encode(message)) == message, "\(message.kind)")
            // The bytes a worker sends without a copy are the same bytes, and decode where they lie.
            let owned = WireCodec.encodeMessage(message)
            #expect(owned.bytes == WireCodec.encode(message), "\(message.kind)")
            #expect(try owned.withUnsafeBytes { try WireCodec.decode($0) } == message, "\(message.kind)")
        }
    }

    @Test func encodedMessagesCompareByTheirBytes() {
        #expect(EncodedMessage([1, 2, 3]) == EncodedMessage([1, 2, 3]))
        #expect(EncodedMessage([1, 2, 3]) != EncodedMessage([1, 2, 4]))
        #expect(EncodedMessage([1, 2]) != EncodedMessage([1, 2, 3]))
        #expect(EncodedMessage([]) == EncodedMessage([]) && EncodedMessage([]).bytes.isEmpty)
    }

    @Test func contextWindowRoundTripsAndIsBounded() throws {
        var a = Self.assignment
        a.innerLoop.dqn.contextWindow = 4
        #expect(try WireCodec.decode(WireCodec.encode(.assignment(a))) == .assignment(a))
        a.innerLoop.dqn.contextWindow = 65
        #expect(throws: WireError.self) { try WireCodec.decode(WireCodec.encode(.assignment(a))) }
    }

    @Test func teacherQueryRoundTripsAndIsBounded() throws {
        var a = Self.assignment
        for match in TeacherMatch.allCases {
            a.innerLoop.teacher = TeacherQuery(steps: 1_500, match: match)
            #expect(try WireCodec.decode(WireCodec.encode(.assignment(a))) == .assignment(a))
        }
        a.innerLoop.teacher = TeacherQuery(steps: WireLimits().maxBudget + 1)
        #expect(throws: WireError.self) { try WireCodec.decode(WireCodec.encode(.assignment(a))) }
        do { _ = try WireCodec.decode(WireCodec.encode(.assignment(a))) } catch { #expect("\(error)".contains("teacher_steps"), "\(error)") }
    }

    /// ES-MAML's settings cross the wire with its algorithm and only with it; a partial or misplaced set is refused.
    @Test func evolutionSettingsRoundTripOnlyWithEsMAML() throws {
        var a = Self.assignment
        a.algorithm = .esMAML
        a.innerLoop.evolution = EvolutionSettings(sigma: 0.03, fitnessEvery: 400, fitnessEpisodes: 2)
        #expect(try WireCodec.decode(WireCodec.encode(.assignment(a))) == .assignment(a))
        var missing = a
        missing.innerLoop.evolution = nil
        do { _ = try WireCodec.decode(WireCodec.encode(.assignment(missing))); Issue.record("accepted es-maml without its settings") }
        catch { #expect("\(error)".contains("es_sigma"), "\(error)") }
        var misplaced = a
        misplaced.algorithm = .reptile
        #expect(throws: WireError.self) { try WireCodec.decode(WireCodec.encode(.assignment(misplaced))) }
        var partial = a
        partial.innerLoop.evolution?.fitnessEpisodes = 0
        #expect(throws: WireError.self) { try WireCodec.decode(WireCodec.encode(.assignment(partial))) }
        var negative = a
        negative.innerLoop.evolution?.sigma = -0.1
        #expect(throws: WireError.self) { try WireCodec.decode(WireCodec.encode(.assignment(negative))) }
        var sparse = a
        sparse.innerLoop.evolution?.fitnessEvery = WireLimits().maxBudget + 1
        do { _ = try WireCodec.decode(WireCodec.encode(.assignment(sparse))); Issue.record("accepted an over-long fitness_every") }
        catch { #expect("\(error)".contains("es_fitness_every"), "\(error)") }
    }

    @Test func everyAlgorithmRoundTrips() throws {
        for algorithm in MetaAlgorithm.allCases {
            var a = Self.assignment
            a.algorithm = algorithm
            if algorithm == .esMAML { a.innerLoop.evolution = EvolutionSettings() }
            #expect(try WireCodec.decode(WireCodec.encode(.assignment(a))) == .assignment(a), "\(algorithm)")
        }
    }

    static var evalJob: AdaptationJob {
        var dqn = DQNConfig()
        dqn.hiddenLayers = [4]
        // CartPole 4 → 4 → 2: 30 parameters (the decoder checks θ fits the task's network).
        return AdaptationJob(initial: ParameterVector((0..<30).map { Float($0) / 8 - 2 }), task: .cartPole(CartPoleParameters(gravity: 11)), dqn: dqn,
                             budget: 300, every: 100, episodes: 3, seed: 1 << 62, scoringSeed: 17, returnFinal: true)
    }

    @Test func evalMessagesRoundTrip() throws {
        var library = Self.evalJob
        library.episodes = 0
        library.every = 0
        library.returnFinal = false
        let messages: [Message] = [
            .evalRequest(EvalRequest(requestID: "eval-1-b1-s1", jobs: [(0, Self.evalJob), (7, library)])),
            .evalJob(EvalJobMessage(key: EvalKey(request: 4, job: 7, attempt: 2), job: Self.evalJob)),
            .evalOutcome(EvalOutcome(key: EvalKey(request: 4, job: 7, attempt: 2),
                                     outcome: AdaptationOutcome(returns: [-3.5, 200, 1e-9, 0], final: ParameterVector([1, 2, 3])))),
            .evalOutcome(EvalOutcome(key: EvalKey(request: 1, job: 0, attempt: 0), outcome: AdaptationOutcome(returns: [], final: nil),
                                     error: "diverged")),
        ]
        for message in messages {
            #expect(try WireCodec.decode(WireCodec.encode(message)) == message, "\(message.kind)")
        }
    }

    @Test func anEvalRequestCarriesEachParameterVectorOnce() throws {
        var big = Self.evalJob
        big.dqn.hiddenLayers = [96, 96]  // 9,986 parameters
        big.initial = ParameterVector([Float](repeating: 0.25, count: 9_986))
        var other = big
        other.initial = ParameterVector([Float](repeating: -1, count: 9_986))
        let request = EvalRequest(requestID: "r", jobs: (0..<20).map { ($0, $0 % 5 == 4 ? other : big) })
        let bytes = WireCodec.encode(.evalRequest(request))
        #expect(bytes.count < 2 * 40_000 + 20 * 200, "\(bytes.count) bytes: parameters sent more than once")
        #expect(try WireCodec.decode(bytes) == .evalRequest(request))
    }

    /// θ encoded once for all workers (issue 15): a head frame plus the shared tensor field decode to exactly the
    /// message encoded whole, for an assignment and an eval job; the head alone, or with another message's field,
    /// does not pass as that message.
    @Test func aHeadAndASharedTensorFieldAreTheWholeMessage() throws {
        let theta = try #require(Self.assignment.parameters)
        let field = SharedTensorField(theta, for: .assignment)
        var withoutTheta = Self.assignment
        withoutTheta.parameters = nil
        let head = WireCodec.encodeHead(.assignment(withoutTheta), shared: field)
        #expect(try WireCodec.decode(frames: [head, field.bytes]) == .assignment(Self.assignment))
        #expect(WireCodec.encodeHead(.assignment(Self.assignment), shared: field) == head, "the message's own θ is never encoded")
        #expect(head.count + field.bytes.count == WireCodec.encode(.assignment(Self.assignment)).count)
        #expect(throws: WireError.self) { try WireCodec.decode(head) }

        let job = EvalJobMessage(key: EvalKey(request: 9, job: 3, attempt: 1), job: Self.evalJob)
        let initial = SharedTensorField(Self.evalJob.initial, for: .evalJob)
        let jobHead = WireCodec.encodeHead(.evalJob(job), shared: initial)
        #expect(try WireCodec.decode(frames: [jobHead, initial.bytes]) == .evalJob(job))
        #expect(throws: WireError.self) { try WireCodec.decode(frames: [jobHead]) }
        // Frames of different lengths than the head announces do not decode.
        #expect(throws: WireError.self) { try WireCodec.decode(frames: [jobHead, field.bytes]) }
        #expect(throws: WireError.self) { try WireCodec.decode(frames: [head, field.bytes, field.bytes]) }
    }

    /// A worker decodes a head and θ's frame in place (`decode(head:field:)`: θ read from its frame once); whatever
    /// the two frames hold, that gives what decoding them joined gives — the same message, or an error for both.
    @Test func decodingAHeadAndItsFieldInPlaceAgreesWithDecodingThemJoined() throws {
        func inPlace(_ head: [UInt8], _ field: [UInt8]) throws(WireError) -> Message? {
            try head.withUnsafeBytes { h in
                field.withUnsafeBytes { f in Result { () throws(WireError) in try WireCodec.decodeInPlace(head: h, field: f, limits: WireLimits()) } }
            }.get()
        }
        func outcome(_ decode: () throws -> Message) -> Message? { try? decode() }
        func agree(_ head: [UInt8], _ field: [UInt8], _ note: String) {
            let split = outcome { try WireCodec.decode(frames: [head, field]) }
            let joined = outcome { try WireCodec.decode(head + field) }
            #expect(split == joined, "\(note): in place \(split.map { "\($0.kind)" } ?? "an error"), joined \(joined.map { "\($0.kind)" } ?? "an error")")
        }
        var theta = Self.assignment
        theta.parameters = ParameterVector((0..<300).map { Float($0) / 7 - 20 })
        var withoutTheta = theta
        withoutTheta.parameters = nil
        let field = SharedTensorField(try #require(theta.parameters), for: .assignment)
        let head = WireCodec.encodeHead(.assignment(withoutTheta), shared: field)
        let job = EvalJobMessage(key: EvalKey(request: 9, job: 3, attempt: 1), job: Self.evalJob)
        let initial = SharedTensorField(Self.evalJob.initial, for: .evalJob)
        let jobHead = WireCodec.encodeHead(.evalJob(job), shared: initial)

        // What the coordinator sends takes the in-place path (nil would mean the joined copy) and is the message.
        #expect(try inPlace(head, field.bytes) == .assignment(theta))
        #expect(try inPlace(jobHead, initial.bytes) == .evalJob(job))
        // The shape written unpacked (protobuf allows both) is read in place too.
        var unpacked = ProtoWriter()
        unpacked.varint(1, 300)
        unpacked.bytes(2, theta.parameters!.values.littleEndianBytes)
        var unpackedField = ProtoWriter()
        unpackedField.message(10, unpacked)
        let unpackedHead = WireCodec.encodeHead(.assignment(withoutTheta), carrier: .assignment, fieldBytes: unpackedField.bytes.count)
        #expect(try inPlace(unpackedHead, unpackedField.bytes) == .assignment(theta))
        // A NaN in θ's frame is refused with the field named, in place as joined.
        var nan = theta.parameters!.values
        nan[17] = .nan
        #expect(throws: WireError.nonFinite("assignment.parameters", index: 17)) {
            try WireCodec.decode(frames: [head, SharedTensorField(ParameterVector(nan), for: .assignment).bytes])
        }
        // Another message's field, another version, a head that is a whole message: joined decides, as before.
        agree(jobHead, field.bytes, "an eval job's head with an assignment's field")
        agree(WireCodec.encodeHead(.assignment(withoutTheta), shared: field, version: 4), field.bytes, "version 4")
        agree(WireCodec.encode(.assignment(theta)), [], "a whole message and an empty field")

        // Every byte of either frame changed, dropped or doubled (seeded): the two decodings never disagree.
        var rng = SeededRNG(seed: 21)
        for (h, f) in [(head, field.bytes), (jobHead, initial.bytes)] {
            for i in 0..<(h.count + min(f.count, 64)) {
                let inHead = i < h.count
                var frames = [h, f]
                let which = inHead ? 0 : 1, at = inHead ? i : i - h.count
                switch rng.next() % 3 {
                case 0: frames[which][at] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                case 1: frames[which].remove(at: at)
                default: frames[which].insert(frames[which][at], at: at)
                }
                agree(frames[0], frames[1], "byte \(at) of the \(inHead ? "head" : "field") changed")
            }
        }
    }

    /// The coordinator decodes a result with its update read where the frame holds it (`decodeResultInPlace`);
    /// whatever the bytes, that gives what protobuf-c unpacking the whole envelope gives.
    @Test func decodingAResultInPlaceAgreesWithUnpackingItWhole() throws {
        func whole(_ bytes: [UInt8]) -> Message? {
            try? bytes.withUnsafeBytes { b in Result { () throws(WireError) in try WireCodec.decodeWhole(b, limits: WireLimits()) } }.get()
        }
        func agree(_ bytes: [UInt8], _ note: String) {
            let fast = try? WireCodec.decode(bytes), slow = whole(bytes)
            #expect(fast == slow, "\(note): in place \(fast.map { "\($0.kind)" } ?? "an error"), whole \(slow.map { "\($0.kind)" } ?? "an error")")
        }
        var result = Self.result
        result.update = ParameterVector((0..<300).map { Float($0) / 9 - 15 })
        let bytes = WireCodec.encode(.result(result))
        // What a worker sends takes the in-place path (nil would mean protobuf-c copies the update).
        let inPlace = try bytes.withUnsafeBytes { b in
            Result { () throws(WireError) in try WireCodec.decodeResultInPlace(b, limits: WireLimits()) }
        }.get()
        #expect(inPlace == .result(result))
        // A NaN, another version, another message: the same answer as unpacked whole.
        var nan = result
        nan.update.values[123] = .nan
        #expect(throws: WireError.nonFinite("result.update", index: 123)) { try WireCodec.decode(WireCodec.encode(.result(nan))) }
        agree(WireCodec.encode(.result(result), version: 4), "version 4")
        agree(WireCodec.encode(.assignment(Self.assignment)), "an assignment")
        // The update written twice (protobuf merges the two: shape [300, 300], the second data): left to protobuf-c.
        let body = try bytes.withUnsafeBytes { b -> [UInt8] in
            var r = ProtoReader(b)
            _ = (r.key(), r.varint(), r.key(), r.varint())  // version, then the result's tag and length
            let rest = r.take(UInt64(r.remaining))
            return Array(try #require(rest))
        }
        var tensor = ProtoWriter()
        tensor.bytes(1, [0xAC, 0x02])  // shape [300], packed
        tensor.bytes(2, result.update.values.littleEndianBytes)
        var updateField = ProtoWriter()
        updateField.message(6, tensor)
        var twice = ProtoWriter()
        twice.varint(1, UInt64(protocolVersion))
        twice.bytes(6, body + updateField.bytes)
        agree(twice.bytes, "the update twice")
        #expect(whole(twice.bytes) == nil, "merged, the shape no longer matches the data")
        // Every byte changed, dropped or doubled (seeded): the two decodings never disagree.
        var rng = SeededRNG(seed: 33)
        for at in 0..<min(bytes.count, 160) + 40 {
            var mutated = bytes
            let i = at < 160 ? at : bytes.count - 1 - (at - 160)
            switch rng.next() % 3 {
            case 0: mutated[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
            case 1: mutated.remove(at: i)
            default: mutated.insert(mutated[i], at: i)
            }
            agree(mutated, "byte \(i) changed")
        }
    }

    /// A θ-sized tensor is packed from the vector's own memory while it is lent (`Arena.lending`), and copied
    /// otherwise; the packed bytes are the same either way.
    @Test func aLentVectorIsPackedFromItsOwnMemory() throws {
        let values = (0..<1_000).map { Float($0) * 0.5 - 3 }
        let arena = Arena()
        let base = values.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        let lent = arena.lending(values) { UInt(bitPattern: arena.floatBytes(values).data) }
        let copied = UInt(bitPattern: arena.floatBytes(values).data)
        #if _endian(little)
        #expect(lent == base)
        #endif
        #expect(copied != base)
        let other = values.map { $0 + 1 }
        #expect(arena.lending(values) { UInt(bitPattern: arena.floatBytes(other).data) } != other.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) },
                "only the lent vector's memory is used")
        var result = Self.result
        result.update = ParameterVector(values)
        #expect(try WireCodec.decode(WireCodec.encodeMessage(.result(result)).bytes) == .result(result))
        // θ's shared field, packed from θ's memory, byte for byte as written field by field: shape [1000]
        // (packed: the varint E8 07), then the data.
        var tensor = ProtoWriter()
        tensor.bytes(1, [0xE8, 0x07])
        tensor.bytes(2, values.littleEndianBytes)
        var field = ProtoWriter()
        field.message(10, tensor)
        #expect(SharedTensorField(ParameterVector(values), for: .assignment).bytes == field.bytes)
    }

    @Test func invalidEvalMessagesAreRejectedWithTheFieldName() {
        func rejects(_ message: Message, containing text: String) {
            Self.expectRejected(WireCodec.encode(message)) { "\($0)".contains(text) }
        }
        var uneven = Self.evalJob
        uneven.every = 70
        rejects(.evalJob(EvalJobMessage(key: EvalKey(request: 1, job: 0, attempt: 0), job: uneven)), containing: "every (70) must divide")
        var nan = Self.evalJob
        nan.initial.values[1] = .nan
        rejects(.evalJob(EvalJobMessage(key: EvalKey(request: 1, job: 0, attempt: 0), job: nan)), containing: "eval_job.initial")
        var misfit = Self.evalJob
        misfit.initial = ParameterVector([1, 2, 3])
        rejects(.evalJob(EvalJobMessage(key: EvalKey(request: 1, job: 0, attempt: 0), job: misfit)), containing: "the task's network has 30")
        var badTask = Self.evalJob
        badTask.task = .cartPole(CartPoleParameters(length: -1))
        rejects(.evalRequest(EvalRequest(requestID: "r", jobs: [(0, badTask)])), containing: "task")
        rejects(.evalRequest(EvalRequest(requestID: "r", jobs: [])), containing: "eval_request.jobs")
        rejects(.evalRequest(EvalRequest(requestID: "r", jobs: [(2, Self.evalJob), (2, Self.evalJob)])), containing: "appears twice")
        rejects(.evalRequest(EvalRequest(requestID: "has space", jobs: [(0, Self.evalJob)])), containing: "request_id")
        rejects(.evalOutcome(EvalOutcome(key: EvalKey(request: 1, job: 0, attempt: 0), outcome: AdaptationOutcome(returns: [1, .infinity], final: nil))),
                containing: "eval_outcome.returns[1]")
    }

    @Test func tensorsAreLittleEndianFloat32() throws {
        let bytes = WireCodec.encode(.result(Self.result))
        // 0.5f = 00 00 00 3f, -0.125f = 00 00 00 be little-endian, consecutive in the data field.
        let needle: [UInt8] = [0, 0, 0, 0x3F, 0, 0, 0, 0xBE]
        #expect(bytes.indices.contains { i in i + needle.count <= bytes.count && Array(bytes[i..<(i + needle.count)]) == needle })
    }

    static func expectRejected(_ bytes: [UInt8], _ check: (WireError) -> Bool) {
        do {
            let m = try WireCodec.decode(bytes)
            Issue.record("accepted \(m)")
        } catch {
            #expect(check(error), "\(error)")
        }
    }

    @Test func garbageAndTruncationAreTypedErrors() {
        var rng = SeededRNG(seed: 5)
        for length in [0, 1, 7, 100, 4096] {
            let junk = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(throws: WireError.self, "\(length) random bytes decoded as a message") { _ = try WireCodec.decode(junk) }
        }
        // Every proper prefix of a valid result: cut inside a field, or between fields (then a required part is
        // missing or a tensor's bytes do not match its shape). None may decode.
        let valid = WireCodec.encode(.result(Self.result))
        for cut in 0..<valid.count {
            #expect(throws: WireError.self, "a \(cut)-byte prefix of a \(valid.count)-byte result decoded") {
                _ = try WireCodec.decode(Array(valid[0..<cut]))
            }
        }
        Self.expectRejected([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) { if case .undecodable = $0 { true } else { false } }
        Self.expectRejected([]) { $0 == .protocolVersion(got: 0, expected: protocolVersion) }
    }

    @Test func invalidFieldsAreRejectedWithTheFieldName() {
        func rejects(_ message: Message, version: UInt32 = protocolVersion, containing text: String) {
            Self.expectRejected(WireCodec.encode(message, version: version)) { "\($0)".contains(text) }
        }
        rejects(.heartbeat(envSteps: 0), version: 99, containing: "protocol version 99")
        var nan = Self.result
        nan.update = ParameterVector([1, .nan])
        rejects(.result(nan), containing: "NaN or infinity at index 1")
        var inf = Self.result
        inf.update = ParameterVector([.infinity])
        rejects(.result(inf), containing: "result.update")
        var stats = Self.result
        stats.statistics.meanReturn = .nan
        rejects(.result(stats), containing: "mean_return")
        var badTask = Self.assignment
        badTask.task = .cartPole(CartPoleParameters(massCart: -1))
        rejects(.assignment(badTask), containing: "masscart")
        var badInner = Self.assignment
        badInner.innerLoop.dqn.gamma = 2
        rejects(.assignment(badInner), containing: "gamma")
        var badBudget = Self.assignment
        badBudget.innerLoop.budget = 0
        rejects(.assignment(badBudget), containing: "budget")
        var badRun = Self.assignment
        badRun.runID = ""
        rejects(.assignment(badRun), containing: "run_id")
        rejects(.hello(Hello(host: "h", cores: 1, threads: 0)), containing: "threads")
        rejects(.hello(Hello(host: String(repeating: "x", count: 5000), cores: 1, threads: 1)), containing: "too large")
        rejects(.welcome(Welcome(runID: "r", workerID: "w", heartbeatIntervalMs: 0, liveness: 3, numerics: .strict)), containing: "heartbeat_interval_ms")
    }

    @Test func tensorShapeMustMatchItsBytes() throws {
        // Hand-built Result: update = Tensor{shape: [3], data: 8 bytes}.
        let tensor: [UInt8] = [0x0A, 0x01, 0x03, 0x12, 0x08] + [UInt8](repeating: 0, count: 8)
        let stats: [UInt8] = [0x3A, 0x00]
        let run: [UInt8] = [0x0A, 0x01, 0x72]
        let result: [UInt8] = run + [0x32, UInt8(tensor.count)] + tensor + stats
        let envelope: [UInt8] = [0x08, UInt8(protocolVersion), 0x32, UInt8(result.count)] + result
        Self.expectRejected(envelope) { if case .tensorSize("result.update", [3], 8) = $0 { true } else { false } }
        // A declared size past the limit is refused before any allocation.
        let huge: [UInt8] = [0x0A, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x12, 0x00]
        let result2: [UInt8] = run + [0x32, UInt8(huge.count)] + huge + stats
        Self.expectRejected([0x08, UInt8(protocolVersion), 0x32, UInt8(result2.count)] + result2) { if case .tooLarge = $0 { true } else { false } }
    }

    @Test func unknownEnumValuesAreRejected() {
        // Envelope{version 1, error{code 99}}, written by hand.
        Self.expectRejected([0x08, UInt8(protocolVersion), 0x3A, 0x02, 0x08, 0x63]) { $0 == .unknownEnum("error.code", value: 99) }
        // A valid assignment with extra fields appended inside it (a later value of a scalar field wins).
        var a = Self.assignment
        a.parameters = nil
        Self.expectRejected(Self.appendingToAssignment(a, [0x38, 0x09])) { $0 == .unknownEnum("assignment.algorithm", value: 9) }
        // inner_loop (field 6) merged with {optimizer (field 2) = 7}: embedded messages merge.
        Self.expectRejected(Self.appendingToAssignment(a, [0x32, 0x02, 0x10, 0x07])) {
            $0 == .unknownEnum("inner_loop.optimizer", value: 7)
        }
    }

    /// Re-frames an encoded assignment envelope with `extra` bytes appended to the assignment body.
    static func appendingToAssignment(_ a: Assignment, _ extra: [UInt8]) -> [UInt8] {
        let bytes = WireCodec.encode(.assignment(a))
        // [0x08 version] [0x2A len-varint body...]
        precondition(bytes[0] == 0x08 && bytes[2] == 0x2A, "unexpected envelope layout")
        var length = 0, shift = 0, i = 3
        while true {
            length |= Int(bytes[i] & 0x7F) << shift
            shift += 7
            i += 1
            if bytes[i - 1] & 0x80 == 0 { break }
        }
        var body = Array(bytes[i..<(i + length)]) + extra
        var varint: [UInt8] = []
        var n = body.count
        repeat {
            varint.append(UInt8(n & 0x7F) | (n > 0x7F ? 0x80 : 0))
            n >>= 7
        } while n > 0
        body = Array(bytes[0..<3]) + varint + body
        return body
    }

    @Test func checkpointPayloadRoundTrips() throws {
        var settings = MetaSettings()
        settings.optimizer = .adam
        var state = MetaState(theta: ParameterVector([1, 2, 3]), settings: settings)
        state.apply(updates: [ParameterVector([0.1, 0.2, 0.3])], settings: settings)
        let record = CheckpointRecord(runID: "r-1", algorithm: .fomaml, runSeed: 9, configHash: "abc", state: state, createdUnixMs: 5)
        #expect(try CheckpointCodec.decode(CheckpointCodec.encode(record), settings: settings) == record)
        settings.optimizer = .sgd
        #expect(throws: WireError.self) { try CheckpointCodec.decode(CheckpointCodec.encode(record), settings: settings) }
    }

    /// A pipelined run's checkpoint keeps θ one version back (what the next slots adapt); a previous θ of another size
    /// is refused.
    @Test func pipelinedCheckpointKeepsThePreviousTheta() throws {
        var settings = MetaSettings()
        settings.pipelined = true
        settings.schedule = .constant  // the decoded optimiser's step is the configuration's, not the schedule's
        var state = MetaState(theta: ParameterVector([1, 2, 3]), settings: settings)
        #expect(state.previousTheta == state.theta && state.theta(version: 0) == state.theta)
        state.apply(updates: [ParameterVector([0.5, 0.5, 0.5])], settings: settings)
        state.apply(updates: [ParameterVector([1, 1, 1])], settings: settings)
        #expect(state.iteration == 2 && state.previousTheta != nil && state.previousTheta != state.theta)
        #expect(state.theta(version: 1) == state.previousTheta && state.theta(version: 0) == nil)
        let record = CheckpointRecord(runID: "r-1", algorithm: .reptile, runSeed: 9, configHash: "abc", state: state, createdUnixMs: 5)
        let decoded = try CheckpointCodec.decode(CheckpointCodec.encode(record), settings: settings)
        #expect(decoded == record && decoded.state.previousTheta == state.previousTheta)
        var wrong = record
        wrong.state.previousTheta = ParameterVector([1, 2])
        #expect(throws: WireError.self) { try CheckpointCodec.decode(CheckpointCodec.encode(wrong), settings: settings) }
    }
}

/// A message built to amplify — few bytes that decode into many — is refused before the memory is taken (issue 39,
/// defect 8: a frame of packed one-byte shape values became a `[UInt32]` four times its size before the ≤ 8
/// dimension check).
@Suite struct DecodeAmplificationTests {
    /// An envelope whose body `field` holds a message whose field `inner` is a Tensor with `count` one-byte shape values.
    static func amplifying(body field: UInt64, inner: UInt64, count: Int) -> [UInt8] {
        var tensor = ProtoWriter()
        tensor.bytes(1, [UInt8](repeating: 1, count: count))   // shape [1, 1, 1, …], packed
        tensor.bytes(2, [0, 0, 0, 0])
        var body = ProtoWriter()
        body.message(inner, tensor)
        var envelope = ProtoWriter()
        envelope.varint(1, UInt64(protocolVersion))
        envelope.message(field, body)
        return envelope.bytes
    }

    @Test func aResultWithMillionsOfShapeValuesIsRefusedUnexpanded() {
        let bytes = Self.amplifying(body: 6, inner: 6, count: 4 << 20)   // Result.update
        #expect {
            try WireCodec.decode(bytes)
        } throws: { error in
            guard case let WireError.tooLarge(field, size, limit)? = error as? WireError else { return false }
            return field.contains("memory to decode") && size >= 4 * (4 << 20) && limit < size
        }
    }

    @Test func anEvalRequestWithMillionsOfShapeValuesIsRefusedUnexpanded() {
        // EvalRequest (envelope field 9) carries its jobs' parameters as Tensors (field 3): unpacked whole.
        let bytes = Self.amplifying(body: 9, inner: 3, count: 4 << 20)
        #expect {
            try WireCodec.decode(bytes)
        } throws: { error in
            guard case let WireError.tooLarge(field, _, limit)? = error as? WireError else { return false }
            return field.contains("memory to decode") && limit == UnpackBudget.limit(forMessageOf: bytes.count)
        }
    }

    @Test func ordinaryMessagesFitTheBudget() throws {
        // θ of a million floats, the largest tensors a run sends, decodes as before.
        let result = SlotResult(runID: "r", key: SlotKey(iteration: 1, slot: 2, attempt: 0), parameterVersion: 1,
                                update: ParameterVector([Float](repeating: 0.5, count: 1 << 20)),
                                statistics: SlotStatistics(meanReturn: 1, episodes: 1, environmentSteps: 1, seconds: 0.1))
        let bytes = WireCodec.encode(.result(result))
        guard case .result(let back) = try WireCodec.decode(bytes) else { Issue.record("not a result"); return }
        #expect(back.update.count == 1 << 20)
        let whole = try bytes.withUnsafeBytes { try WireCodec.decodeWhole($0, limits: WireLimits()) }
        guard case .result(let again) = whole else { Issue.record("not a result"); return }
        #expect(again.update.count == 1 << 20, "protobuf-c's own copy of the tensor fits too")
    }
}

/// The .proto states the protocol version a foreign implementer must speak, in one place at its top, and it is this
/// build's.
@Suite struct ProtoHeaderTests {
    @Test func theProtoFileNamesTheCurrentVersion() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("proto/metatrain.proto")
        let text = try String(contentsOf: url, encoding: .utf8)
        let header = text.split(separator: "\n").prefix(12).joined(separator: "\n")
        #expect(header.contains("CURRENT PROTOCOL VERSION: \(protocolVersion) "), "proto/metatrain.proto's header: \(header)")
    }
}
