//! The demo server, built in this package so that its integration tests can run it (Cargo only
//! exposes binaries of a test's own package). Same entry point as `smart-meal-planner`.

fn main() -> std::process::ExitCode {
    smart_meal_planner::demo::main()
}
