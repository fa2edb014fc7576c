import Foundation

/// Why the host of a `tcp://HOST:PORT` endpoint does not resolve (e.g. "the host db-1 does not resolve: Name or
/// service not known"), or nil when it resolves, is a wildcard, or the endpoint is not tcp://.
///
/// Why: libzmq connects to an unresolvable host without an error and retries it for ever, so a typo in a host name
/// looked like a coordinator that never answered; a message that names the cause saves the hunt (issue 38).
public func unresolvableHost(_ endpoint: String) -> String? {
    guard endpoint.hasPrefix("tcp://"), let colon = endpoint.lastIndex(of: ":"),
          colon > endpoint.index(endpoint.startIndex, offsetBy: 6) else { return nil }
    var host = String(endpoint[endpoint.index(endpoint.startIndex, offsetBy: 6)..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    // An interface name after ';' (tcp://eth0;host:port) is the source side; the host after it is the one connected.
    if let semicolon = host.lastIndex(of: ";") { host = String(host[host.index(after: semicolon)...]) }
    guard !host.isEmpty, host != "*" else { return nil }
    var result: UnsafeMutablePointer<addrinfo>?
    let status = getaddrinfo(host, nil, nil, &result)
    if status == 0 {
        freeaddrinfo(result)
        return nil
    }
    return "the host \(host) does not resolve (\(String(cString: gai_strerror(status))))"
}
