//! Named backfills registered in code ([`register_backfill!`](crate::register_backfill)), so
//! that any process of the binary can work on them.

use std::fmt;

use super::definition::Then;
use super::Backfill;
use crate::foundation::config::Config;
use crate::foundation::error::{Error, Result};

/// The computation of a backfill: a row's inputs (in the order of [`Backfill::input`]) to its
/// outputs (in the order of [`Backfill::output`]).
pub(crate) type Compute = dyn Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Send + Sync;

/// A backfill ready to run: which rows and columns, and the computation.
pub struct Job {
    pub(super) backfill: Backfill,
    pub(super) compute: Box<Compute>,
    /// What else defines the computation (its parameters, a version), as the job says.
    parameters: String,
}

impl Job {
    /// A job of `backfill` computing each row with `compute`.
    pub fn new<F>(backfill: Backfill, compute: F) -> Job
    where
        F: Fn(&[Option<&str>]) -> Result<Vec<Option<String>>> + Send + Sync + 'static,
    {
        Job {
            backfill,
            compute: Box::new(compute),
            parameters: String::new(),
        }
    }

    /// Declares what else defines the computation beyond its table, key, columns and
    /// predicate: its parameters (e.g. `"argon2id m=65536 t=3 p=4"`) or a version that the
    /// code bumps when the computation changes. It goes into [`Job::checksum`], so that
    /// during a rolling deploy the workers of one version never finish a backfill scheduled
    /// with another's definition. Never put a secret here: the checksum is stored, and this
    /// text is not, but it is hashed without a key.
    pub fn parameters(mut self, parameters: impl Into<String>) -> Job {
        self.parameters = parameters.into();
        self
    }

    /// The checksum of the definition (table, key, input and output columns, the pending
    /// predicate, [`Job::parameters`] and the finishing statements of [`Backfill::then`] and
    /// [`Backfill::then_create_index`], which `finished` promises ran), recorded on the
    /// backfill's row when scheduled; a worker whose checksum differs leaves the backfill
    /// alone. 16 hex digits (FNV-1a, 64 bits). A definition without finishing statements has
    /// the checksum it had before they were part of it.
    pub fn checksum(&self) -> String {
        let mut definition = self.definition();
        if !self.backfill.then.is_empty() {
            let then: Vec<String> = self.backfill.then.iter().map(Then::normal_form).collect();
            definition.push_str(&format!("\nthen={}", then.join("\n")));
        }
        fnv1a(&definition)
    }

    /// Whether `recorded` (a backfill row's `definition`) is this job's checksum, or the one
    /// that versions before the finishing statements were part of it recorded for it (they
    /// scheduled it with the same table, columns, predicate and parameters).
    pub(crate) fn checksum_matches(&self, recorded: &str) -> bool {
        recorded == self.checksum() || recorded == fnv1a(&self.definition())
    }

    /// The definition without its finishing statements, as the checksum hashes it.
    fn definition(&self) -> String {
        let b = &self.backfill;
        format!(
            "table={}\nkey={}\ninputs={}\noutputs={}\npending={}\nparameters={}",
            b.table,
            b.key,
            b.inputs.join(","),
            b.outputs.join(","),
            b.pending,
            self.parameters
        )
    }

    /// The rows and columns.
    pub fn backfill(&self) -> &Backfill {
        &self.backfill
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("backfill", &self.backfill)
            .finish_non_exhaustive()
    }
}

/// FNV-1a (64 bits) of `text`, as 16 hex digits.
fn fnv1a(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Builds a [`Job`] from the process's policy (e.g. Argon2 parameters read with it).
pub(crate) type BuildFn = fn(&Config) -> Result<Job>;

/// A named backfill: what [`register_backfill!`](crate::register_backfill) registers.
pub struct Registered {
    name: &'static str,
    build: BuildFn,
    file: &'static str,
    line: u32,
}

inventory::collect!(Registered);

impl Registered {
    /// Not public API: the `const` constructor the macro calls.
    #[doc(hidden)]
    pub const fn __new(name: &'static str, build: BuildFn, file: &'static str, line: u32) -> Self {
        Registered {
            name,
            build,
            file,
            line,
        }
    }

    /// The name (`^[a-z0-9_]+$`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where it was registered, `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// Builds the job, checking its definition.
    pub fn build(&self, config: &Config) -> Result<Job> {
        let job = (self.build)(config).map_err(|e| Error::BackgroundBackfill {
            name: self.name.to_owned(),
            reason: "cannot be prepared".into(),
            source: Some(Box::new(e)),
        })?;
        job.backfill.check()?;
        Ok(job)
    }
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("name", &self.name)
            .field("location", &self.location())
            .finish()
    }
}

