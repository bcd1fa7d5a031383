//! `migrate_kroger_passwords`, built in this package so that its integration tests can run it
//! (Cargo only exposes binaries of a test's own package). Same entry point as the real one.

fn main() -> std::process::ExitCode {
    smart_meal_planner::migrate_kroger_passwords_main()
}
