"""Lowest layer: errors, seeding, defaults and devices. Imports only stdlib, numpy and torch."""
from deftly.core.device import Defaults, cpu_has_bf16, defaults, set_inference_threads, to_cpu, to_device, usable_cores
from deftly.core.errors import ConfigError, DataError, DeftlyError, ExportError, TrainingError
from deftly.core.seed import get_rng_state, seed_worker, set_rng_state, set_seed

__all__ = [
    "ConfigError", "DataError", "Defaults", "DeftlyError", "ExportError", "TrainingError",
    "cpu_has_bf16", "defaults", "get_rng_state", "seed_worker", "set_inference_threads", "set_rng_state", "set_seed", "to_cpu",
    "to_device", "usable_cores",
]
