@_exported import ClusterCore
