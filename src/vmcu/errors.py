"""The exceptions vmcu raises; the CLI turns each into one line on stderr and exit code 1."""


class VmcuError(Exception):
    """Base of every error that is the user's input or environment, not a bug in vmcu."""


class ModelError(VmcuError):
    """The model file is missing, truncated, corrupt, not TFLite, or not an int8 model."""


class UnsupportedOpError(VmcuError):
    """The model uses operators (or operator variants) vmcu cannot execute."""


class PlanError(VmcuError):
    """No memory plan fits the constraints, or a plan failed its independent check."""


class BuildError(VmcuError):
    """Generated code failed to compile or link, or a toolchain is missing."""


class VerifyError(VmcuError):
    """A run produced output that differs from the reference, or could not be run."""
