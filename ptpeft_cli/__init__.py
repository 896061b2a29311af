"""ptpeft: an experiment runner for parameter-efficient adaptation of large multi-modal models."""

__version__ = "0.1.0"
