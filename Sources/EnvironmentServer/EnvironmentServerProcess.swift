#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One running environment server: a child Python process driven over its standard input and output.
///
/// Frames are a little-endian u32 length and a body (python/metatrain_envserver/protocol.py documents the
/// commands). Every read waits at most the given time; a server that does not answer is killed, and one that has
/// died is reaped and reported with how it ended. Used by one compute thread at a time (the pool hands it out).
public final class EnvironmentServerProcess {
    public enum Command: UInt8 {
        case make = 1, reset = 2, step = 3, setState = 4, identity = 5, ping = 6, close = 7
        var name: String {
            switch self {
            case .make: return "make"
            case .reset: return "reset"
            case .step: return "step"
            case .setState: return "set_state"
            case .identity: return "identity"
            case .ping: return "ping"
            case .close: return "close"
            }
        }
    }

    /// The largest reply accepted (the server's own limit on frames).
    public static let maxFrameBytes = 64 << 20

    public let pid: pid_t
    private var requestFD: Int32
    private var replyFD: Int32
    /// Reply bytes read so far; a reply's body is handed out in place.
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var request: [UInt8] = []
    private var reaped = false
    /// Set once the process is known dead or was killed; every later request fails with it.
    public private(set) var ended: EnvironmentServerError?

    /// Starts `python -m metatrain_envserver` with the allowed modules, in a process group of its own (a terminal's
    /// Ctrl-C reaches the worker, which ends its servers, not the servers directly).
    public init(python: String, allowedModules: [String], pythonPath: [String] = []) throws {
        var toChild: [Int32] = [-1, -1], fromChild: [Int32] = [-1, -1]
        guard Self.pipeClosedOnExec(&toChild) else { throw EnvironmentServerError.couldNotStart(python: python, reason: String(cString: strerror(errno))) }
        guard Self.pipeClosedOnExec(&fromChild) else {
            Glibc.close(toChild[0]); Glibc.close(toChild[1])
            throw EnvironmentServerError.couldNotStart(python: python, reason: String(cString: strerror(errno)))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group; no signal blocked and SIGPIPE, SIGINT, SIGTERM at their defaults, whatever the
        // spawning thread (a compute thread, the coordinator's main thread) had blocked or ignored.
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var none = sigset_t(), defaults = sigset_t()
        sigemptyset(&none)
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        let arguments = [python, "-m", "metatrain_envserver"] + allowedModules.map { "--allow-module=\($0)" }
        var environment = ProcessInfo.processInfo.environment
        if !pythonPath.isEmpty {
            environment["PYTHONPATH"] = (pythonPath + [environment["PYTHONPATH"]].compactMap { $0 }).joined(separator: ":")
        }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var child: pid_t = 0
        let spawned = posix_spawnp(&child, python, &actions, &attributes, argv, envp)
        Glibc.close(toChild[0]); Glibc.close(fromChild[1])
        guard spawned == 0 else {
            Glibc.close(toChild[1]); Glibc.close(fromChild[0])
            throw EnvironmentServerError.couldNotStart(python: python, reason: String(cString: strerror(spawned)))
        }
        pid = child
        requestFD = toChild[1]
        replyFD = fromChild[0]
        capacity = 1 << 16
        buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        terminate()
        buffer.deallocate()
    }

    /// Sends one request and returns the OK reply's payload (valid until the next request).
    ///
    /// Throws `.raised` for the environment's own exception (the server lives on), and `.exited`, `.timedOut` or
    /// `.protocolViolation` when the server can no longer be used (it is then dead or killed).
    public func call(_ command: Command, payload: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                     timeoutMs: Int) throws(EnvironmentServerError) -> UnsafeRawBufferPointer {
        if let ended { throw ended }
        request.removeAll(keepingCapacity: true)
        let length = UInt32(payload.count + 1)
        withUnsafeBytes(of: length.littleEndian) { request.append(contentsOf: $0) }
        request.append(command.rawValue)
        request.append(contentsOf: payload)
        try send(command)
        let body = try receive(command, timeoutMs: timeoutMs)
        guard let status = body.first else { throw fail(.protocolViolation("an empty reply to \(command.name)")) }
        let rest = UnsafeRawBufferPointer(rebasing: body[1...])
        if status == 0 { return rest }
        guard status == 1 else { throw fail(.protocolViolation("status byte \(status) in a reply to \(command.name)")) }
        let (type, message) = Self.exception(rest)
        throw .raised(command: command.name, type: type, message: message)
    }

    /// Kills the server (if alive) and reaps it.
    public func terminate() {
        if ended == nil { ended = .exited(command: "shutdown", how: "was stopped") }
        if requestFD >= 0 { Glibc.close(requestFD); requestFD = -1 }
        if replyFD >= 0 { Glibc.close(replyFD); replyFD = -1 }
        if !reaped {
            // Only an unreaped child is signalled: a reaped pid may already belong to another process.
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            reaped = true
        }
    }

    /// Asks the server to exit and waits for it (a clean end: its environment's `close` runs).
    public func shutDown(timeoutMs: Int = 5_000) {
        if ended == nil { _ = try? call(.close, timeoutMs: timeoutMs) }
        terminate()
    }

    private func send(_ command: Command) throws(EnvironmentServerError) {
        var sent = 0
        while sent < request.count {
            let n = request.withUnsafeBytes { write(requestFD, $0.baseAddress! + sent, $0.count - sent) }
            if n < 0 {
                if errno == EINTR { continue }
                throw fail(reap(command))  // EPIPE: the server is gone
            }
            sent += n
        }
    }

    /// Reads one whole frame's body.
    private func receive(_ command: Command, timeoutMs: Int) throws(EnvironmentServerError) -> UnsafeRawBufferPointer {
        let deadline = Self.milliseconds() + Int64(timeoutMs)
        var have = 0, needed = 4
        while have < needed {
            var poller = pollfd(fd: replyFD, events: Int16(POLLIN), revents: 0)
            let left = max(deadline - Self.milliseconds(), 0)
            let ready = poll(&poller, 1, Int32(min(left, Int64(Int32.max))))
            if ready < 0 { if errno == EINTR { continue }; throw fail(.protocolViolation("poll: \(String(cString: strerror(errno)))")) }
            if ready == 0 { throw fail(.timedOut(command: command.name, milliseconds: timeoutMs)) }
            let n = read(replyFD, buffer + have, capacity - have)
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; throw fail(reap(command)) }
            if n == 0 { throw fail(reap(command)) }
            have += n
            if needed == 4 && have >= 4 {
                let length = Int(UInt32(littleEndian: buffer.loadUnaligned(as: UInt32.self)))
                guard length >= 1 && length <= Self.maxFrameBytes else {
                    throw fail(.protocolViolation("a \(length)-byte frame in reply to \(command.name)"))
                }
                needed = 4 + length
                if needed > capacity { grow(to: needed) }
            }
        }
        guard have == needed else { throw fail(.protocolViolation("\(have - needed) bytes beyond the reply to \(command.name)")) }
        return UnsafeRawBufferPointer(start: buffer + 4, count: needed - 4)
    }

