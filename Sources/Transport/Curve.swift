import CZeroMQ
import Foundation

/// CURVE (CurveZMQ) key pairs: 32-byte keys written as 40-character Z85 text.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    /// A fresh key pair from libzmq (libsodium's randomness).
    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError.last("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: String(cString: pub), secretKey: String(cString: sec))
    }

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey; self.secretKey = secretKey
    }

    /// True when libzmq was built with CURVE support.
    public static var isSupported: Bool { zmq_has("curve") == 1 }

    /// The 32 raw bytes of a Z85 key, or nil if it is not a valid 40-character Z85 key.
    public static func decode(_ z85: String) -> [UInt8]? {
        guard z85.utf8.count == 40 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        return out.withUnsafeMutableBufferPointer { zmq_z85_decode($0.baseAddress, z85) } == nil ? nil : out
    }

    /// The Z85 text of 32 raw bytes.
    public static func encode(_ raw: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: 41)
        _ = raw.withUnsafeBufferPointer { zmq_z85_encode(&text, $0.baseAddress, 32) }
        return String(cString: text)
    }
}

extension ZMQSocket {
    private func setText(_ option: Int32, _ value: String) throws {
        let rc = value.withCString { zmq_setsockopt(handle, option, $0, strlen($0)) }
        guard rc == 0 else { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    /// Makes this (binding) socket a CURVE server with its secret key; clients must know its public key.
    /// Connections are then authenticated through the context's ZAP handler (see `ZAPHandler`).
    public func makeCurveServer(secretKey: String, domain: String = "metatrain") throws {
        try setOption(ZMQ_CURVE_SERVER, Int32(1))
        try setText(ZMQ_CURVE_SECRETKEY, secretKey)
        try setText(ZMQ_ZAP_DOMAIN, domain)
    }

    /// Makes this (connecting) socket a CURVE client of the server with `serverPublicKey`.
    public func makeCurveClient(serverPublicKey: String, keys: CurveKeyPair) throws {
        try setText(ZMQ_CURVE_SERVERKEY, serverPublicKey)
        try setText(ZMQ_CURVE_PUBLICKEY, keys.publicKey)
        try setText(ZMQ_CURVE_SECRETKEY, keys.secretKey)
    }
}

/// A ZAP handler (ZeroMQ RFC 27) that admits CURVE clients whose public key is on an allow-list.
///
/// libzmq asks it about every new CURVE connection over inproc://zeromq.zap.01; the owner polls
/// `socket` with its other sockets and calls `answer()` when it is readable (one thread owns both).
public final class ZAPHandler {
    public let socket: ZMQSocket
    private let allowed: Set<[UInt8]>
    /// Called with (client public key in Z85, peer address, admitted?).
    public var onDecision: ((String, String, Bool) -> Void)?

    public init(context: ZMQContext, allowedPublicKeys: [String]) throws {
        socket = try context.socket(.rep)
        try socket.bind("inproc://zeromq.zap.01")
        allowed = Set(allowedPublicKeys.compactMap(CurveKeyPair.decode))
    }

    /// Answers every pending authentication request.
    public func answer() throws {
        while let frames = try socket.receive() {
            // [version, request id, domain, address, identity, mechanism, credentials...]
            guard frames.count >= 6, String(decoding: frames[0], as: UTF8.self) == "1.0" else {
                try socket.send([Array("1.0".utf8), frames.count > 1 ? frames[1] : [], Array("400".utf8),
                                 Array("bad ZAP request".utf8), [], []], dontWait: false)
                continue
            }
            let mechanism = String(decoding: frames[5], as: UTF8.self)
            let key = frames.count > 6 ? frames[6] : []
            let ok = mechanism == "CURVE" && key.count == 32 && allowed.contains(key)
            let address = String(decoding: frames[3], as: UTF8.self)
            onDecision?(key.count == 32 ? CurveKeyPair.encode(key) : "(\(mechanism))", address, ok)
            try socket.send([Array("1.0".utf8), frames[1], Array((ok ? "200" : "400").utf8),
                             Array((ok ? "OK" : "public key not on the allow-list").utf8),
                             ok ? Array(CurveKeyPair.encode(key).utf8) : [], []], dontWait: false)
        }
    }
}
