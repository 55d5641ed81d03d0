//! `[[realm.role]]`: roles and their URI permissions (Crossbar's model and keys), validated
//! into `proto::authz::Roles`.
//!
//! A rule's `match` defaults to exact, and Crossbar's starred URIs (`"com.example.*"`) are
//! accepted when `match` is absent. Missing `allow` flags are false; `disclose` forces
//! caller/publisher disclosure; `cache` is accepted (Crossbar's key) and has no effect on
//! static rules. Errors name the key path (`realm[0].role[1].permissions[2].uri`).

use std::sync::Arc;

use serde::Deserialize;

use super::ConfigError;
use crate::limits;
use crate::proto::authz::{self, Action, Role, Roles, Rule};
use crate::proto::wire::uri::{self, MatchPolicy};

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRole {
    name: String,
    permissions: Option<Vec<FilePermission>>,
    authorizer: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct FilePermission {
    uri: String,
    #[serde(rename = "match")]
    policy: Option<String>,
    allow: Option<FileAllow>,
    disclose: Option<FileDisclose>,
    cache: Option<bool>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct FileAllow {
    call: Option<bool>,
    register: Option<bool>,
    publish: Option<bool>,
    subscribe: Option<bool>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
struct FileDisclose {
    caller: Option<bool>,
    publisher: Option<bool>,
}

pub(super) struct RolesCheck<'a> {
    pub source: &'a str,
}

impl RolesCheck<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { source: self.source.to_owned(), key: key.to_owned(), message: message.into() }
    }
}

/// A realm's `role` list (`key` = `realm[i].role`); None when the realm configures no roles.
pub(super) fn realm_roles(
    c: &RolesCheck<'_>,
    key: &str,
    raw: Option<Vec<FileRole>>,
) -> Result<Option<Arc<Roles>>, ConfigError> {
    let Some(list) = raw else { return Ok(None) };
    let mut roles = Roles::default();
    for (i, r) in list.into_iter().enumerate() {
        let rkey = format!("{key}[{i}]");
        if r.name.is_empty() || r.name.len() > limits::AUTHID_MAX_BYTES {
            return Err(c.err(&format!("{rkey}.name"), "expected a role name"));
        }
        let role = match (r.permissions, r.authorizer) {
            (Some(_), Some(_)) => return Err(c.err(&rkey, "expected `permissions` or `authorizer`, not both")),
            (None, None) => return Err(c.err(&rkey, "expected `permissions = [...]` or `authorizer = \"<URI>\"`")),
            (Some(ps), None) => {
                if ps.len() > limits::ROLE_RULES_MAX {
                    return Err(
                        c.err(&format!("{rkey}.permissions"), format!("at most {} rules", limits::ROLE_RULES_MAX))
                    );
                }
                let rules = ps
                    .into_iter()
                    .enumerate()
                    .map(|(j, p)| rule(c, &format!("{rkey}.permissions[{j}]"), p))
                    .collect::<Result<Vec<_>, _>>()?;
                Role::from_rules(rules)
            }
            (None, Some(a)) => {
                if !uri::is_valid(&a, false, false) {
                    return Err(c.err(&format!("{rkey}.authorizer"), format!("expected a procedure URI, found {a:?}")));
                }
                Role::Dynamic { authorizer: Arc::from(a) }
            }
        };
        if !roles.insert(Arc::from(r.name.as_str()), role) {
            return Err(c.err(&format!("{rkey}.name"), format!("role {:?} is defined twice", r.name)));
        }
    }
    Ok(Some(Arc::new(roles)))
}

fn rule(c: &RolesCheck<'_>, key: &str, p: FilePermission) -> Result<Rule, ConfigError> {
    let (text, policy) = match p.policy.as_deref() {
        None => authz::starred(&p.uri),
        Some(m) => {
            let policy = MatchPolicy::parse(m).ok_or_else(|| {
                c.err(&format!("{key}.match"), format!("expected \"exact\", \"prefix\" or \"wildcard\", found {m:?}"))
            })?;
            (p.uri.clone(), policy)
        }
    };
    let empty_prefix = policy == MatchPolicy::Prefix && text.is_empty();
    if !empty_prefix && !uri::is_valid_for(&text, policy, false) {
        return Err(c.err(
            &format!("{key}.uri"),
            format!("expected a URI valid for match {}, found {:?}", policy.as_str(), p.uri),
        ));
    }
    let a = p.allow.unwrap_or_default();
    let mut allow = Vec::new();
    for (flag, action) in [
        (a.publish, Action::Publish),
        (a.subscribe, Action::Subscribe),
        (a.call, Action::Call),
        (a.register, Action::Register),
    ] {
        if flag == Some(true) {
            allow.push(action);
        }
    }
    let d = p.disclose.unwrap_or_default();
    let _ = p.cache;
    Ok(Rule {
        uri: text,
        policy,
        allow,
        disclose_caller: d.caller.unwrap_or(false),
        disclose_publisher: d.publisher.unwrap_or(false),
    })
}