    private func grow(to size: Int) {
        let bigger = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        bigger.copyMemory(from: buffer, byteCount: capacity)
        buffer.deallocate()
        buffer = bigger
        capacity = size
    }

    /// Records why the server can no longer be used, kills and reaps it; returns the error to throw.
    private func fail(_ error: EnvironmentServerError) -> EnvironmentServerError {
        ended = error
        terminate()
        ended = error
        return error
    }

    /// How the server ended, after its pipe closed: waits up to a second for it to exit, else kills it.
    private func reap(_ command: Command) -> EnvironmentServerError {
        var status: Int32 = 0
        for _ in 0..<100 {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                reaped = true
                return .exited(command: command.name, how: Self.describe(status))
            }
            if r < 0 && errno != EINTR { break }
            usleep(10_000)
        }
        return .exited(command: command.name, how: "closed its pipe")
    }

    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        let name = strsignal(signal).map { String(cString: $0) } ?? "signal \(signal)"
        return "was killed by signal \(signal) (\(name))"
    }

    /// The (type, message) of an ERROR reply's JSON.
    static func exception(_ payload: UnsafeRawBufferPointer) -> (String, String) {
        let data = Data(payload)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            return ("?", String(decoding: payload.prefix(500), as: UTF8.self))
        }
        return (object["type"] as? String ?? "?", String((object["message"] as? String ?? "").prefix(2_000)))
    }

    /// A pipe whose ends are closed in every child but the one they are handed to (a server must see its end of
    /// file when the worker dies, which a sibling holding a copy would prevent).
    static func pipeClosedOnExec(_ ends: inout [Int32]) -> Bool {
        guard pipe(&ends) == 0 else { return false }
        for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return true
    }

    static func milliseconds() -> Int64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Int64(t.tv_sec) * 1000 + Int64(t.tv_nsec) / 1_000_000
    }
}
