//! Exit codes, as the command-line contract fixes them, and which one an error gets.

use crate::foundation::error::Error;

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: a migration (or an app's check) failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: refused by policy.
pub const EXIT_REFUSED: u8 = 3;

/// The exit code for an error.
pub fn exit_code(error: &Error) -> u8 {
    if error.is_refusal() {
        EXIT_REFUSED
    } else if error.is_configuration() {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}
