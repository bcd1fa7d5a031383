//! The Smart Meal Planner's migration command: `status`, `plan`, `up`, `verify`, `mark`,
//! `backup`, `work` (see `migrate_kroger_passwords --help`).

fn main() -> std::process::ExitCode {
    smart_meal_planner::migrate_kroger_passwords_main()
}
