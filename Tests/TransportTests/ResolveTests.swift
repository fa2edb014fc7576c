import Testing
import Transport

/// An endpoint whose host does not resolve is named as such (libzmq retries it silently for ever).
@Suite struct ResolveTests {
    @Test func namesAHostThatDoesNotResolveAndNothingElse() {
        #expect(unresolvableHost("tcp://no-such-host.invalid:5555")?.contains("the host no-such-host.invalid does not resolve") == true)
        for fine in ["tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://*:5555", "tcp://[::1]:5555", "ipc:///tmp/x", "garbage"] {
            #expect(unresolvableHost(fine) == nil, "\(fine)")
        }
    }
}
