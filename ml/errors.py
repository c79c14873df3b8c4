class MLError(Exception):
    """Base class of every error raised by the ml package."""


class ModelArtifactError(MLError):
    """The model artifact is missing, corrupt, or of a format this code does not read."""


class DatasetError(MLError):
    """The training/evaluation data folder is unusable (missing CSV, images, unknown labels)."""


class ImageError(MLError):
    """The input is not a decodable image."""
