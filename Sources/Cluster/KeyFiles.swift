import ClusterCore
import Foundation
import Transport

/// CURVE key files as `metatrain keygen` writes them: NAME.key (public + secret, mode 0600) and NAME.pub.
public enum KeyFiles {
    public enum KeyError: Error, CustomStringConvertible {
        case unreadable(String)
        case invalid(String, String)
        case exists(String)

        public var description: String {
            switch self {
            case .unreadable(let p): return "cannot read key file \(p)"
            case let .invalid(p, why): return "key file \(p): \(why)"
            case .exists(let p): return "\(p) already exists; not overwriting a key"
            }
        }
    }

    /// Writes a fresh key pair to PREFIX.key and PREFIX.pub.
    public static func generate(prefix: String) throws -> CurveKeyPair {
        let keys = try CurveKeyPair.generate()
        for path in [prefix + ".key", prefix + ".pub"] where FileManager.default.fileExists(atPath: path) {
            throw KeyError.exists(path)
        }
        let secret = "# metatrain CURVE key pair: keep this file private\npublic: \(keys.publicKey)\nsecret: \(keys.secretKey)\n"
        guard FileManager.default.createFile(atPath: prefix + ".key", contents: Data(secret.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw KeyError.unreadable(prefix + ".key")
        }
        let pub = "# metatrain CURVE public key\npublic: \(keys.publicKey)\n"
        guard FileManager.default.createFile(atPath: prefix + ".pub", contents: Data(pub.utf8)) else {
            throw KeyError.unreadable(prefix + ".pub")
        }
        return keys
    }

    static func fields(_ path: String) throws -> [String: String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw KeyError.unreadable(path) }
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { out[parts[0]] = parts[1] }
        }
        return out
    }

    static func key(_ fields: [String: String], _ name: String, _ path: String) throws -> String {
        guard let k = fields[name] else { throw KeyError.invalid(path, "no '\(name):' line") }
        guard CurveKeyPair.decode(k) != nil else { throw KeyError.invalid(path, "'\(name)' is not a 40-character Z85 key") }
        return k
    }

    /// The key pair in a .key file.
    public static func readPair(_ path: String) throws -> CurveKeyPair {
        let f = try fields(path)
        return CurveKeyPair(publicKey: try key(f, "public", path), secretKey: try key(f, "secret", path))
    }

    /// The public key in a .pub (or .key) file.
    public static func readPublic(_ path: String) throws -> String { try key(fields(path), "public", path) }
}
