import Foundation
import Testing
import Transport

/// The libzmq wrapper over real TCP sockets on loopback.
@Suite struct ZMQTests {
    func pair() throws -> (ZMQContext, ZMQSocket, ZMQSocket, String) {
        let context = try ZMQContext()
        let router = try context.socket(.router)
        try router.setRouterMandatory()
        try router.bind("tcp://127.0.0.1:*")
        let endpoint = try router.lastEndpoint()
        let dealer = try context.socket(.dealer)
        try dealer.connect(endpoint)
        return (context, router, dealer, endpoint)
    }

    func receive(_ socket: ZMQSocket, timeoutMs: Int = 3000) throws -> [[UInt8]]? {
        guard try ZMQPoller.poll([socket], timeoutMs: timeoutMs)[0] else { return nil }
        return try socket.receive()
    }

    @Test func dealerAndRouterExchangeMultipartMessages() throws {
        let (_, router, dealer, endpoint) = try pair()
        #expect(endpoint.hasPrefix("tcp://127.0.0.1:"))
        try dealer.send([[1, 2, 3], [], [4]])
        let got = try #require(try receive(router))
        #expect(got.count == 4 && Array(got[1...]) == [[1, 2, 3], [], [4]], "identity frame first")
        try router.send([got[0], [9, 9]])
        #expect(try receive(dealer) == [[9, 9]])
    }

    @Test func pollTimesOutAndReceiveDoesNotBlock() throws {
        let (_, router, _, _) = try pair()
        let start = Date()
        #expect(try ZMQPoller.poll([router], timeoutMs: 50) == [false])
        #expect(Date().timeIntervalSince(start) < 2)
        #expect(try router.receive() == nil)
    }

    @Test func routerMandatoryReportsAnUnknownPeer() throws {
        let (_, router, _, _) = try pair()
        do {
            try router.send([[0xDE, 0xAD], [1]])
            Issue.record("sent to a peer that does not exist")
        } catch let error as ZMQError {
            #expect(error.isUnreachable, "\(error)")
            #expect("\(error)".contains("zmq_send"))
        }
    }

    @Test func maxMessageSizeDropsOversizedMessages() throws {
        let context = try ZMQContext()
        let router = try context.socket(.router)
        try router.setMaxMessageSize(1000)  // applies to connections accepted after it is set
        try router.bind("tcp://127.0.0.1:*")
        let dealer = try context.socket(.dealer)
        try dealer.connect(try router.lastEndpoint())
        try dealer.send([[UInt8](repeating: 1, count: 900)])
        #expect(try receive(router)?.last?.count == 900)
        // The oversized message makes libzmq drop the connection; nothing is delivered or allocated.
        try dealer.send([[UInt8](repeating: 7, count: 5000)])
        #expect(try receive(router, timeoutMs: 300) == nil)
    }

    /// What a worker's results go out with: libzmq reads the owner's bytes in place and releases the owner once sent.
    @Test func borrowedBytesArriveIntactAndTheirOwnerIsReleasedOnceSent() throws {
        /// Bytes in memory of their own (as a worker's `EncodedMessage`), valid for as long as the object lives.
        final class Owner {
            static let count = 100_000
            let start = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
            init() { for i in 0..<Self.count { start[i] = UInt8(truncatingIfNeeded: i &* 7) } }
            deinit { start.deallocate() }
            var bytes: [UInt8] { Array(UnsafeBufferPointer(start: start, count: Self.count)) }
        }
        let (_, router, dealer, _) = try pair()
        weak var released: Owner?
        do {
            let owner = Owner()
            released = owner
            try dealer.send(borrowing: owner.start, count: Owner.count, owner: owner)
        }
        let got = try #require(try receive(router))
        #expect(got.count == 2 && got[1] == Owner().bytes)
        // Sent and gone from libzmq's queue: nothing holds the owner any more (libzmq releases it on its I/O thread).
        let deadline = Date().addingTimeInterval(3)
        while released != nil && Date() < deadline { usleep(1000) }
        #expect(released == nil)
    }

    /// A worker's assignment (a head and θ's frame) is decoded where libzmq holds the frames: each one's bytes, in
    /// order, an empty frame as no bytes.
    @Test func framesAreReadInPlaceInOrder() throws {
        let (_, router, dealer, _) = try pair()
        try dealer.send([[1, 2, 3], [], [4, 5]])
        #expect(try ZMQPoller.poll([router], timeoutMs: 3000)[0])
        let frames = try #require(try router.receiveFrames())
        #expect(frames.count == 4)  // the routing id first
        #expect((1..<4).map { i in frames.withUnsafeBytes(i) { Array($0) } } == [[1, 2, 3], [], [4, 5]])
        #expect((1..<4).map { frames.size($0) } == [3, 0, 2])
    }

    @Test func errorsCarryErrnoAndText() throws {
        let context = try ZMQContext()
        let socket = try context.socket(.router)
        #expect(throws: ZMQError.self) { try socket.bind("not-an-endpoint") }
        let error = #expect(throws: ZMQError.self) { try socket.connect("tcp://") }
        #expect(error.map { $0.errno != 0 && !"\($0)".isEmpty } == true)
    }
}
