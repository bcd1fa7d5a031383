//! The Smart Meal Planner's migration command: `status`, `plan`, `up`, `verify`, `mark`,
//! `backup`, `work` (see `migrate_kroger_passwords --help`).

use std::process::ExitCode;

fn main() -> ExitCode {
    migrator::cli::main(
        "migrate_kroger_passwords",
        &smart_meal_planner::SmartMealPlanner,
    )
}
