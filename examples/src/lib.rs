//! The Smart Meal Planner reference app (filled by later issues).