/// Whether `name` is a valid backfill name, `^[a-z0-9_]+$` (checked at compile time by
/// [`register_backfill!`](crate::register_backfill)).
pub const fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// Every registered backfill, by name; two registrations of one name are an error.
pub fn registered() -> Result<Vec<&'static Registered>> {
    let mut all: Vec<&'static Registered> = inventory::iter::<Registered>.into_iter().collect();
    all.sort_by_key(|r| r.name);
    if let Some(pair) = all.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::BackgroundBackfill {
            name: pair[0].name.to_owned(),
            reason: format!(
                "registered twice, at {} and {}",
                pair[0].location(),
                pair[1].location()
            ),
            source: None,
        });
    }
    Ok(all)
}

/// The registered backfill `name`.
pub(crate) fn find(name: &str) -> Result<&'static Registered> {
    let all = registered()?;
    all.into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::BackgroundBackfill {
            name: name.to_owned(),
            reason: "no backfill of this name is registered in this binary \
                     (migrator::register_backfill!)"
                .into(),
            source: None,
        })
}

/// Registers a named background backfill: `register_backfill!("name", build)` where `build` is
/// a `fn(&Config) -> Result<Job>`. The name must match `^[a-z0-9_]+$` (a compile error
/// otherwise) and be unique in the binary. A migration schedules it with
/// [`Context::backfill`](crate::Context::backfill).
///
/// ```
/// use migrator::backfill::{Backfill, Job};
/// use migrator::{Config, Result};
///
/// fn normalize_emails(_config: &Config) -> Result<Job> {
///     let mut backfill = Backfill::new("users", "id");
///     backfill
///         .input("email")
///         .output("email_normalized")
///         .pending_when("email IS NOT NULL AND email_normalized IS NULL");
///     Ok(Job::new(backfill, |inputs| {
///         Ok(vec![inputs[0].map(|email| email.trim().to_lowercase())])
///     }))
/// }
///
/// migrator::register_backfill!("normalize_emails", normalize_emails);
/// ```
#[macro_export]
macro_rules! register_backfill {
    ($name:literal, $build:path) => {
        const _: () = ::core::assert!(
            $crate::backfill::valid_name($name),
            "a backfill name must match ^[a-z0-9_]+$"
        );
        $crate::__private::inventory::submit! {
            $crate::backfill::Registered::__new($name, $build, ::core::file!(), ::core::line!())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(then: &[&'static str]) -> Job {
        let mut backfill = Backfill::new("t", "id");
        backfill.input("a").output("b").pending_when("b IS NULL");
        for sql in then {
            backfill.then(sql);
        }
        Job::new(backfill, |inputs| Ok(vec![inputs[0].map(str::to_owned)])).parameters("v1")
    }

    #[test]
    fn a_definition_without_finishing_statements_keeps_its_checksum() {
        // What versions before the finishing statements were hashed recorded (pinned).
        assert_eq!(job(&[]).checksum(), "08ac1ed1327878c0");
        assert!(job(&[]).checksum_matches("08ac1ed1327878c0"));
    }

    #[test]
    fn finishing_statements_are_part_of_the_checksum() {
        let one = job(&["CREATE INDEX IF NOT EXISTS t_b ON t (b)"]);
        let other = job(&["CREATE INDEX IF NOT EXISTS t_b2 ON t (b)"]);
        let mut index = job(&[]);
        index.backfill.then_create_index("t_b", "t (b)");
        let checksums = [one.checksum(), other.checksum(), index.checksum()];
        assert!(checksums.iter().all(|c| c != "08ac1ed1327878c0"));
        assert_ne!(checksums[0], checksums[1]);
        assert_ne!(checksums[0], checksums[2]);
        // A worker of another version's finishing statements leaves the backfill alone...
        assert!(!one.checksum_matches(&other.checksum()));
        // ...but one scheduled by a version that did not hash them is still worked on.
        assert!(one.checksum_matches("08ac1ed1327878c0"));
        assert!(one.checksum_matches(&one.checksum()));
    }
}
