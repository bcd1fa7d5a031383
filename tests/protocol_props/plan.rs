//! The plan's decisions against the policy table of DESIGN.md (see the crate's
//! documentation), then `up` against the plan.

use std::collections::BTreeMap;

use diesel::sql_types::Text;
use diesel::RunQueryDsl;
use migrator::{
    config::Environment, config::Source, connection::Backend, migration, plan::Confirmation,
    plan::Kind, plan::MarkAs, Config, Context, Database, Result,
};
use proptest::prelude::*;

use crate::{cases, check_property, fresh, only, PLAN_CASES};

#[migration("002_prop_plan_a")]
fn prop_plan_a(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS prop_plan_a (id INTEGER)")
}

#[migration("003_prop_plan_b", transaction = false)]
fn prop_plan_b(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS prop_plan_b (id INTEGER)")
}

#[migration("004_prop_plan_c")]
fn prop_plan_c(ctx: &mut Context<'_>) -> Result<()> {
    ctx.batch_execute("CREATE TABLE IF NOT EXISTS prop_plan_c (id INTEGER)")
}

/// The plan tests' migrations, in run order, with whether each runs in a transaction.
const PLANNED: [(&str, bool); 3] = [
    ("002_prop_plan_a", true),
    ("003_prop_plan_b", false),
    ("004_prop_plan_c", true),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tracked {
    NoRow,
    Success,
    Failed,
    Skipped,
    /// Interrupted: `running` with no runner holding the lock.
    Running,
}

impl Tracked {
    fn pending(self) -> bool {
        matches!(self, Tracked::NoRow | Tracked::Failed | Tracked::Running)
    }
}

fn tracked() -> impl Strategy<Value = Tracked> {
    prop_oneof![
        2 => Just(Tracked::NoRow),
        1 => Just(Tracked::Success),
        1 => Just(Tracked::Failed),
        1 => Just(Tracked::Skipped),
        1 => Just(Tracked::Running),
    ]
}

/// A boolean variable: unset, or set with one of its accepted spellings.
fn flag() -> impl Strategy<Value = Option<(bool, String)>> {
    let spelled = |value: bool, spellings: &'static [&'static str]| {
        (prop::sample::select(spellings), any::<bool>()).prop_map(move |(s, upper)| {
            Some((
                value,
                if upper {
                    s.to_uppercase()
                } else {
                    s.to_owned()
                },
            ))
        })
    };
    prop_oneof![
        Just(None),
        spelled(true, &["true", "1", "yes", "on", "True"]),
        spelled(false, &["false", "0", "no", "off", "False"]),
    ]
}

/// `MIGRATION_CONFIRM`: unset, the pending IDs (reordered, spaced), or a list that differs.
#[derive(Clone, Debug)]
enum Pin {
    Unset,
    Exact { reversed: bool, spaced: bool },
    Drop,
    Extra,
}

fn pin() -> impl Strategy<Value = Pin> {
    prop_oneof![
        1 => Just(Pin::Unset),
        3 => (any::<bool>(), any::<bool>())
            .prop_map(|(reversed, spaced)| Pin::Exact { reversed, spaced }),
        1 => Just(Pin::Drop),
        1 => Just(Pin::Extra),
    ]
}

#[derive(Clone, Debug)]
struct Policy {
    environment: Environment,
    environment_spelling: bool,
    auto: Option<(bool, String)>,
    enable_prod: Option<(bool, String)>,
    require_confirmation: Option<(bool, String)>,
    backup: Option<(bool, String)>,
    assume_yes: bool,
    interactive: bool,
    pin: Pin,
    tracked: [Tracked; 3],
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        (
            prop_oneof![
                Just(Environment::Development),
                Just(Environment::Staging),
                Just(Environment::Production),
            ],
            any::<bool>(),
            flag(),
            flag(),
            flag(),
            flag(),
        ),
        (
            // `--yes` and a terminal each settle confirmation before the pinned plan is read.
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.25),
            pin(),
            [tracked(), tracked(), tracked()],
        ),
    )
        .prop_map(
            |(
                (
                    environment,
                    environment_spelling,
                    auto,
                    enable_prod,
                    require_confirmation,
                    backup,
                ),
                (assume_yes, interactive, pin, tracked),
            )| Policy {
                environment,
                environment_spelling,
                auto,
                enable_prod,
                require_confirmation,
                backup,
                assume_yes,
                interactive,
                pin,
                tracked,
            },
        )
}

/// What DESIGN.md's table says, as a pure function.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    pending: Vec<&'static str>,
    decision_variables: Vec<&'static str>,
    decision_allows: Vec<bool>,
    decision_sources: Vec<Source>,
    confirmation: &'static str,
    confirm_with: Option<String>,
    backup_label: Option<String>,
    up_allowed: bool,
    startup_skips: bool,
}

