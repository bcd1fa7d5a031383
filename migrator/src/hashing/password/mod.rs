//! Argon2id password hashing: PHC strings, random 16-byte salts from the OS, documented and
//! overridable parameters, constant-time verification, and one reused memory block per thread.
//!
//! ```
//! use migrator::password::{Hasher, Params, Password};
//!
//! let hasher = Hasher::new(Params::default())?;
//! let password = Password::new("correct horse battery staple");
//! let hashed = hasher.hash(&password)?;
//! assert!(hashed.phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
//! assert!(hasher.verify(&password, &hashed.phc)?);
//! assert!(!hasher.verify(&Password::new("wrong"), &hashed.phc)?);
//! assert!(!hasher.needs_rehash(&hashed.phc));
//! # Ok::<(), migrator::Error>(())
//! ```
//!
//! Hashes are standard PHC strings: any Argon2 implementation verifies them, and they are
//! byte-identical to the argon2 crate's for the same salt. Argon2id (version 0x13) runs on
//! migrator's own engine (the `migrator-hasher` package, an implementation detail optimised even
//! in debug builds), whose block compression uses AVX-512F or AVX2 when the CPU has them
//! ([`Kernel`]); other variants and versions, met only when verifying foreign hashes, go to the
//! argon2 crate.
//!
//! With several lanes (`p > 1`), one hash fills its lanes on up to `p` threads: the calling
//! thread and helpers from a small pool started on first use, lent only to cores that no other
//! hash is using (many hashes at once, as in a backfill, each stay on their own thread). A
//! caller that is a rayon worker fills its lanes itself. After every hash, verification
//! included, the Argon2 memory (the reused memory too) and the blocks derived from the password
//! are zeroed.

use std::cell::RefCell;
use std::fmt;

use argon2::{Algorithm, Argon2, Block, Version};
use blake2::{Blake2b512, Digest};
use password_hash::rand_core::{OsRng, RngCore};
use password_hash::{Output, ParamsString, PasswordHash, SaltString};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use migrator_hasher as engine;

use crate::foundation::config::parse_u32;
use crate::foundation::error::{Error, Result};
use bounds::out_of_bounds;

mod bounds;

#[doc(inline)]
pub use migrator_hasher::Kernel;

pub mod vars;

/// Salt length in bytes.
pub(crate) const SALT_LEN: usize = 16;
/// Hash output length in bytes.
pub(crate) const OUTPUT_LEN: usize = 32;

