"""A self-contained demonstration of reflexio_store: a deterministic hashing embedder (not a
language model), a seeded synthetic Reflexio workload, and `run_demo` for `reflexio-store demo`."""

from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.demo.run import run_demo
from reflexio_store.demo.workload import ClusteredVectors, Workload, WorkloadSize

__all__ = ["ClusteredVectors", "HashingEmbedder", "Workload", "WorkloadSize", "run_demo"]
