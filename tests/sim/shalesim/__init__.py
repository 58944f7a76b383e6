"""shale's deterministic simulation: one seed drives a random workload against a whole
database (writer, compactor, garbage collector) over a fault-injecting in-memory store, and a
plain model checks every answer. See ``docs/testing-simulation.md``."""
