import CZeroMQ

/// A libzmq failure: the errno and libzmq's message for it, and what we were doing.
public struct ZMQError: Error, Equatable, CustomStringConvertible {
    public let errno: Int32
    public let operation: String

    public var description: String { "\(operation): \(String(cString: zmq_strerror(errno))) (errno \(errno))" }

    /// True when the call would have blocked or was interrupted: retry, nothing is wrong.
    public var isTransient: Bool { errno == EAGAIN || errno == EINTR }
    /// True when a ROUTER could not route to the peer (it is gone): ZMQ_ROUTER_MANDATORY's EHOSTUNREACH.
    public var isUnreachable: Bool { errno == EHOSTUNREACH }

    static func last(_ operation: String) -> ZMQError { ZMQError(errno: zmq_errno(), operation: operation) }
}

/// A ZeroMQ context: owns libzmq's I/O thread. One per process; sockets are made from it.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init() throws {
        guard let h = zmq_ctx_new() else { throw ZMQError.last("zmq_ctx_new") }
        handle = h
    }

    deinit { zmq_ctx_term(handle) }

    public func socket(_ type: ZMQSocket.Kind) throws -> ZMQSocket { try ZMQSocket(context: self, kind: type) }
}

/// One ZeroMQ socket. Not thread-safe: exactly one thread uses a socket (libzmq's rule).
public final class ZMQSocket {
    public enum Kind: Int32 {
        case router, dealer, push, pull, rep
        var raw: Int32 {
            switch self {
            case .router: return ZMQ_ROUTER
            case .dealer: return ZMQ_DEALER
            case .push: return ZMQ_PUSH
            case .pull: return ZMQ_PULL
            case .rep: return ZMQ_REP
            }
        }
    }

    let handle: UnsafeMutableRawPointer
    public let kind: Kind
    /// Keeps the context alive as long as any socket made from it.
    private let context: ZMQContext
    private var closed = false

    init(context: ZMQContext, kind: Kind) throws {
        guard let h = zmq_socket(context.handle, kind.raw) else { throw ZMQError.last("zmq_socket") }
        handle = h
        self.kind = kind
        self.context = context
        // Never block process exit on unsent messages for long.
        try setOption(ZMQ_LINGER, Int32(200))
    }

    deinit { close() }

    /// Closes the socket (idempotent).
    public func close() {
        if !closed { zmq_close(handle); closed = true }
    }

    public func setOption(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    public func setOption(_ option: Int32, _ value: Int64) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, bytes.count) }
        guard rc == 0 else { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    /// Largest inbound message libzmq accepts; a larger one drops the peer's connection.
    public func setMaxMessageSize(_ bytes: Int64) throws { try setOption(ZMQ_MAXMSGSIZE, bytes) }
    /// ROUTER only: sending to an unknown peer fails with EHOSTUNREACH instead of dropping silently.
    public func setRouterMandatory() throws { try setOption(ZMQ_ROUTER_MANDATORY, Int32(1)) }
    /// Send/receive high-water marks (0: unlimited).
    public func setHighWaterMarks(send: Int32, receive: Int32) throws {
        try setOption(ZMQ_SNDHWM, send)
        try setOption(ZMQ_RCVHWM, receive)
    }

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError.last("zmq_bind(\(endpoint))") }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError.last("zmq_connect(\(endpoint))") }
    }

    /// The endpoint actually bound (resolves a wildcard port like tcp://127.0.0.1:*).
    public func lastEndpoint() throws -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else {
            throw ZMQError.last("zmq_getsockopt(ZMQ_LAST_ENDPOINT)")
        }
        return String(cString: buffer)
    }

    /// Sends a multipart message (every frame but the last with ZMQ_SNDMORE).
    /// - Parameter dontWait: fail with EAGAIN instead of blocking at the high-water mark.
    public func send(_ frames: [[UInt8]], dontWait: Bool = true) throws {
        for (i, frame) in frames.enumerated() {
            var flags: Int32 = i < frames.count - 1 ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, frame.count, flags) }
            guard rc >= 0 else { throw ZMQError.last("zmq_send") }
        }
    }

    /// Sends one frame of a multipart message being streamed: `more` marks that another frame follows.
    public func sendFrame(_ frame: [UInt8], more: Bool, dontWait: Bool = true) throws {
        let flags: Int32 = (more ? ZMQ_SNDMORE : 0) | (dontWait ? ZMQ_DONTWAIT : 0)
        let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, frame.count, flags) }
        guard rc >= 0 else { throw ZMQError.last("zmq_send") }
    }

    /// Sends one single-frame message whose `count` bytes at `bytes` libzmq reads in place: `owner` (which keeps the
    /// bytes alive and unchanged) is retained until libzmq has sent them, then released on whichever thread it is.
    ///
    /// Why: a worker's result is θ-sized (4 MB at 1M floats); `send(_:)` copies every frame into a message first.
    public func send(borrowing bytes: UnsafeRawPointer, count: Int, owner: AnyObject, dontWait: Bool = true) throws {
        var msg = zmq_msg_t()
        let hint = Unmanaged.passRetained(owner).toOpaque()
        let release: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { _, hint in
            if let hint { Unmanaged<AnyObject>.fromOpaque(hint).release() }
        }
        guard zmq_msg_init_data(&msg, UnsafeMutableRawPointer(mutating: bytes), count, release, hint) == 0 else {
            Unmanaged<AnyObject>.fromOpaque(hint).release()  // libzmq did not take it
            throw ZMQError.last("zmq_msg_init_data")
        }
        guard zmq_msg_send(&msg, handle, dontWait ? ZMQ_DONTWAIT : 0) >= 0 else {
            let error = ZMQError.last("zmq_msg_send")
            zmq_msg_close(&msg)  // releases the owner
            throw error
        }
    }

    /// Sends `frames` and then `shared` as the last frame of one multipart message; `shared`'s bytes are not copied.
    public func send(_ frames: [[UInt8]], then shared: ZMQSharedFrame, dontWait: Bool = true) throws {
        for frame in frames { try sendFrame(frame, more: true, dontWait: dontWait) }
        var copy = zmq_msg_t()
        zmq_msg_init(&copy)
        guard zmq_msg_copy(&copy, shared.message) == 0 else {
            let error = ZMQError.last("zmq_msg_copy")
            zmq_msg_close(&copy)
            throw error
        }
        guard zmq_msg_send(&copy, handle, dontWait ? ZMQ_DONTWAIT : 0) >= 0 else {
            let error = ZMQError.last("zmq_msg_send")
            zmq_msg_close(&copy)
            throw error
        }
    }

    /// Receives one multipart message, or nil if none is waiting (non-blocking), each frame copied into an array.
    public func receive() throws -> [[UInt8]]? {
        try receiveFrames().map { message in (0..<message.count).map { message.bytes($0) } }
    }

    /// Receives one multipart message, or nil if none is waiting (non-blocking), its frames left in libzmq's buffers.
    public func receiveFrames() throws -> ZMQFrames? {
        let frames = ZMQFrames()
        while true {
            let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            zmq_msg_init(msg)
            let rc = zmq_msg_recv(msg, handle, frames.count == 0 ? ZMQ_DONTWAIT : 0)
            if rc < 0 {
                let error = ZMQError.last("zmq_msg_recv")
                zmq_msg_close(msg)
                msg.deallocate()
                if frames.count == 0 && error.isTransient { return nil }
                throw error
            }
            frames.messages.append(msg)
            if zmq_msg_more(msg) == 0 { return frames }
        }
    }
}

