//! The Smart Meal Planner demo server: opens the pool, listens, runs the migrations under the
//! environment policy (reporting `migrating` on `/health` meanwhile), then serves.
//! `cargo run -p smart-meal-planner` starts it on SQLite with no setup.

fn main() -> std::process::ExitCode {
    smart_meal_planner::demo::main()
}
