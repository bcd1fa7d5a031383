//! Shared fixtures live in tests/common; this library is empty.
