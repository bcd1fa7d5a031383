//! Criterion benchmarks of migrator (filled by the benchmarks issue).