/// The frames of one received multipart message, read where libzmq put them; released with this object.
///
/// Why: the coordinator decodes every update straight from the frame (4 MB at θ of 1M floats); copying each frame
/// into an array first was 7% of its CPU at that size (perf, docs/SCALING.md).
public final class ZMQFrames {
    fileprivate var messages: [UnsafeMutablePointer<zmq_msg_t>] = []

    fileprivate init() {}

    deinit {
        for msg in messages {
            zmq_msg_close(msg)
            msg.deallocate()
        }
    }

    /// Frames in the message.
    public var count: Int { messages.count }

    /// Bytes in frame `index`.
    public func size(_ index: Int) -> Int { zmq_msg_size(messages[index]) }

    /// Frame `index` copied into an array.
    public func bytes(_ index: Int) -> [UInt8] { withUnsafeBytes(index) { Array($0) } }

    /// Calls `body` with frame `index`'s bytes, valid only during the call.
    public func withUnsafeBytes<R, E: Error>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let size = zmq_msg_size(messages[index])
        return try body(UnsafeRawBufferPointer(start: size == 0 ? nil : zmq_msg_data(messages[index]), count: size))
    }
}

/// One frame built once and sent many times, its bytes never copied again: every send takes a copy that
/// shares them by reference count (`zmq_msg_copy`), and libzmq frees them when the last copy has gone out.
///
/// Why: θ of one version goes to every worker; encoding and copying 4 MB per worker was the coordinator's
/// largest cost (issue 15).
public final class ZMQSharedFrame {
    let message: UnsafeMutablePointer<zmq_msg_t>
    /// Bytes in the frame.
    public let count: Int

    public init(_ bytes: [UInt8]) throws {
        let message = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        guard zmq_msg_init_size(message, bytes.count) == 0 else {
            let error = ZMQError.last("zmq_msg_init_size")
            message.deallocate()
            throw error
        }
        if !bytes.isEmpty {
            bytes.withUnsafeBytes { zmq_msg_data(message).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }
        self.message = message
        count = bytes.count
    }

    deinit {
        zmq_msg_close(message)
        message.deallocate()
    }
}

/// Waits until one of the sockets is readable or the timeout passes.
public enum ZMQPoller {
    /// Returns, per socket, whether it has a message to read. Never waits longer than `timeoutMs`.
    public static func poll(_ sockets: [ZMQSocket], timeoutMs: Int) throws -> [Bool] {
        var items = sockets.map { zmq_pollitem_t(socket: $0.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
        let rc = zmq_poll(&items, Int32(items.count), timeoutMs)
        if rc < 0 {
            let error = ZMQError.last("zmq_poll")
            if error.errno == EINTR { return [Bool](repeating: false, count: sockets.count) }
            throw error
        }
        return items.map { $0.revents & Int16(ZMQ_POLLIN) != 0 }
    }
}

#if canImport(Glibc)
import Glibc
#endif
