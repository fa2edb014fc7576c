import Environments
import MetaTrainCLI

// Register the family under the name cluster.yaml uses (`env: swift`, `name: moving_target`), then be metatrain:
// `moving-target local --config cluster.yaml`, `moving-target worker --connect …`, `moving-target eval …`.
ExternalEnvironments.register("moving_target") { task in try MovingTarget(task) }
MetaTrain.main()