fn pinned(policy: &Policy, pending: &[&str]) -> Option<String> {
    match &policy.pin {
        Pin::Unset => None,
        Pin::Exact { reversed, spaced } => {
            let mut ids: Vec<&str> = pending.to_vec();
            if *reversed {
                ids.reverse();
            }
            Some(ids.join(if *spaced { " , " } else { "," }))
        }
        Pin::Drop => Some(
            pending
                .iter()
                .skip(1)
                .copied()
                .collect::<Vec<_>>()
                .join(","),
        ),
        Pin::Extra => {
            let mut ids: Vec<&str> = pending.to_vec();
            ids.push("009_prop_not_pending");
            Some(ids.join(","))
        }
    }
}

fn expected(policy: &Policy) -> Expected {
    let production = policy.environment == Environment::Production;
    let value = |flag: &Option<(bool, String)>, default: bool| {
        flag.as_ref().map_or(default, |(value, _)| *value)
    };
    let source = |flag: &Option<(bool, String)>| {
        if flag.is_some() {
            Source::Explicit
        } else {
            Source::Default
        }
    };
    let auto = value(&policy.auto, !production);
    let enabled = value(&policy.enable_prod, false);
    let require = value(&policy.require_confirmation, production);
    let backup = value(&policy.backup, production);
    let pending: Vec<&'static str> = PLANNED
        .iter()
        .zip(policy.tracked)
        .filter(|(_, t)| t.pending())
        .map(|((id, _), _)| *id)
        .collect();
    let env_allows = !production || enabled;
    let (mut variables, mut allows, mut sources) = if production {
        (
            vec!["ENABLE_PROD_MIGRATIONS"],
            vec![enabled],
            vec![source(&policy.enable_prod)],
        )
    } else {
        (vec!["ENVIRONMENT"], vec![true], vec![Source::Explicit])
    };
    let pin = pinned(policy, &pending);
    let confirmation = if pending.is_empty() || !require {
        "not_required"
    } else if policy.assume_yes {
        "assumed_yes"
    } else if policy.interactive {
        "terminal"
    } else {
        match (&policy.pin, &pin) {
            (_, None) => "missing",
            (Pin::Exact { .. }, Some(_)) => "pinned",
            // Dropping the only pending ID leaves an empty list; adding one is never exact.
            _ => "mismatch",
        }
    };
    let confirmation_allows = !matches!(confirmation, "missing" | "mismatch");
    if !pending.is_empty() {
        variables.extend(["MIGRATION_REQUIRE_CONFIRMATION", "MIGRATION_BACKUP_BEFORE"]);
        allows.extend([confirmation_allows, true]);
        sources.extend([source(&policy.require_confirmation), source(&policy.backup)]);
    }
    Expected {
        confirm_with: (!pending.is_empty()).then(|| pending.join(",")),
        backup_label: (backup && !pending.is_empty()).then(|| format!("before-{}", pending[0])),
        up_allowed: env_allows && (pending.is_empty() || confirmation_allows),
        startup_skips: !auto || !env_allows,
        pending,
        decision_variables: variables,
        decision_allows: allows,
        decision_sources: sources,
        confirmation,
    }
}

fn confirmation_name(confirmation: &Confirmation) -> &'static str {
    match confirmation {
        Confirmation::NotRequired => "not_required",
        Confirmation::AssumedYes => "assumed_yes",
        Confirmation::Terminal => "terminal",
        Confirmation::Pinned => "pinned",
        Confirmation::Missing => "missing",
        Confirmation::Mismatch { .. } => "mismatch",
        _ => "unknown",
    }
}

fn config_of(policy: &Policy, pending: &[&str], backups: &std::path::Path) -> Config {
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    let environment = policy.environment.as_str();
    vars.insert(
        "ENVIRONMENT",
        if policy.environment_spelling {
            environment.to_uppercase()
        } else {
            environment.to_owned()
        },
    );
    for (name, flag) in [
        ("AUTO_MIGRATE_ON_STARTUP", &policy.auto),
        ("ENABLE_PROD_MIGRATIONS", &policy.enable_prod),
        (
            "MIGRATION_REQUIRE_CONFIRMATION",
            &policy.require_confirmation,
        ),
        ("MIGRATION_BACKUP_BEFORE", &policy.backup),
    ] {
        if let Some((_, spelling)) = flag {
            vars.insert(name, spelling.clone());
        }
    }
    if let Some(pin) = pinned(policy, pending) {
        vars.insert("MIGRATION_CONFIRM", pin);
    }
    vars.insert("MIGRATION_BACKUP_DIR", backups.display().to_string());
    let mut config = Config::from_lookup(|name| vars.get(name).cloned())
        .unwrap_or_else(|e| panic!("{vars:?}: {e}"));
    config
        .dangerous_assume_yes(policy.assume_yes)
        .set_interactive(policy.interactive);
    config
}