/// A plaintext password: zeroized when dropped, never shown by `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a plaintext.
    pub fn new(plaintext: impl Into<String>) -> Password {
        Password(Zeroizing::new(plaintext.into()))
    }

    /// The plaintext, for hashing or a constant-time comparison. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Password {
    fn from(plaintext: String) -> Password {
        Password::new(plaintext)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Memory in KiB (default 19456, i.e. 19 MiB: OWASP's minimum for Argon2id).
    pub memory_kib: u32,
    /// Iterations (default 2).
    pub iterations: u32,
    /// Lanes (default 1).
    pub parallelism: u32,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Params {
    /// The memory (KiB) this crate hashes and verifies with: from Argon2's minimum to 1 GiB,
    /// and at least [`Params::MIN_MEMORY_KIB_PER_LANE`] per lane.
    ///
    /// These bounds are the one definition of what is accepted: when parameters are read
    /// ([`Params::from_env`]), when a [`Hasher`] is made, and when a stored hash is verified
    /// ([`Hasher::verify`], whose parameters come from stored data). Parameters that hash
    /// therefore always verify.
    pub const MEMORY_KIB: std::ops::RangeInclusive<u32> = bounds::MEMORY_KIB;
    /// The iterations this crate hashes and verifies with (see [`Params::MEMORY_KIB`]).
    pub const ITERATIONS: std::ops::RangeInclusive<u32> = bounds::ITERATIONS;
    /// The lanes this crate hashes and verifies with (see [`Params::MEMORY_KIB`]).
    pub const PARALLELISM: std::ops::RangeInclusive<u32> = bounds::PARALLELISM;
    /// Argon2's own rule: at least 8 KiB (blocks) of memory per lane.
    pub const MIN_MEMORY_KIB_PER_LANE: u32 = bounds::MIN_MEMORY_KIB_PER_LANE;

    /// The defaults overridden by `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`,
    /// `ARGON2_PARALLELISM`; a value that is not a number, or outside the bounds
    /// ([`Params::MEMORY_KIB`], [`Params::ITERATIONS`], [`Params::PARALLELISM`]), is a
    /// configuration error naming the variable.
    pub fn from_env() -> Result<Params> {
        Params::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Params::from_env`], reading through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Params> {
        let default = Params::default();
        let read = |name: &'static str, default: u32| {
            lookup(name).map_or(Ok(default), |v| parse_u32(name, &v))
        };
        let params = Params {
            memory_kib: read(vars::ARGON2_MEMORY_KIB, default.memory_kib)?,
            iterations: read(vars::ARGON2_ITERATIONS, default.iterations)?,
            parallelism: read(vars::ARGON2_PARALLELISM, default.parallelism)?,
        };
        if let Some(bad) = out_of_bounds(params.memory_kib, params.iterations, params.parallelism) {
            return Err(Error::VariableOutOfRange {
                variable: bad.variable,
                value: bad.value,
                min: *bad.bounds.start(),
                max: *bad.bounds.end(),
                why: bad.why,
            });
        }
        params.argon2_params()?;
        Ok(params)
    }

    fn argon2_params(&self) -> Result<argon2::Params> {
        if let Some(bad) = out_of_bounds(self.memory_kib, self.iterations, self.parallelism) {
            return Err(Error::Hashing {
                context: format!(
                    "invalid Argon2 parameters m={} t={} p={}",
                    self.memory_kib, self.iterations, self.parallelism
                ),
                source: Box::new(bad),
            });
        }
        argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| Error::Hashing {
            context: format!(
                "invalid Argon2 parameters m={} t={} p={}",
                self.memory_kib, self.iterations, self.parallelism
            ),
            source: Box::new(e),
        })
    }
}

/// A password hash and its salt, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashedPassword {
    /// The PHC string (`$argon2id$v=19$m=...,t=...,p=...$SALT$HASH`).
    pub phc: String,
    /// The salt of that hash (unpadded standard base64, as in the PHC string).
    pub salt: String,
}

/// Hashes and verifies passwords with fixed parameters. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Hasher {
    params: Params,
    argon2_params: argon2::Params,
    kernel: Kernel,
    options: engine::Options,
}

thread_local! {
    /// This thread's working memory for the argon2 crate (foreign hashes: Argon2i, Argon2d,
    /// version 0x10), reused across hashes as the engine reuses its own.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// An [`Error::Hashing`] saying what failed, with the lower error (the engine's, the argon2 or
/// password-hash crate's, the OS random number generator's) as its source.
fn hashing_error<E>(what: &str) -> impl FnOnce(E) -> Error + '_
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| Error::Hashing {
        context: what.to_owned(),
        source: Box::new(e),
    }
}

/// Runs the argon2 crate with this thread's reused memory, and wipes that memory after.
fn compute(argon2: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<()> {
    MEMORY.with(|memory| {
        let mut memory = memory
            .try_borrow_mut()
            .map_err(|_| hashing_error("Argon2 failed")(engine::Error::MemoryInUse))?;
        let needed = argon2.params().block_count();
        if memory.len() < needed {
            memory.resize(needed, Block::new());
        }
        let result = argon2
            .hash_password_into_with_memory(password, salt, out, &mut memory[..needed])
            .map_err(hashing_error("Argon2 failed"));
        memory[..needed].iter_mut().for_each(Zeroize::zeroize);
        result
    })
}

impl Hasher {
    /// A hasher with `params`, or an error if Argon2 rejects them.
    pub fn new(params: Params) -> Result<Hasher> {
        Ok(Hasher {
            argon2_params: params.argon2_params()?,
            params,
            kernel: Kernel::detected(),
            options: engine::Options::default(),
        })
    }

    /// This hasher with another block-compression kernel (the default is
    /// [`Kernel::detected`]), or an error if this CPU cannot run it. Hashes are the same.
    pub fn with_kernel(mut self, kernel: Kernel) -> Result<Hasher> {
        if !kernel.is_supported() {
            return Err(hashing_error("cannot use this kernel")(
                engine::Error::UnsupportedKernel(kernel),
            ));
        }
        self.kernel = kernel;
        Ok(self)
    }

    /// The block-compression kernel this hasher uses.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// This hasher filling the lanes of a hash one after another on the calling thread, as it
    /// did before lanes ran in parallel: the baseline the benchmarks compare against. Not
    /// public API: only with the `bench-internals` feature, which the benchmarks enable.
    #[cfg(any(test, feature = "bench-internals"))]
    pub fn with_lanes_inline(mut self) -> Hasher {
        self.options.threads = engine::LaneThreads::Inline;
        self
    }

    /// This hasher leaving its working memory as the hash left it, as it did before the wipe:
    /// the baseline that measures what the wipe costs. Never for real passwords. Not public
    /// API: only with the `bench-internals` feature, which the benchmarks enable.
    #[cfg(any(test, feature = "bench-internals"))]
    pub fn without_wipe(mut self) -> Hasher {
        self.options.wipe = false;
        self
    }

    /// This hasher keeping its reused memory on ordinary 4 KiB pages, as it did before the
    /// wipe: with [`Hasher::without_wipe`], the hasher as it was before issue 18. Not public
    /// API: only with the `bench-internals` feature, which the benchmarks enable.
    #[cfg(any(test, feature = "bench-internals"))]
    pub fn without_huge_pages(mut self) -> Hasher {
        self.options.huge_pages = false;
        self
    }

    /// Runs Argon2id version 0x13 on migrator's engine.
    fn argon2id(
        &self,
        params: &argon2::Params,
        password: &Password,
        salt: &[u8],
        out: &mut [u8],
        reuse: bool,
    ) -> Result<()> {
        let costs = engine::Costs {
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            lanes: params.p_cost(),
        };
        let inputs = engine::Inputs {
            password: password.expose().as_bytes(),
            salt,
            secret: &[],
            associated_data: &[],
        };
        let options = engine::Options {
            reuse,
            ..self.options
        };
        engine::hash(self.kernel, costs, &inputs, out, options)
            .map_err(hashing_error("Argon2id failed"))
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Hashes `password` with a fresh random salt.
    pub fn hash(&self, password: &Password) -> Result<HashedPassword> {
        self.hash_with_salt(password, &random_salt()?)
    }

    /// Hashes `password` with the given salt (for tests and reproducible benchmarks).
    pub fn hash_with_salt(&self, password: &Password, salt: &[u8]) -> Result<HashedPassword> {
        self.hash_inner(password, salt, true)
    }

    /// Hashes like [`Hasher::hash`], but allocates fresh Argon2 memory for this one hash, as
    /// most code does: the baseline the benchmarks compare the reused memory against. Not
    /// public API: only with the `bench-internals` feature, which the benchmarks enable.
    #[cfg(any(test, feature = "bench-internals"))]
    pub fn hash_without_memory_reuse(&self, password: &Password) -> Result<HashedPassword> {
        self.hash_inner(password, &random_salt()?, false)
    }

    fn hash_inner(&self, password: &Password, salt: &[u8], reuse: bool) -> Result<HashedPassword> {
        let salt_string = SaltString::encode_b64(salt).map_err(hashing_error("invalid salt"))?;
        let mut out = Zeroizing::new([0u8; OUTPUT_LEN]);
        self.argon2id(&self.argon2_params, password, salt, &mut out[..], reuse)?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.argon2_params)
                .map_err(hashing_error("cannot encode the parameters"))?,
            salt: Some(salt_string.as_salt()),
            hash: Some(Output::new(&out[..]).map_err(hashing_error("cannot encode the hash"))?),
        }
        .to_string();
        Ok(HashedPassword {
            phc,
            salt: salt_string.as_str().to_owned(),
        })
    }

    /// Whether `password` matches the PHC string `phc` (any Argon2 variant and parameters, so
    /// hashes made with older parameters still verify). Constant-time comparison.
    pub fn verify(&self, password: &Password, phc: &str) -> Result<bool> {
        let invalid = |reason: String| Error::InvalidPasswordHash {
            reason,
            source: None,
        };
        let parsed = PasswordHash::new(phc).map_err(because("not a PHC string"))?;
        let algorithm =
            Algorithm::try_from(parsed.algorithm).map_err(because("not an Argon2 hash"))?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(because("unknown Argon2 version"))?
            .unwrap_or_default();
        let params = argon2::Params::try_from(&parsed).map_err(because("bad parameters"))?;
        // The parameters come from stored data: bound them before allocating or iterating.
        if let Some(bad) = out_of_bounds(params.m_cost(), params.t_cost(), params.p_cost()) {
            return Err(because(
                "its parameters are outside what this crate hashes and verifies with",
            )(bad));
        }
        let expected = parsed
            .hash
            .ok_or_else(|| invalid("the hash has no output".into()))?;
        let salt = parsed
            .salt
            .ok_or_else(|| invalid("the hash has no salt".into()))?;
        let mut salt_buf = [0u8; 64];
        let salt = salt
            .decode_b64(&mut salt_buf)
            .map_err(because("bad salt"))?;
        let mut out = Zeroizing::new(vec![0u8; expected.len()]);
        if algorithm == Algorithm::Argon2id && version == Version::V0x13 {
            self.argon2id(&params, password, salt, &mut out, true)?;
        } else {
            let argon2 = Argon2::new(algorithm, version, params);
            compute(&argon2, password.expose().as_bytes(), salt, &mut out)?;
        }
        Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
    }

    /// Whether `phc` should be replaced by a new hash: another algorithm, version, parameters
    /// or output length than this hasher's, or not a valid PHC string at all.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return true;
        };
        let Ok(params) = argon2::Params::try_from(&parsed) else {
            return true;
        };
        parsed.algorithm != argon2::ARGON2ID_IDENT
            || parsed.version != Some(Version::V0x13.into())
            || params.m_cost() != self.params.memory_kib
            || params.t_cost() != self.params.iterations
            || params.p_cost() != self.params.parallelism
            || parsed.hash.map(|h| h.len()) != Some(OUTPUT_LEN)
    }
}

/// An [`Error::InvalidPasswordHash`] saying why, with the crate's error that told it as its
/// source.
fn because<E>(reason: &'static str) -> impl FnOnce(E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| Error::InvalidPasswordHash {
        reason: reason.into(),
        source: Some(Box::new(e)),
    }
}

fn random_salt() -> Result<[u8; SALT_LEN]> {
    let mut salt = [0u8; SALT_LEN];
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(hashing_error("the OS random number generator failed"))?;
    Ok(salt)
}

/// Constant-time equality of two plaintexts (for legacy plaintext columns).
///
/// Both sides are reduced to fixed-size BLAKE2b digests first and the digests compared in
/// constant time: comparing the plaintexts themselves returns early when their lengths differ,
/// which tells an attacker the stored plaintext's length.
pub fn plaintext_matches(stored: &str, given: &Password) -> bool {
    fn digest(text: &str) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out.copy_from_slice(&Blake2b512::digest(text.as_bytes()));
        out
    }
    bool::from(digest(stored).ct_eq(&*digest(given.expose())))
}

#[cfg(test)]
mod tests;
