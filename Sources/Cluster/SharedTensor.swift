import ClusterCore
import NeuralNet
import Transport
import Wire

/// A tensor field (θ of a version, an eval job's initial parameters) encoded once and held as a ZeroMQ frame that
/// every message carrying it shares, so sending θ to N workers costs one encoding and no copies (issue 15).
struct SharedTensor {
    let carrier: SharedTensorField.Carrier
    let frame: ZMQSharedFrame

    init(_ values: ParameterVector, for carrier: SharedTensorField.Carrier) throws {
        self.carrier = carrier
        frame = try ZMQSharedFrame(SharedTensorField(values, for: carrier).bytes)
    }
}