/// Writes the tracking table's rows as `policy` says (through `mark`, and by hand for an
/// interrupted `running` row, as the deployment guide does).
fn track(db: &Database, policy: &Policy) {
    let ids: Vec<&str> = PLANNED.iter().map(|(id, _)| *id).collect();
    let migrator = only(&ids);
    let dev = Config::new(Environment::Development);
    for ((id, _), state) in PLANNED.iter().zip(policy.tracked) {
        let mark = match state {
            Tracked::NoRow => MarkAs::Pending,
            Tracked::Success => MarkAs::Success,
            Tracked::Failed | Tracked::Running => MarkAs::Failed,
            Tracked::Skipped => MarkAs::Skipped,
        };
        migrator
            .mark(db, &dev, id, mark)
            .unwrap_or_else(|e| panic!("mark {id} {mark}: {e}"));
        if state == Tracked::Running {
            let mut conn = db.get().expect("a connection");
            diesel::sql_query(
                "UPDATE applied_migrations SET status = 'running' WHERE migration_name = $1",
            )
            .bind::<Text, _>(*id)
            .execute(&mut *conn)
            .expect("mark running by hand");
        }
    }
}

/// One case on `db` (shared by the cases of a backend: `track` sets every row, and `up` only
/// creates tables that exist already or are harmless).
fn plan_decisions(db: &Database, policy: &Policy) {
    let backend = db.backend();
    track(db, policy);
    let ids: Vec<&str> = PLANNED.iter().map(|(id, _)| *id).collect();
    let migrator = only(&ids);
    let want = expected(policy);
    let backups = tempfile::tempdir().expect("a backup directory");
    let config = config_of(policy, &want.pending, backups.path());
    let plan = migrator.plan(db, &config).expect("plan");
    let got = Expected {
        pending: plan
            .pending
            .iter()
            .map(|m| {
                let (id, transactional) = PLANNED
                    .iter()
                    .find(|(id, _)| *id == m.id)
                    .unwrap_or_else(|| panic!("unknown pending {}", m.id));
                assert_eq!((m.kind, m.transactional), (Kind::Code, *transactional));
                *id
            })
            .collect(),
        decision_variables: plan.decisions.iter().map(|d| d.variable).collect(),
        decision_allows: plan.decisions.iter().map(|d| d.allows).collect(),
        decision_sources: plan.decisions.iter().map(|d| d.source).collect(),
        confirmation: confirmation_name(&plan.confirmation),
        confirm_with: plan.confirm_with.clone(),
        backup_label: plan.backup.as_ref().map(|b| {
            assert_eq!(b.dir, backups.path());
            b.label.clone()
        }),
        up_allowed: plan.up_allowed,
        startup_skips: plan.startup_skip.is_some(),
    };
    assert_eq!(got, want, "{backend}: {policy:?}");
    assert_eq!(plan.environment, policy.environment);
    assert_eq!(plan.refusal.is_some(), !plan.up_allowed);
    assert_eq!(
        plan.would_apply(),
        plan.up_allowed && !want.pending.is_empty()
    );
    // `up` does what the plan says (a terminal's question is not asked here).
    if want.confirmation == "terminal" {
        return;
    }
    let result = migrator.run(db, &config);
    let after = migrator.status(db).expect("status");
    let still: Vec<&str> = after.pending().map(|m| m.id.as_str()).collect();
    if want.up_allowed {
        result.unwrap_or_else(|e| panic!("{backend}: the plan allows `up`, which fails: {e}"));
        assert!(still.is_empty(), "{backend}: left pending: {still:?}");
        let backed_up = std::fs::read_dir(backups.path()).unwrap().count() > 0;
        assert_eq!(
            backed_up,
            want.backup_label.is_some(),
            "{backend}: a backup iff the plan names one"
        );
    } else {
        assert!(
            result.is_err(),
            "{backend}: the plan refuses `up` ({:?}), which succeeds",
            plan.refusal
        );
        assert_eq!(
            still, want.pending,
            "{backend}: a refused `up` changes nothing"
        );
    }
}

#[test]
fn plan_follows_the_policy_table_on_postgres() {
    let test = fresh(Backend::Postgres);
    check_property(
        "plan_follows_the_policy_table_on_postgres",
        cases(PLAN_CASES),
        policy(),
        |policy| plan_decisions(test.database(), &policy),
    );
}

#[test]
fn plan_follows_the_policy_table_on_sqlite() {
    let test = fresh(Backend::Sqlite);
    check_property(
        "plan_follows_the_policy_table_on_sqlite",
        cases(PLAN_CASES),
        policy(),
        |policy| plan_decisions(test.database(), &policy),
    );
}
